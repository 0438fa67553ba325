"""The hardened XMP layer: parsing variants, hostile input, lossless rewrites, atomic writes with a concurrency check."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import missing_requirement
from pic_plugin.core.errors import ConcurrentChangeError, SidecarError
from pic_plugin.editors import xmp
from pic_plugin.editors.xmp import NS_RDF, Struct, XmpDocument, parse_xmp, read_sidecar, write_sidecar_atomic
from pic_plugin.editors.xmp import files as xmp_files

NS_DT = "http://darktable.sf.net/"
NS_CRS = "http://ns.adobe.com/camera-raw-settings/1.0/"
NS_DC = "http://purl.org/dc/elements/1.1/"
RDF_OPEN = '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'


def sample_files(root: Path) -> list[Path]:
    return sorted((root / "xmp-samples").glob("*/*.xmp"))


@pytest.fixture(scope="session")
def exiv2() -> str:
    exe = shutil.which("exiv2")
    if exe is None:
        missing_requirement("exiv2 is not installed (apt-get install exiv2)")
    assert exe is not None
    return exe


def exiv2_lines(exe: str, path: Path) -> list[str]:
    """What Exiv2 (digiKam's metadata layer) reads from a sidecar: one line per property."""
    out = subprocess.run([exe, "-pa", str(path)], capture_output=True, check=False, timeout=60)
    return sorted(line for line in out.stdout.decode("utf-8", "replace").splitlines() if line.strip())


# --- parsing variants ------------------------------------------------------------------------------------------


def test_attribute_and_element_properties_in_several_descriptions() -> None:
    data = f"""<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/'>
{RDF_OPEN}
 <rdf:Description rdf:about='' xmlns:crs='{NS_CRS}' crs:HasCrop='True'>
  <crs:CropLeft>0.25</crs:CropLeft>
 </rdf:Description>
 <rdf:Description rdf:about='' xmlns:dc='{NS_DC}'>
  <dc:subject><rdf:Bag><rdf:li>a</rdf:li><rdf:li>b &amp; c</rdf:li></rdf:Bag></dc:subject>
  <dc:title><rdf:Alt><rdf:li xml:lang='x-default'>T</rdf:li></rdf:Alt></dc:title>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>""".encode()
    doc = parse_xmp(data)
    assert doc.get(NS_CRS, "HasCrop") == "True"
    assert doc.get(NS_CRS, "CropLeft") == "0.25"
    assert [li.text() for li in doc.array_items(NS_DC, "subject") or []] == ["a", "b & c"]
    props = dict(doc.properties())
    assert props[f"{{{NS_DC}}}title[1]@xml:lang"] == "x-default"
    # the packet wrapper survives a rewrite
    out = doc.to_bytes().decode()
    assert out.startswith("<?xpacket begin=") and out.rstrip().endswith("<?xpacket end='w'?>")


def test_bare_rdf_and_struct_spellings() -> None:
    data = f"""{RDF_OPEN}
 <rdf:Description xmlns:darktable="{NS_DT}" darktable:xmp_version="5">
  <darktable:history><rdf:Seq>
   <rdf:li darktable:num="0" darktable:operation="flip"/>
   <rdf:li rdf:parseType="Resource"><darktable:num>1</darktable:num><darktable:operation>crop</darktable:operation></rdf:li>
   <rdf:li><rdf:Description darktable:num="2"><darktable:operation>exposure</darktable:operation></rdf:Description></rdf:li>
  </rdf:Seq></darktable:history>
 </rdf:Description>
</rdf:RDF>""".encode()
    doc = parse_xmp(data)
    items = [Struct(li) for li in doc.array_items(NS_DT, "history") or []]
    assert [(i.get(NS_DT, "num"), i.get(NS_DT, "operation")) for i in items] == [
        ("0", "flip"), ("1", "crop"), ("2", "exposure")]
    # setting a field keeps each item's spelling
    for i in items:
        i.set(NS_DT, "enabled", "1")
    again = parse_xmp(doc.to_bytes())
    assert [Struct(li).get(NS_DT, "enabled") for li in again.array_items(NS_DT, "history") or []] == ["1"] * 3
    assert again.root.is_(NS_RDF, "RDF")


def test_set_updates_in_place_and_declares_missing_namespaces() -> None:
    doc = parse_xmp(f"""<x:xmpmeta xmlns:x="adobe:ns:meta/">{RDF_OPEN}
<rdf:Description rdf:about="" xmlns:crs="{NS_CRS}"><crs:CropTop>0.1</crs:CropTop></rdf:Description>
</rdf:RDF></x:xmpmeta>""".encode())
    doc.set(NS_CRS, "CropTop", "0.2")
    doc.set("http://example.org/new/", "Thing", 'a "quoted" <value> & more\nline', "ex")
    out = doc.to_bytes()
    assert b"<crs:CropTop>0.2</crs:CropTop>" in out
    again = parse_xmp(out)
    assert again.get("http://example.org/new/", "Thing") == 'a "quoted" <value> & more\nline'
    assert 'xmlns:ex="http://example.org/new/"' in out.decode()


def test_values_xml_cannot_carry_are_replaced_not_fatal() -> None:
    doc = XmpDocument.new()
    doc.set("http://example.org/n/", "Name", "bad\x01byte\udcff", "n")
    assert parse_xmp(doc.to_bytes()).get("http://example.org/n/", "Name") == "bad\ufffdbyte\ufffd"


@pytest.mark.shared
def test_every_sample_round_trips_without_losing_anything(shared_data: Path) -> None:
    files = sample_files(shared_data)
    assert len(files) >= 19
    for path in files:
        original = path.read_bytes()
        doc = parse_xmp(original)
        written = doc.to_bytes()
        again = parse_xmp(written)
        assert again.properties() == doc.properties(), path.name
        assert again.namespaces() == doc.namespaces(), path.name
        if path.parent.name in ("darktable-tests", "py_darktable"):
            # darktable/Exiv2-written files come back byte for byte
            assert written == original, path.name


@pytest.mark.shared
def test_exiv2_reads_every_property_of_a_rewritten_sample(shared_data: Path, exiv2: str, tmp_path: Path) -> None:
    for path in sample_files(shared_data):
        out = tmp_path / path.name
        out.write_bytes(parse_xmp(path.read_bytes()).to_bytes())
        before, after = exiv2_lines(exiv2, path), exiv2_lines(exiv2, out)
        assert before, path.name
        assert after == before, path.name


# --- hostile input ---------------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description a="&lol3;"/></rdf:RDF>"""


class _OpenAudit:
    """Records every file or socket a piece of code opens (Python audit events), while active."""

    active = False
    events: list[tuple[str, str]] = []

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if cls.active and event in ("open", "socket.connect", "urllib.Request"):
            cls.events.append((event, repr(args[0])[:200]))


sys.addaudithook(_OpenAudit.hook)


def _parse_without_io(data: bytes) -> XmpDocument:
    _OpenAudit.events.clear()
    _OpenAudit.active = True
    try:
        return parse_xmp(data)
    finally:
        _OpenAudit.active = False
        assert _OpenAudit.events == [], _OpenAudit.events


def test_billion_laughs_is_refused() -> None:
    with pytest.raises(SidecarError, match="hostile|DOCTYPE|DTD"):
        _parse_without_io(BILLION_LAUGHS)


@pytest.mark.parametrize("reference", ["file:///etc/passwd", "SECRET", "http://127.0.0.1:9/x.dtd"])
def test_external_entities_are_refused_without_touching_files(tmp_path: Path, reference: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    target = secret.as_uri() if reference == "SECRET" else reference
    for data in (
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "{target}">]><rdf:RDF xmlns:rdf="{NS_RDF}" a="&x;"/>'.encode(),
        f'<!DOCTYPE r SYSTEM "{target}"><rdf:RDF xmlns:rdf="{NS_RDF}"/>'.encode(),
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{target}"> %p;]><rdf:RDF xmlns:rdf="{NS_RDF}"/>'.encode(),
    ):
        with pytest.raises(SidecarError) as info:
            _parse_without_io(data)
        assert "TOP-SECRET" not in str(info.value)


def test_undeclared_entity_deep_nesting_truncation_and_non_xmp() -> None:
    with pytest.raises(SidecarError, match="well-formed"):
        parse_xmp(f'<rdf:RDF xmlns:rdf="{NS_RDF}" a="&xxe;"/>'.encode())
    deep = ("<a>" * (xmp.MAX_DEPTH + 5) + "</a>" * (xmp.MAX_DEPTH + 5)).encode()
    with pytest.raises(SidecarError, match="nesting"):
        parse_xmp(deep)
    with pytest.raises(SidecarError, match="well-formed"):
        parse_xmp(BILLION_LAUGHS[-60:-10])
    with pytest.raises(SidecarError, match="not an XMP"):
        parse_xmp(b"<html><body/></html>")
    with pytest.raises(SidecarError):
        parse_xmp(b"")


def test_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xmp.tree, "MAX_BYTES", 4096)
    huge = f'<rdf:RDF xmlns:rdf="{NS_RDF}"><rdf:Description a="{"x" * 5000}"/></rdf:RDF>'.encode()
    with pytest.raises(SidecarError, match="MiB|more than"):
        parse_xmp(huge)
    path = tmp_path / "big.xmp"
    path.write_bytes(huge)
    with pytest.raises(SidecarError, match="MiB|more than"):
        read_sidecar(path)


