"""The evaluation protocol of DESIGN section 6: metrics, baselines, protocol and report."""

from .protocol import *  # noqa: F403  (re-export; listed explicitly below)
