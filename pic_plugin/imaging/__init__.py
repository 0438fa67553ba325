"""Pixels in and out: decoding (JPEG, PNG, TIFF, RAW), exporting cropped copies, thumbnails, faces."""
