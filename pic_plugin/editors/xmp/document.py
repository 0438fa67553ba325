"""Hardened XMP sidecar I/O shared by every format module.

* Parsing goes through defusedxml's expat SAX reader: a DOCTYPE (and with it every entity declaration, billion
  laughs, external entities, ``file://`` or network references) is refused, nothing is ever read from disk or
  network, the input is capped at ``MAX_BYTES`` and the element nesting at ``MAX_DEPTH``. Every failure is a
  ``SidecarError`` with a message a user can act on.
* The document model (``Element`` trees plus the comments / processing instructions around the root, e.g.
  ``<?xpacket ...?>``) keeps every element, attribute, namespace declaration (with its prefix), text node and
  comment, so rewriting a sidecar loses no foreign property. What is normalized on output: UTF-8 encoding,
  double-quoted attributes, character escaping, and attribute line breaks (one per line, in the Exiv2/darktable
  layout, when an element has more than one; whitespace *between* attributes is not reported by XML parsers).
* Properties may be attributes of an ``rdf:Description`` or child elements; a document may hold several
  ``rdf:Description`` blocks, be wrapped in ``x:xmpmeta`` or be a bare ``rdf:RDF``.
* ``read_sidecar`` / ``write_sidecar_atomic``: the write goes to a temp file in the same directory, is fsynced and
  renamed over the original with ``os.replace`` (original mode kept). Just before the rename the file on disk is
  compared with what was read (mtime_ns, size, SHA-256); if an editor wrote it meanwhile, ``ConcurrentChangeError``
  is raised and nothing is replaced. A temp file is never left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
import xml.sax
import xml.sax.handler
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import defusedxml.expatreader
from defusedxml import DefusedXmlException

from pic_plugin.core.errors import ConcurrentChangeError, SidecarError

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100

NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_X = "adobe:ns:meta/"
NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_XMLNS = "http://www.w3.org/2000/xmlns/"

#: Prefixes pic uses when it has to declare a namespace the document does not have yet.
PREFERRED_PREFIXES = {
    NS_RDF: "rdf",
    NS_X: "x",
    "http://darktable.sf.net/": "darktable",
    "http://ns.adobe.com/camera-raw-settings/1.0/": "crs",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
    "http://ns.adobe.com/xap/1.0/": "xmp",
}

_ARRAY_KINDS = ("Seq", "Bag", "Alt")
# Characters XML 1.0 cannot carry at all, not even as character references.
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# --- document model --------------------------------------------------------------------------------------------


class Comment:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class PI:
    """A processing instruction such as ``<?xpacket begin='...' id='...'?>``, kept verbatim."""

    __slots__ = ("data", "target")

    def __init__(self, target: str, data: str) -> None:
        self.target = target
        self.data = data


class Attr:
    __slots__ = ("local", "ns", "prefix", "value")

    def __init__(self, ns: str | None, local: str, prefix: str | None, value: str) -> None:
        self.ns = ns
        self.local = local
        self.prefix = prefix
        self.value = value


class Element:
    """One XML element with its namespace declarations, attributes (document order) and mixed children."""

    __slots__ = ("attrs", "children", "local", "ns", "nsdecls", "parent", "prefix")

    def __init__(self, ns: str | None, local: str, prefix: str | None = None) -> None:
        self.ns = ns
        self.local = local
        self.prefix = prefix
        self.attrs: list[Attr] = []
        self.nsdecls: list[tuple[str | None, str]] = []  # (prefix or None for the default namespace, uri)
        self.children: list[Element | str | Comment | PI] = []
        self.parent: Element | None = None

    # -- navigation
    def is_(self, ns: str | None, local: str) -> bool:
        return self.ns == ns and self.local == local

    def elements(self) -> Iterator[Element]:
        for c in self.children:
            if isinstance(c, Element):
                yield c

    def find(self, ns: str | None, local: str) -> Element | None:
        return next((e for e in self.elements() if e.is_(ns, local)), None)

    def text(self) -> str:
        return "".join(c for c in self.children if isinstance(c, str))

    def has_element_children(self) -> bool:
        return any(isinstance(c, Element) for c in self.children)

    # -- attributes
    def attr(self, ns: str | None, local: str) -> Attr | None:
        return next((a for a in self.attrs if a.ns == ns and a.local == local), None)

    def get(self, ns: str | None, local: str) -> str | None:
        a = self.attr(ns, local)
        return None if a is None else a.value

    def set_attr(self, ns: str | None, local: str, value: str, prefix_hint: str | None = None) -> None:
        value = clean_text(value)
        a = self.attr(ns, local)
        if a is not None:
            a.value = value
            return
        prefix = None if ns is None else self.ensure_prefix(ns, prefix_hint)
        self.attrs.append(Attr(ns, local, prefix, value))

    def remove_attr(self, ns: str | None, local: str) -> bool:
        before = len(self.attrs)
        self.attrs = [a for a in self.attrs if not (a.ns == ns and a.local == local)]
        return len(self.attrs) != before

    # -- namespaces
    def lookup_prefix(self, uri: str) -> str | None:
        """A non-default prefix bound to ``uri`` in scope here, or None (attributes need a prefix)."""
        shadowed: set[str | None] = set()
        node: Element | None = self
        while node is not None:
            for p, u in node.nsdecls:
                if p in shadowed:
                    continue
                shadowed.add(p)
                if u == uri and p is not None:
                    return p
            node = node.parent
        return "xml" if uri == NS_XML else None

    def lookup_uri(self, prefix: str | None) -> str | None:
        node: Element | None = self
        while node is not None:
            for p, u in node.nsdecls:
                if p == prefix:
                    return u
            node = node.parent
        return NS_XML if prefix == "xml" else None

    def ensure_prefix(self, uri: str, hint: str | None = None) -> str:
        """The prefix bound to ``uri`` here, declaring one on this element if the document has none."""
        found = self.lookup_prefix(uri)
        if found is not None:
            return found
        base = hint or PREFERRED_PREFIXES.get(uri) or "ns"
        prefix, i = base, 1
        while self.lookup_uri(prefix) is not None or any(p == prefix for p, _ in self.nsdecls):
            prefix, i = f"{base}{i}", i + 1
        self.nsdecls.append((prefix, uri))
        return prefix

    # -- tree edits that keep the surrounding indentation
    def append_child(self, child: Element) -> None:
        """Append ``child`` after the last element child, copying the whitespace layout of its siblings."""
        child.parent = self
        last = max((i for i, c in enumerate(self.children) if isinstance(c, Element)), default=None)
        if last is None:
            ind = _indent_of(self)
            if ind is None:
                self.children.append(child)
            else:
                self.children[:] = [f"\n{ind} ", child, f"\n{ind}"]
            return
        before = self.children[last - 1] if last > 0 else None
        sep = before if isinstance(before, str) and not before.strip() else None
        pos = last + 1
        if sep is not None:
            self.children[pos:pos] = [sep, child]
        else:
            self.children.insert(pos, child)

    def remove_child(self, child: Element) -> None:
        """Remove ``child`` and the whitespace that precedes it (so the siblings keep their layout)."""
        i = next(k for k, c in enumerate(self.children) if c is child)
        start = i - 1 if i > 0 and isinstance(self.children[i - 1], str) and not self.children[i - 1].strip() else i
        del self.children[start : i + 1]
        child.parent = None
        if not self.has_element_children() and not self.text().strip():
            self.children.clear()


def _clone_misc(node: Comment | PI) -> Comment | PI:
    return Comment(node.text) if isinstance(node, Comment) else PI(node.target, node.data)


def _clone(root: Element) -> Element:
    """Copy a tree without recursion (deepcopy is slow and recursive on large documents)."""

    def shallow(e: Element) -> Element:
        c = Element(e.ns, e.local, e.prefix)
        c.attrs = [Attr(a.ns, a.local, a.prefix, a.value) for a in e.attrs]
        c.nsdecls = list(e.nsdecls)
        return c

    new_root = shallow(root)
    stack = [(root, new_root)]
    while stack:
        src, dst = stack.pop()
        for child in src.children:
            if isinstance(child, Element):
                c = shallow(child)
                c.parent = dst
                dst.children.append(c)
                stack.append((child, c))
            elif isinstance(child, str):
                dst.children.append(child)
            else:
                dst.children.append(_clone_misc(child))
    return new_root


def clean_text(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot represent (controls, lone surrogates) replaced by U+FFFD."""
    return _INVALID_XML_CHARS.sub("\ufffd", value)