def test_a_huge_attribute_under_the_cap_is_fine() -> None:
    big = "y" * (2 * 1024 * 1024)
    doc = parse_xmp(f'<rdf:RDF xmlns:rdf="{NS_RDF}"><rdf:Description xmlns:e="http://e/" e:v="{big}"/></rdf:RDF>'.encode())
    assert doc.get("http://e/", "v") == big


def test_special_files_are_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "x.xmp"
    os.mkfifo(fifo)
    with pytest.raises(SidecarError, match="regular"):
        read_sidecar(fifo)  # would block forever if it were opened
    with pytest.raises(SidecarError):
        read_sidecar(tmp_path)


HOSTILE_TEMPLATES = [
    BILLION_LAUGHS,
    b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    b"<a>" * 500,
    b'<?xml version="1.0" encoding="EBCDIC-XX"?><a/>',
    b"<?xml version='1.0' encoding='UTF-16'?>\xff\xfe<\x00a\x00/\x00>\x00",
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">&#0;</rdf:RDF>',
    b"\xef\xbb\xbf\x00\x00\x00",
]


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(HOSTILE_TEMPLATES + [
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/">{RDF_OPEN}<rdf:Description rdf:about="" '
        f'xmlns:darktable="{NS_DT}" darktable:history_end="1"/></rdf:RDF></x:xmpmeta>'.encode()]),
    cut=st.integers(0, 400),
    junk=st.binary(max_size=64),
    pos=st.integers(0, 400),
)
def test_fuzzed_documents_fail_only_with_sidecar_error(base: bytes, cut: int, junk: bytes, pos: int) -> None:
    for data in (base[:cut], base[:pos] + junk + base[pos:], junk):
        _OpenAudit.events.clear()
        _OpenAudit.active = True
        try:
            doc = parse_xmp(data)
        except SidecarError:
            continue
        finally:
            _OpenAudit.active = False
        assert _OpenAudit.events == []
        # whatever parsed must also survive a rewrite
        assert parse_xmp(doc.to_bytes()).properties() == doc.properties()


