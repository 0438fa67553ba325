"""The editors' file formats, read and written: XMP, darktable, digiKam, Lightroom (crs), pic's namespace.

Needs only ``core``: ``import pic_plugin.editors`` loads neither torch nor numpy."""
