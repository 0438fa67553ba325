"""An XMP document and its properties: attributes of an ``rdf:Description`` or child elements, in one or several
``rdf:Description`` blocks, wrapped in ``x:xmpmeta`` or a bare ``rdf:RDF``; arrays and structs as editors write
them."""

from __future__ import annotations

from dataclasses import dataclass

from pic_plugin.core.errors import SidecarError
from pic_plugin.editors.xmp.tree import (
    ARRAY_KINDS,
    NS_RDF,
    NS_X,
    NS_XML,
    PI,
    Attr,
    Comment,
    Element,
    clean_text,
    clone,
    clone_misc,
    write_element,
    write_misc,
)

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
        return XmpDocument(clone(self.root), [clone_misc(n) for n in self.prolog],
                           [clone_misc(n) for n in self.epilog], self.xml_decl)

    def to_bytes(self) -> bytes:
        out: list[str] = []
        if self.xml_decl:
            out.append('<?xml version="1.0" encoding="UTF-8"?>\n')
        for node in self.prolog:
            out.append(write_misc(node) + "\n")
        write_element(self.root, out, "")
        out.append("\n")
        for node in self.epilog:
            out.append(write_misc(node) + "\n")
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
            for kind in ARRAY_KINDS:
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
    if len(kids) == 1 and kids[0].ns == NS_RDF and kids[0].local in ARRAY_KINDS:
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