@settings(max_examples=100, deadline=2000)
@given(data=st.binary(max_size=2048))
def test_random_bytes_fail_only_with_sidecar_error(data: bytes) -> None:
    with contextlib.suppress(SidecarError):
        parse_xmp(data)


# --- atomic writes ---------------------------------------------------------------------------------------------

SIMPLE = f'<x:xmpmeta xmlns:x="adobe:ns:meta/">{RDF_OPEN}<rdf:Description rdf:about="" xmlns:e="http://e/" e:v="1"/></rdf:RDF></x:xmpmeta>\n'.encode()


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".pic-")]


def test_atomic_write_keeps_mode_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg.xmp"
    path.write_bytes(SIMPLE)
    path.chmod(0o640)
    doc, stamp = read_sidecar(path)
    assert doc is not None
    doc.set("http://e/", "v", "2")
    write_sidecar_atomic(path, doc.to_bytes(), stamp)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert read_sidecar(path)[0].get("http://e/", "v") == "2"  # type: ignore[union-attr]
    assert _leftovers(tmp_path) == []


def test_concurrent_change_is_detected_and_original_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.jpg.xmp"
    path.write_bytes(SIMPLE)
    doc, stamp = read_sidecar(path)
    assert doc is not None
    real_fsync = os.fsync
    editor_wrote = SIMPLE.replace(b'e:v="1"', b'e:v="editor"')

    def fsync_and_editor_writes(fd: int) -> None:  # darktable writes the sidecar while pic flushes its temp file
        real_fsync(fd)
        if path.read_bytes() != editor_wrote:
            path.write_bytes(editor_wrote)

    monkeypatch.setattr(os, "fsync", fsync_and_editor_writes)
    with pytest.raises(ConcurrentChangeError):
        write_sidecar_atomic(path, b"pic's version", stamp)
    assert path.read_bytes() == editor_wrote
    assert _leftovers(tmp_path) == []