def _indent_of(el: Element) -> str | None:
    """The whitespace after the last newline before ``el`` (its indentation), or None in one-line documents."""
    parent = el.parent
    if parent is None:
        return ""
    i = next((k for k, c in enumerate(parent.children) if c is el), None)
    if i is None or i == 0:
        return None
    return _indent_after(parent.children[i - 1])


# --- parsing ---------------------------------------------------------------------------------------------------


class _Builder(xml.sax.handler.ContentHandler, xml.sax.handler.LexicalHandler):
    def __init__(self) -> None:
        super().__init__()
        self.prolog: list[Comment | PI] = []
        self.epilog: list[Comment | PI] = []
        self.root: Element | None = None
        self.stack: list[Element] = []
        self.pending_ns: list[tuple[str | None, str]] = []

    def startPrefixMapping(self, prefix: str | None, uri: str) -> None:  # noqa: N802 (SAX API)
        self.pending_ns.append((prefix or None, uri))

    def startElementNS(self, name: tuple[str | None, str], qname: str | None, attrs) -> None:  # noqa: N802
        if len(self.stack) >= MAX_DEPTH:
            raise SidecarError(f"XMP nesting deeper than {MAX_DEPTH} elements (refused as hostile)")
        ns, local = name
        el = Element(ns or None, local)
        el.nsdecls, self.pending_ns = self.pending_ns, []
        el.parent = self.stack[-1] if self.stack else None
        # Python's expat SAX driver reports prefixes for attributes only; an element's comes from its scope.
        el.prefix = _element_prefix(el) if el.ns else None
        for (ans, alocal), value in attrs.items():
            el.attrs.append(Attr(ans or None, alocal, _prefix_of(attrs.getQNameByName((ans, alocal))), value))
        if self.stack:
            self.stack[-1].children.append(el)
        else:
            self.root = el
        self.stack.append(el)

    def endElementNS(self, name, qname) -> None:  # noqa: N802
        self.stack.pop()

    def characters(self, content: str) -> None:
        if not self.stack:
            return
        children = self.stack[-1].children
        if children and isinstance(children[-1], str):
            children[-1] += content
        else:
            children.append(content)

    def _misc(self, node: Comment | PI) -> None:
        if self.stack:
            self.stack[-1].children.append(node)
        elif self.root is None:
            self.prolog.append(node)
        else:
            self.epilog.append(node)

    def processingInstruction(self, target: str, data: str) -> None:  # noqa: N802
        self._misc(PI(target, data))

    def comment(self, content: str) -> None:
        self._misc(Comment(content))

    # LexicalHandler methods pic does not need (a DTD never gets this far: defusedxml refuses it)
    def startDTD(self, name, public_id, system_id) -> None:  # noqa: N802
        raise SidecarError("XMP with a DOCTYPE is refused")

    def endDTD(self) -> None:  # noqa: N802
        pass

    def startCDATA(self) -> None:  # noqa: N802
        pass

    def endCDATA(self) -> None:  # noqa: N802
        pass


