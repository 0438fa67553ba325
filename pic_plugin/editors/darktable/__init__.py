"""darktable: its sidecars, styles and library database (FORMATS.md sections 1 and 2).

- ``params``: the history params' text encoding and the crop / clipping / flip byte layouts;
- ``history``: a sidecar's history and which entries take effect;
- ``frames``: darktable's crop frame vs pic's displayed frame, the legacy clipping geometry;
- ``read``: the crop darktable renders; ``write``: appending pic's crop entry; ``files``: sidecar names;
- ``styles``: darktable style files (``pic dtstyle``); ``library_db``: darktable's ``library.db``, read-only.
"""

from pic_plugin.editors.darktable.files import duplicate_sidecars, sidecar_path
from pic_plugin.editors.darktable.frames import clipping_content, displayed_to_frame, frame_orientation
from pic_plugin.editors.darktable.history import DarktableHistory, HistoryEntry, read_history
from pic_plugin.editors.darktable.params import (
    BITS_TO_EXIF,
    FULL_FRAME_EPS,
    MAX_PARAMS_BYTES,
    NS_DT,
    ClippingParams,
    CropParams,
    crop_ratio_lock,
    decode_params,
    encode_params,
)
from pic_plugin.editors.darktable.read import DarktableCrop, read_crop
from pic_plugin.editors.darktable.write import DarktableWrite, OwnEntry, drop_own_entry, write_crop

__all__ = [
    "BITS_TO_EXIF",
    "FULL_FRAME_EPS",
    "MAX_PARAMS_BYTES",
    "NS_DT",
    "ClippingParams",
    "CropParams",
    "DarktableCrop",
    "DarktableHistory",
    "DarktableWrite",
    "HistoryEntry",
    "OwnEntry",
    "clipping_content",
    "crop_ratio_lock",
    "decode_params",
    "displayed_to_frame",
    "drop_own_entry",
    "duplicate_sidecars",
    "encode_params",
    "frame_orientation",
    "read_crop",
    "read_history",
    "sidecar_path",
    "write_crop",
]