def test_same_size_same_mtime_change_is_caught_by_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "a.xmp"
    path.write_bytes(SIMPLE)
    _, stamp = read_sidecar(path)
    st = path.stat()
    path.write_bytes(SIMPLE.replace(b'e:v="1"', b'e:v="2"'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ConcurrentChangeError):
        write_sidecar_atomic(path, b"x", stamp)


def test_file_that_appears_meanwhile_is_a_concurrent_change(tmp_path: Path) -> None:
    path = tmp_path / "new.xmp"
    doc, stamp = read_sidecar(path)
    assert doc is None and not stamp.exists
    path.write_bytes(SIMPLE)
    with pytest.raises(ConcurrentChangeError, match="appeared"):
        write_sidecar_atomic(path, b"x", stamp)
    assert path.read_bytes() == SIMPLE


def test_failed_replace_removes_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.xmp"
    path.write_bytes(SIMPLE)
    _, stamp = read_sidecar(path)

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    monkeypatch.setattr(xmp_files, "exchange", boom)
    with pytest.raises(OSError):
        write_sidecar_atomic(path, b"x", stamp)
    assert path.read_bytes() == SIMPLE
    assert _leftovers(tmp_path) == []


def test_new_file_gets_umask_mode_and_symlinked_sidecar_stays_a_link(tmp_path: Path) -> None:
    path = tmp_path / "fresh.xmp"
    _, stamp = read_sidecar(path)
    write_sidecar_atomic(path, SIMPLE, stamp)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    real = tmp_path / "real.xmp"
    real.write_bytes(SIMPLE)
    link = tmp_path / "link.xmp"
    link.symlink_to(real)
    _, stamp = read_sidecar(link)
    write_sidecar_atomic(link, b"new", stamp)
    assert link.is_symlink() and real.read_bytes() == b"new"


ODD_NAMES = ["with space.jpg.xmp", "quote'\"s.jpg.xmp", "$(touch pwned).jpg.xmp", "new\nline.jpg.xmp",
             "`tick`;&|.jpg.xmp", "ünïcødé.jpg.xmp"]


@pytest.mark.parametrize("name", ODD_NAMES + [os.fsdecode(b"latin1-\xe9\xff.jpg.xmp")])
def test_odd_file_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _, stamp = read_sidecar(path)
    write_sidecar_atomic(path, SIMPLE, stamp)
    doc, stamp = read_sidecar(path)
    assert doc is not None and doc.get("http://e/", "v") == "1"
    doc.set("http://e/", "v", "2")
    write_sidecar_atomic(path, doc.to_bytes(), stamp)
    assert read_sidecar(path)[0].get("http://e/", "v") == "2"  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert not (tmp_path / "pwned").exists()


def test_the_audit_check_would_see_a_file_access(tmp_path: Path) -> None:
    """Guards the no-file-access assertions above: the audit hook does record opens."""
    secret = tmp_path / "s.txt"
    secret.write_text("x")
    _OpenAudit.events.clear()
    _OpenAudit.active = True
    try:
        secret.read_text()
    finally:
        _OpenAudit.active = False
    assert any("s.txt" in arg for _, arg in _OpenAudit.events)