def _element_prefix(el: Element) -> str | None:
    node: Element | None = el
    while node is not None:
        for p, u in reversed(node.nsdecls):
            if u == el.ns:
                return p
        node = node.parent
    return None


def _prefix_of(qname: str | None) -> str | None:
    if qname and ":" in qname:
        return qname.split(":", 1)[0]
    return None


def parse_xmp(data: bytes, *, source: str = "sidecar") -> XmpDocument:
    """Parse XMP bytes safely. Raises ``SidecarError`` for anything that is not a plain, well-formed XMP packet."""
    doc = parse_xml(data, source=source)
    doc.rdf()  # validates that this is XMP at all
    return doc


def parse_xml(data: bytes, *, source: str = "sidecar") -> XmpDocument:
    """Parse any XML document with the same hardening as ``parse_xmp`` but without requiring XMP structure
    (for XML carried inside an XMP value, e.g. digiKam's image history). ``root`` is the document element."""
    if len(data) > MAX_BYTES:
        raise SidecarError(f"{source}: {len(data)} bytes is more than the {MAX_BYTES >> 20} MiB pic accepts for XMP")
    builder = _Builder()
    parser = defusedxml.expatreader.create_parser(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    parser.setFeature(xml.sax.handler.feature_namespaces, True)
    parser.setFeature(xml.sax.handler.feature_external_ges, False)
    parser.setFeature(xml.sax.handler.feature_external_pes, False)
    parser.setContentHandler(builder)
    parser.setProperty(xml.sax.handler.property_lexical_handler, builder)
    # Neutralize the SAX resolver as well: even if something asked for an external resource, nothing is opened.
    parser.setEntityResolver(_NoResolver())
    try:
        parser.feed(data)
        parser.close()
    except SidecarError as exc:
        raise SidecarError(f"{source}: {exc}") from None
    except DefusedXmlException as exc:
        raise SidecarError(f"{source}: refused hostile XML ({type(exc).__name__}: DTDs, entities and external "
                           "references are not allowed in sidecars)") from None
    except xml.sax.SAXException as exc:
        raise SidecarError(f"{source}: not well-formed XML ({exc})") from None
    except (ValueError, UnicodeError, LookupError, RecursionError, MemoryError) as exc:
        raise SidecarError(f"{source}: unreadable XML ({type(exc).__name__}: {exc})") from None
    if builder.root is None:
        raise SidecarError(f"{source}: empty XML document")
    return XmpDocument(builder.root, builder.prolog, builder.epilog, data.lstrip(b"\xef\xbb\xbf").startswith(b"<?xml"))


class _NoResolver(xml.sax.handler.EntityResolver):
    def resolveEntity(self, publicId, systemId):  # noqa: N802, N803
        raise SidecarError(f"external reference {systemId!r} refused")


# --- serialization ---------------------------------------------------------------------------------------------


def _esc_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _esc_attr(s: str) -> str:
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace('"', "&quot;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def _qname(prefix: str | None, local: str) -> str:
    return f"{prefix}:{local}" if prefix else local


def _write_element(el: Element, out: list[str], ind: str | None) -> None:
    """Serialize ``el``; ``ind`` is its indentation (None in one-line layouts), from the text before it."""
    name = _qname(el.prefix, el.local)
    about = [a for a in el.attrs if a.ns == NS_RDF and a.local == "about"]
    decls = [(f"xmlns:{p}" if p else "xmlns") + f'="{_esc_attr(u)}"' for p, u in el.nsdecls]
    attrs = [f'{_qname(a.prefix, a.local)}="{_esc_attr(a.value)}"' for a in el.attrs if a not in about]
    head = [f'{_qname(a.prefix, a.local)}="{_esc_attr(a.value)}"' for a in about]
    out.append("<" + name)
    items = head + decls + attrs
    if ind is None or (len(items) <= 2 and sum(map(len, items)) <= 100):
        for item in items:
            out.append(" " + item)
    else:
        # The Exiv2/darktable layout: rdf:about inline, then one declaration / attribute per line.
        for item in head:
            out.append(" " + item)
        for item in decls:
            out.append("\n" + ind + "  " + item)
        for item in attrs:
            out.append("\n" + ind + " " + item)
    if not el.children:
        out.append("/>")
        return
    out.append(">")
    prev: Element | str | Comment | PI | None = None
    for c in el.children:
        if isinstance(c, str):
            # value text: newlines as character references, like Exiv2; layout whitespace stays literal
            out.append(_esc_text(c).replace("\n", "&#xA;") if c.strip() else _esc_text(c))
        elif isinstance(c, Element):
            _write_element(c, out, _indent_after(prev))
        else:
            out.append(_write_misc(c))
        prev = c
    out.append(f"</{name}>")


def _indent_after(prev: object) -> str | None:
    if isinstance(prev, str) and "\n" in prev and not prev.strip():
        return prev.rsplit("\n", 1)[1]
    return None


def _write_misc(node: Comment | PI) -> str:
    if isinstance(node, Comment):
        return f"<!--{node.text}-->"
    return f"<?{node.target} {node.data}?>" if node.data else f"<?{node.target}?>"


# --- the document and its properties ---------------------------------------------------------------------------


@dataclass
class PropRef:
    """Where a simple property lives: an attribute of a description, or a child element of it."""

    description: Element
    attr: Attr | None = None
    element: Element | None = None

    @property
    def value(self) -> str:
        if self.attr is not None:
            return self.attr.value
        assert self.element is not None
        res = self.element.get(NS_RDF, "resource")
        return res if res is not None else self.element.text()


class XmpDocument:
    def __init__(self, root: Element, prolog: list[Comment | PI] | None = None,
                 epilog: list[Comment | PI] | None = None, xml_decl: bool = True) -> None:
        self.root = root
        self.prolog = prolog or []
        self.epilog = epilog or []
        self.xml_decl = xml_decl

    @classmethod
    def new(cls) -> XmpDocument:
        """An empty sidecar in the layout darktable and Exiv2 write."""
        root = Element(NS_X, "xmpmeta", "x")
        root.nsdecls = [("x", NS_X)]
        root.attrs = [Attr(NS_X, "xmptk", "x", "pic")]
        rdf = Element(NS_RDF, "RDF", "rdf")
        rdf.nsdecls = [("rdf", NS_RDF)]
        desc = Element(NS_RDF, "Description", "rdf")
        desc.attrs = [Attr(NS_RDF, "about", "rdf", "")]
        root.children = ["\n ", rdf, "\n"]
        rdf.children = ["\n  ", desc, "\n "]
        rdf.parent, desc.parent = root, rdf
        return cls(root, [], [], True)

    def copy(self) -> XmpDocument:
        """A deep copy (an edit can be tried on it and dropped if it fails)."""
        return XmpDocument(_clone(self.root), [_clone_misc(n) for n in self.prolog],
                           [_clone_misc(n) for n in self.epilog], self.xml_decl)

    def to_bytes(self) -> bytes:
        out: list[str] = []
        if self.xml_decl:
            out.append('<?xml version="1.0" encoding="UTF-8"?>\n')
        for node in self.prolog:
            out.append(_write_misc(node) + "\n")
        _write_element(self.root, out, "")
        out.append("\n")
        for node in self.epilog:
            out.append(_write_misc(node) + "\n")
        return "".join(out).encode("utf-8")

    # -- structure
    def rdf(self) -> Element:
        if self.root.is_(NS_RDF, "RDF"):
            return self.root
        found = self.root.find(NS_RDF, "RDF")
        if found is None:
            raise SidecarError("not an XMP document (no rdf:RDF element)")
        return found

    def descriptions(self) -> list[Element]:
        return [e for e in self.rdf().elements() if e.is_(NS_RDF, "Description")]

    def add_description(self) -> Element:
        desc = Element(NS_RDF, "Description", self.rdf().ensure_prefix(NS_RDF))
        desc.attrs = [Attr(NS_RDF, "about", desc.prefix, "")]
        self.rdf().append_child(desc)
        return desc

    def description_for(self, ns: str) -> Element:
        """The description new properties of namespace ``ns`` go into: one that already uses ``ns``, else the first."""
        descs = self.descriptions() or [self.add_description()]
        for d in descs:
            if any(a.ns == ns for a in d.attrs) or any(e.ns == ns for e in d.elements()):
                return d
            if any(u == ns for _, u in d.nsdecls):
                return d
        return descs[0]

    # -- simple properties
    def find(self, ns: str, name: str) -> PropRef | None:
        for d in self.descriptions():
            a = d.attr(ns, name)
            if a is not None:
                return PropRef(d, attr=a)
            e = d.find(ns, name)
            if e is not None:
                return PropRef(d, element=e)
        return None

    def get(self, ns: str, name: str) -> str | None:
        ref = self.find(ns, name)
        return None if ref is None else ref.value

    def set(self, ns: str, name: str, value: str, prefix_hint: str | None = None) -> None:
        """Set a simple property where it already is (attribute or element), else as an attribute."""
        value = clean_text(value)
        ref = self.find(ns, name)
        if ref is not None and ref.attr is not None:
            ref.attr.value = value
        elif ref is not None and ref.element is not None:
            el = ref.element
            if el.has_element_children():
                raise SidecarError(f"property {name} is a structure or array, not a simple value")
            el.remove_attr(NS_RDF, "resource")
            el.children = [value] if value else []
        else:
            self.description_for(ns).set_attr(ns, name, value, prefix_hint)

    def remove(self, ns: str, name: str) -> bool:
        removed = False
        for d in self.descriptions():
            removed |= d.remove_attr(ns, name)
            for e in [e for e in d.elements() if e.is_(ns, name)]:
                d.remove_child(e)
                removed = True
        return removed

    # -- arrays
    def array_items(self, ns: str, name: str) -> list[Element] | None:
        """The ``rdf:li`` elements of an array property, or None if there is no such array."""
        container = self.array_container(ns, name)
        if container is None:
            return None
        return [e for e in container.elements() if e.is_(NS_RDF, "li")]

    def array_container(self, ns: str, name: str) -> Element | None:
        for d in self.descriptions():
            prop = d.find(ns, name)
            if prop is None:
                continue
            for kind in _ARRAY_KINDS:
                c = prop.find(NS_RDF, kind)
                if c is not None:
                    return c
        return None

    def ensure_array(self, ns: str, name: str, kind: str = "Seq", prefix_hint: str | None = None) -> Element:
        found = self.array_container(ns, name)
        if found is not None:
            return found
        desc = self.description_for(ns)
        prop = Element(ns, name, desc.ensure_prefix(ns, prefix_hint))
        desc.append_child(prop)
        container = Element(NS_RDF, kind, prop.ensure_prefix(NS_RDF))
        prop.append_child(container)
        return container

    def remove_property_element(self, ns: str, name: str) -> None:
        for d in self.descriptions():
            for e in [e for e in d.elements() if e.is_(ns, name)]:
                d.remove_child(e)

    # -- flattened view (used to prove that a rewrite keeps every property)
    def properties(self) -> list[tuple[str, str]]:
        """Every property as (path, value); paths use namespace URIs, so prefixes do not matter."""
        out: list[tuple[str, str]] = []
        for d in self.descriptions():
            _flatten_struct(d, "", out)
        return out

    def namespaces(self) -> set[str]:
        uris: set[str] = set()

        def walk(e: Element) -> None:
            uris.update(u for _, u in e.nsdecls)
            for c in e.elements():
                walk(c)

        walk(self.root)
        return uris


def _key(ns: str | None, local: str) -> str:
    return f"{{{ns}}}{local}" if ns else local


def _flatten_struct(node: Element, path: str, out: list[tuple[str, str]]) -> None:
    for a in node.attrs:
        if a.ns in (NS_RDF, NS_XML):
            continue
        out.append((path + _key(a.ns, a.local), a.value))
    for child in node.elements():
        _flatten_value(child, path + _key(child.ns, child.local), out)


def _flatten_value(el: Element, path: str, out: list[tuple[str, str]]) -> None:
    lang = el.get(NS_XML, "lang")
    if lang is not None:
        out.append((path + "@xml:lang", lang))
    resource = el.get(NS_RDF, "resource")
    if resource is not None:
        out.append((path, resource))
        return
    kids = list(el.elements())
    if el.get(NS_RDF, "parseType") == "Resource":
        _flatten_struct(el, path + "/", out)
        return
    if len(kids) == 1 and kids[0].ns == NS_RDF and kids[0].local in _ARRAY_KINDS:
        items = [k for k in kids[0].elements() if k.is_(NS_RDF, "li")]
        out.append((path, f"<{kids[0].local}:{len(items)}>"))
        for i, li in enumerate(items, 1):
            _flatten_value(li, f"{path}[{i}]", out)
        return
    if len(kids) == 1 and kids[0].is_(NS_RDF, "Description"):
        _flatten_struct(kids[0], path + "/", out)
        return
    if kids or any(a.ns not in (NS_RDF, NS_XML) for a in el.attrs):
        _flatten_struct(el, path + "/", out)
        return
    out.append((path, el.text()))


class Struct:
    """Field access for one XMP structure (e.g. a darktable history ``rdf:li``), in any of RDF's three spellings:
    fields as attributes of the ``li``, as child elements (``rdf:parseType="Resource"``), or inside a nested
    ``rdf:Description``."""

    def __init__(self, node: Element) -> None:
        self.node = node
        inner = node.find(NS_RDF, "Description")
        self.body = inner if inner is not None else node

    def get(self, ns: str, name: str) -> str | None:
        v = self.body.get(ns, name)
        if v is not None:
            return v
        e = self.body.find(ns, name)
        if e is None:
            return None
        res = e.get(NS_RDF, "resource")
        return res if res is not None else e.text()

    def has(self, ns: str, name: str) -> bool:
        return self.body.attr(ns, name) is not None or self.body.find(ns, name) is not None

    def element_style(self) -> bool:
        return self.body.has_element_children() or self.node.get(NS_RDF, "parseType") == "Resource"

    def set(self, ns: str, name: str, value: str, prefix_hint: str | None = None) -> None:
        value = clean_text(value)
        if self.body.attr(ns, name) is not None:
            self.body.set_attr(ns, name, value)
            return
        e = self.body.find(ns, name)
        if e is not None:
            e.remove_attr(NS_RDF, "resource")
            e.children = [value] if value else []
            return
        if self.element_style():
            field = Element(ns, name, self.body.ensure_prefix(ns, prefix_hint))
            field.children = [value] if value else []
            self.body.append_child(field)
        else:
            self.body.set_attr(ns, name, value, prefix_hint)


def new_item_like(container: Element, template: Element | None) -> Struct:
    """A new empty ``rdf:li`` in ``container`` spelled like ``template`` (attribute or element style)."""
    li = Element(NS_RDF, "li", container.ensure_prefix(NS_RDF))
    container.append_child(li)
    if template is not None:
        if template.get(NS_RDF, "parseType") == "Resource":
            li.attrs.append(Attr(NS_RDF, "parseType", li.prefix, "Resource"))
        elif template.find(NS_RDF, "Description") is not None:
            desc = Element(NS_RDF, "Description", li.prefix)
            li.append_child(desc)
    return Struct(li)


# --- files: reading with a stamp, atomic replace with a concurrency check -------------------------------------


@dataclass(frozen=True)
class FileStamp:
    """What a sidecar looked like when pic read it; None fields mean "did not exist"."""

    exists: bool
    mtime_ns: int | None = None
    size: int | None = None
    sha256: str | None = None


MISSING = FileStamp(False)


def _stamp_now(path: Path) -> FileStamp:
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return MISSING
    return FileStamp(True, st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest())


def read_bytes(path: Path) -> tuple[bytes | None, FileStamp]:
    """The file's bytes (None if it does not exist) and the stamp to check before replacing it."""
    for _ in range(5):
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device would never end
                raise SidecarError(f"{os.fsdecode(path)}: not a regular file")
            if st.st_size > MAX_BYTES:
                raise SidecarError(f"{os.fsdecode(path)}: {st.st_size} bytes is more than the "
                                   f"{MAX_BYTES >> 20} MiB pic accepts for XMP")
            with open(path, "rb") as fh:
                data = fh.read(MAX_BYTES + 1)
            after = os.stat(path)
        except FileNotFoundError:
            return None, MISSING
        except OSError as exc:
            raise SidecarError(f"{os.fsdecode(path)}: cannot read ({exc.strerror or exc})") from None
        if len(data) > MAX_BYTES:
            raise SidecarError(f"{os.fsdecode(path)}: more than the {MAX_BYTES >> 20} MiB pic accepts for XMP")
        if (after.st_mtime_ns, after.st_size) == (st.st_mtime_ns, st.st_size) == (st.st_mtime_ns, len(data)):
            return data, FileStamp(True, st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest())
    raise ConcurrentChangeError(f"{os.fsdecode(path)}: keeps changing while pic reads it")


def read_sidecar(path: Path) -> tuple[XmpDocument | None, FileStamp]:
    data, stamp = read_bytes(path)
    if data is None:
        return None, stamp
    return parse_xmp(data, source=os.fsdecode(path)), stamp


def check_unchanged(path: Path, expected: FileStamp) -> None:
    """Raise ``ConcurrentChangeError`` if ``path`` is no longer what was read (or appeared / vanished)."""
    now = _stamp_now(path)
    if now.exists != expected.exists:
        what = "appeared" if now.exists else "disappeared"
        raise ConcurrentChangeError(f"{path}: {what} while pic prepared its update; retry")
    if now.exists and (now.mtime_ns, now.size, now.sha256) != (expected.mtime_ns, expected.size, expected.sha256):
        raise ConcurrentChangeError(f"{path}: changed on disk while pic prepared its update (an editor wrote it); retry")


def _real_target(path: Path) -> Path:
    """Write through a symlinked sidecar instead of replacing the link with a file."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def write_sidecar_atomic(path: Path, data: bytes, expected: FileStamp) -> None:
    """Replace ``path`` with ``data`` atomically, only if it still is what ``expected`` describes."""
    target = _real_target(path)
    directory = target.parent
    try:
        st = os.stat(target)
        mode = stat.S_IMODE(st.st_mode)
        owner = (st.st_uid, st.st_gid)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode, owner = 0o666 & ~umask, None
    fd, tmp_name = tempfile.mkstemp(prefix=".pic-", suffix=".xmp.tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if owner is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
            with contextlib.suppress(OSError):
                os.chown(tmp, *owner)
        check_unchanged(target, expected)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
