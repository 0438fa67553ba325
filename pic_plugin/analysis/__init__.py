"""From pixels to crops: the backbone, the heads, per-photo features, candidates and their scoring."""
