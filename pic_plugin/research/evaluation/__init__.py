"""The evaluation of DESIGN section 6: ``metrics``, ``baselines``, the ``protocol`` on simulated users, a real
user's ``own_crops``, the Markdown ``tables`` and the README's whole ``report``."""

from pic_plugin.research.evaluation.baselines import (
    BASELINES,
    centre_crop,
    libvips_attention_crop,
    nearest_ratio,
    smartcrop_crop,
    user_mean_geometry,
)
from pic_plugin.research.evaluation.metrics import RETAIN, Tally, cuts_face, gaic_metrics, rank_average, spearman
from pic_plugin.research.evaluation.own_crops import UserCrop, evaluate_user, heldout_split
from pic_plugin.research.evaluation.protocol import (
    EVAL_SEED,
    K_VALUES,
    SUPPORT_POOL,
    EvalPhoto,
    ProtocolResult,
    eval_photos,
    run_protocol,
    suggest_box,
)
from pic_plugin.research.evaluation.tables import METHOD_LABELS, format_metrics, format_table

__all__ = [
    "BASELINES",
    "EVAL_SEED",
    "K_VALUES",
    "METHOD_LABELS",
    "RETAIN",
    "SUPPORT_POOL",
    "EvalPhoto",
    "ProtocolResult",
    "Tally",
    "UserCrop",
    "centre_crop",
    "cuts_face",
    "eval_photos",
    "evaluate_user",
    "format_metrics",
    "format_table",
    "gaic_metrics",
    "heldout_split",
    "libvips_attention_crop",
    "nearest_ratio",
    "rank_average",
    "run_protocol",
    "smartcrop_crop",
    "spearman",
    "suggest_box",
    "user_mean_geometry",
]
