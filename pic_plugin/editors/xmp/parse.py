"""Hardened parsing of XMP/XML: defusedxml's expat SAX reader refuses a DOCTYPE (and with it every entity
declaration, billion laughs, external entities, ``file://`` or network references), nothing is read from disk or
network, the input is capped at ``tree.MAX_BYTES`` and the nesting at ``tree.MAX_DEPTH``. Every failure is a ``SidecarError``
with a message a user can act on."""

from __future__ import annotations

import xml.sax
import xml.sax.handler

import defusedxml.expatreader
from defusedxml import DefusedXmlException

from pic_plugin.core.errors import SidecarError
from pic_plugin.editors.xmp import tree
from pic_plugin.editors.xmp.document import XmpDocument
from pic_plugin.editors.xmp.tree import PI, Attr, Comment, Element

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
        if len(self.stack) >= tree.MAX_DEPTH:
            raise SidecarError(f"XMP nesting deeper than {tree.MAX_DEPTH} elements (refused as hostile)")
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
    if len(data) > tree.MAX_BYTES:
        raise SidecarError(f"{source}: {len(data)} bytes is more than the {tree.MAX_BYTES >> 20} MiB pic accepts for XMP")
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


