"""Per-candidate features of the PIC model (summed-area pooling, geometry relative to the predicted subject)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_fixtures import synthetic_analysis

from pic_plugin.analysis import candidate_features as cf
from pic_plugin.analysis.heads import roi_rod_pool
from pic_plugin.core.geometry import Box
from pic_plugin.imaging.faces import Face


def test_constant_map_pools_to_the_constant() -> None:
    a = synthetic_analysis(fmap=np.full((16, 15, 20), 2.0, dtype=np.float16))
    boxes = np.array([[0.1, 0.2, 0.7, 0.9], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.4, 0.35]], dtype=np.float32)
    f = cf.compute(cf.photo_context(a), boxes)
    c = 16
    roi = f.content[:, : c * 9]
    rod = f.content[:, c * 9 : c * 10]
    assert np.allclose(roi, 2.0, atol=0.05)
    assert np.allclose(rod[[0, 2]], 2.0, atol=0.05)
    assert np.allclose(rod[1], 0.0)  # the full frame discards nothing
    assert f.content.shape == (3, cf.content_dim(16))
    assert f.geometry.shape == (3, cf.GEOMETRY_DIM)
    assert np.isfinite(f.geometry).all()


def test_roi_matches_grid_sample_pooling_on_a_smooth_map() -> None:
    yy, xx = np.mgrid[0:15, 0:20].astype(np.float32)
    fmap = np.stack([xx / 20 + yy / 15 + i for i in range(16)]).astype(np.float16)
    a = synthetic_analysis(fmap=fmap)
    boxes = np.array([[0.2, 0.1, 0.8, 0.7]], dtype=np.float32)
    ours = cf.compute(cf.photo_context(a), boxes).content[0, : 16 * 9].reshape(9, 16).T.reshape(16, 3, 3)
    ref, _ = roi_rod_pool(torch.from_numpy(fmap.astype(np.float32)), torch.from_numpy(boxes), k=3)
    assert np.allclose(ours, ref[0].numpy(), atol=0.08)


def test_geometry_ratio_and_subject_terms() -> None:
    a = synthetic_analysis(size=(600, 400))
    names = cf.geometry_names()
    g = {n: i for i, n in enumerate(names)}
    square = np.array([[0.2, 0.1, 0.2 + 400 / 600 * 0.8, 0.9]], dtype=np.float32)  # 1:1 in pixels
    full = np.array([[0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    f = cf.compute(cf.photo_context(a), np.concatenate([square, full])).geometry
    assert f[0, g["is_1:1"]] == pytest.approx(1.0, abs=1e-3)
    assert f[0, g["is_16:9"]] < 0.01
    assert f[1, g["is_original"]] == pytest.approx(1.0, abs=1e-3)
    assert f[1, g["is_3:2"]] == pytest.approx(1.0, abs=1e-3)
    # The full frame keeps all subject mass; the cells add up to the kept share.
    assert f[1, g["keep"]] == pytest.approx(1.0, abs=0.02)
    cells = [g[f"mass_cell_{i}"] for i in range(9)]
    assert f[1, cells].sum() == pytest.approx(1.0, abs=0.03)
    assert f[1, g["mass_left"]] == pytest.approx(0.0, abs=1e-3)


def test_face_cut_is_reported() -> None:
    face = Face(Box(0.3, 0.3, 0.4, 0.45), 0.95)
    a = synthetic_analysis(faces=[face])
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.35, 0.0, 1.0, 1.0]], dtype=np.float32)
    f = cf.compute(cf.photo_context(a), boxes)
    col = cf.STAT_NAMES.index("face_cut")
    assert f.stats[0, col] == 0 and f.stats[1, col] > 0.9
