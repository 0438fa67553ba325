"""XMP documents, the one XML dialect every editor's sidecar is written in.

- ``tree``: the XML tree kept whole (every foreign element, prefix and comment) and its serialization;
- ``parse``: hardened parsing (no DTD, no entities, size and depth caps);
- ``document``: ``XmpDocument``, its properties, arrays and structs;
- ``files``: reading a sidecar with a stamp and replacing it atomically, checked against concurrent edits.
"""

from pic_plugin.editors.xmp.document import PropRef, Struct, XmpDocument, new_item_like
from pic_plugin.editors.xmp.files import (
    MISSING,
    FileStamp,
    check_unchanged,
    read_bytes,
    read_sidecar,
    write_sidecar_atomic,
)
from pic_plugin.editors.xmp.parse import parse_xml, parse_xmp
from pic_plugin.editors.xmp.tree import MAX_BYTES, MAX_DEPTH, NS_RDF, NS_X, NS_XML, NS_XMLNS, Element, clean_text

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MISSING",
    "NS_RDF",
    "NS_X",
    "NS_XML",
    "NS_XMLNS",
    "Element",
    "FileStamp",
    "PropRef",
    "Struct",
    "XmpDocument",
    "check_unchanged",
    "clean_text",
    "new_item_like",
    "parse_xml",
    "parse_xmp",
    "read_bytes",
    "read_sidecar",
    "write_sidecar_atomic",
]
