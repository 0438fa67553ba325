"""darktable: sidecar history and crop params, styles, and its library database."""

from .sidecar import *  # noqa: F403  (re-export; listed explicitly below)
