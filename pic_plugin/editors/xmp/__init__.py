"""XMP documents: hardened parsing, a small editable model of the RDF tree, safe sidecar files."""

from .document import *  # noqa: F403  (re-export; listed explicitly below)
