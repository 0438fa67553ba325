"""The XML tree of a sidecar, kept whole: elements, attributes with their prefixes, text, comments and processing
instructions, so a rewrite loses no foreign property; and its serialization (UTF-8, double-quoted attributes, one
attribute per line in the Exiv2/darktable layout when an element has several)."""

from __future__ import annotations

import re
from collections.abc import Iterator

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

ARRAY_KINDS = ("Seq", "Bag", "Alt")
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


def clone_misc(node: Comment | PI) -> Comment | PI:
    return Comment(node.text) if isinstance(node, Comment) else PI(node.target, node.data)


def clone(root: Element) -> Element:
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
                dst.children.append(clone_misc(child))
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


def write_element(el: Element, out: list[str], ind: str | None) -> None:
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
            write_element(c, out, _indent_after(prev))
        else:
            out.append(write_misc(c))
        prev = c
    out.append(f"</{name}>")


def _indent_after(prev: object) -> str | None:
    if isinstance(prev, str) and "\n" in prev and not prev.strip():
        return prev.rsplit("\n", 1)[1]
    return None


def write_misc(node: Comment | PI) -> str:
    if isinstance(node, Comment):
        return f"<!--{node.text}-->"
    return f"<?{node.target} {node.data}?>" if node.data else f"<?{node.target}?>"


