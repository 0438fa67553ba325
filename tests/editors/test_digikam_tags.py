"""digiKam tags: pic's tag never hides the user's tags (digiKam reads the first non-empty tag field)."""

from __future__ import annotations

from pic_plugin.editors.digikam.tags import add_tag, digikam_tag_paths, tag_values
from pic_plugin.editors.xmp import parse_xmp


def doc_with(fields: str):
    return parse_xmp(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:lr="http://ns.adobe.com/lightroom/1.0/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/" '
        f'xmlns:digiKam="http://www.digikam.org/ns/1.0/">{fields}</rdf:Description></rdf:RDF></x:xmpmeta>'.encode())


def bag(prefix_name: str, *values: str, kind: str = "Bag") -> str:
    items = "".join(f"<rdf:li>{v}</rdf:li>" for v in values)
    return f"<{prefix_name}><rdf:{kind}>{items}</rdf:{kind}></{prefix_name}>"


def test_digikam_reads_the_first_non_empty_field_in_its_order() -> None:
    assert digikam_tag_paths(doc_with(bag("dc:subject", "Paris"))) == ["Paris"]
    both = doc_with(bag("dc:subject", "Paris") + bag("lr:hierarchicalSubject", "Places|France|Paris"))
    assert digikam_tag_paths(both) == ["Places/France/Paris"]  # lr before dc
    ms = doc_with(bag("lr:hierarchicalSubject", "A|B") + bag("MicrosoftPhoto:LastKeywordXMP", "M/N"))
    assert digikam_tag_paths(ms) == ["M/N"]  # Microsoft's field before lr
    assert digikam_tag_paths(doc_with(bag("digiKam:TagsList", kind="Seq") + bag("dc:subject", "x"))) == ["x"]


def test_pics_tag_is_added_with_the_tags_digikam_reads_now() -> None:
    doc = doc_with(bag("lr:hierarchicalSubject", "Places|France|Paris", "People|Anna"))
    assert add_tag(doc)
    tags_list, lr = tag_values(doc)
    assert tags_list == ["Places/France/Paris", "People/Anna", "pic/suggested"]
    assert lr == ["Places|France|Paris", "People|Anna", "pic|suggested"]
    assert digikam_tag_paths(doc) == tags_list
    assert not add_tag(doc)  # idempotent
    assert tag_values(doc) == (tags_list, lr)
    # an existing TagsList is digiKam's own: left as it is, pic's tag appended
    own = doc_with(bag("digiKam:TagsList", "People/Anna", kind="Seq") + bag("dc:subject", "other"))
    add_tag(own)
    assert tag_values(own)[0] == ["People/Anna", "pic/suggested"]
