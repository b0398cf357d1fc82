"""The paper's motion metrics against closed forms and hand calculations."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dualtalk_cli import metrics
from dualtalk_cli.metrics import (
    GROUPS,
    METRICS,
    PUBLICATION_SCALE,
    clip_metrics,
    frechet_distance,
    mean_squared_error,
    paired_frechet_distance,
    rpcc,
    scale_for_publication,
    sid,
)

# Fixed points in general position; the identities below hold for any set of
# points with more points than features (so covariances are not singular).
POINTS = np.random.default_rng(7).normal(0, 1, (9, 3)).round(2)


def motion(n_frames: int, seed: int) -> np.ndarray:
    """A varied [T, 56] DualTalk vector."""
    return np.random.default_rng(seed).normal(0, 0.3, (n_frames, 56)).astype(np.float32)


# ------------------------------------------------------------------ FD


def test_fd_of_a_shifted_copy_is_the_squared_shift():
    shift = np.array([1.0, -2.0, 0.5])
    # Same covariance, so only |c|^2 = 1 + 4 + 0.25 remains.
    assert frechet_distance(POINTS, POINTS + shift) == pytest.approx(5.25, abs=1e-9)


def test_fd_of_identical_inputs_is_zero():
    assert frechet_distance(POINTS, POINTS) == pytest.approx(0.0, abs=1e-9)


def test_fd_of_a_scaled_1d_copy():
    x = np.array([1.0, 2.0, 3.0, 4.0])  # mean 2.5, sample variance 5/3
    # (2.5 - 7.5)^2 + (sd - 3 sd)^2 = 25 + 4 * 5/3 = 95/3
    expected = 95 / 3
    assert frechet_distance(x, 3 * x) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(x[:, None], 3 * x[:, None]) == pytest.approx(
        expected, rel=1e-12
    )


def test_fd_with_diagonal_covariances():
    # Points +-a on axis 1 and +-b on axis 2: mean 0, covariance
    # diag(2a^2/3, 2b^2/3) exactly (four points, unbiased).
    def cross(a: float, b: float) -> np.ndarray:
        return np.array([[a, 0.0], [-a, 0.0], [0.0, b], [0.0, -b]])

    shift = np.array([0.5, 1.0])
    first, second = cross(1.0, 2.0), cross(3.0, 0.5) + shift
    var_first = np.array([2 / 3, 8 / 3])
    var_second = np.array([6.0, 0.5 / 3])
    expected = 1.25 + np.sum((np.sqrt(var_first) - np.sqrt(var_second)) ** 2)
    assert frechet_distance(first, second) == pytest.approx(expected, rel=1e-9)


def test_fd_of_constant_inputs_is_the_squared_mean_difference():
    a = np.tile([1.0, 2.0, 3.0], (6, 1))
    b = np.tile([1.0, 0.0, 3.0], (6, 1))
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=1e-9)


def test_fd_retries_with_an_offset_when_sqrtm_is_not_finite(monkeypatch):
    import scipy.linalg

    real_sqrtm = scipy.linalg.sqrtm
    seen = []

    def failing_once(matrix):
        seen.append(matrix.copy())
        if len(seen) == 1:
            return np.full_like(matrix, np.nan)
        return real_sqrtm(matrix)

    monkeypatch.setattr(scipy.linalg, "sqrtm", failing_once)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    value = frechet_distance(x, x)
    assert len(seen) == 2
    # Second try: (S + 1e-6)^2 with S = 5/3; the traces keep the plain S, so the
    # result is 2 S - 2 (S + 1e-6) = -2e-6.
    assert seen[1][0, 0] == pytest.approx((5 / 3 + 1e-6) ** 2, rel=1e-12)
    assert value == pytest.approx(-2e-6, rel=1e-6)


def test_paired_fd_of_a_shifted_prediction_is_the_squared_shift():
    gt, partner = POINTS, POINTS[::-1] * 2
    shift = np.array([0.0, 3.0, -1.0])
    assert paired_frechet_distance(gt + shift, gt, partner) == pytest.approx(
        10.0, abs=1e-9
    )
    assert paired_frechet_distance(gt, gt, partner) == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------ MSE


def test_mse_by_hand():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert mean_squared_error(pred, np.zeros((2, 2))) == 7.5  # (1+4+9+16)/4
    assert mean_squared_error(pred, pred) == 0.0
    assert mean_squared_error(pred + 0.25, pred) == pytest.approx(0.0625)


# ------------------------------------------------------------------ SID


def clusters(centres: list[float], per_cluster: int) -> np.ndarray:
    """1-D points at ``centres``, ``per_cluster`` each, with a tiny spread."""
    spread = np.linspace(-0.01, 0.01, per_cluster)
    return np.concatenate([c + spread for c in centres])[:, None]


def test_sid_of_k_equal_clusters_is_log2_k():
    gt = clusters([0.0, 100.0, 200.0, 300.0, 400.0], per_cluster=4)
    # -5 * 0.2 * log2(0.2 + 1e-6)
    expected = -math.log2(0.2 + 1e-6)
    assert sid(gt, gt, 5) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(math.log2(5), abs=1e-5)


def test_sid_of_a_constant_prediction_is_zero():
    gt = clusters([0.0, 100.0, 200.0], per_cluster=4)
    constant = np.full((12, 1), 100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the ConvergenceWarning is silenced
        value = sid(gt, constant, 3)  # corrected order: fit on GT
    assert value == pytest.approx(-math.log2(1 + 1e-6), abs=1e-12)


def test_sid_published_and_corrected_orders_differ():
    gt = clusters([0.0, 10.0, 20.0, 30.0], per_cluster=3)
    pred = np.repeat([0.0, 10.0], 6)[:, None]  # exactly two distinct frames
    # Fit on GT: pred lands in two of four clusters, half each -> 1 bit.
    corrected = sid(gt, pred, 4)
    # Fit on pred (only two distinct places, 0 and 10): GT's points at 20 and
    # 30 join the cluster at 10, so the occupancy is 1/4, 3/4.
    published = sid(pred, gt, 4)
    assert corrected == pytest.approx(1.0, abs=1e-5)
    assert published == pytest.approx(
        -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)), abs=1e-5
    )


def test_sid_with_fewer_frames_than_clusters_uses_one_cluster_per_frame():
    three = np.array([[0.0], [50.0], [100.0]])
    assert sid(three, three, 40) == pytest.approx(math.log2(3), abs=1e-5)


def test_sid_is_deterministic():
    data = motion(80, seed=3)[:, :50]
    other = motion(80, seed=4)[:, :50]
    assert sid(data, other, 40) == sid(data, other, 40)


# ------------------------------------------------------------------ rPCC


def test_rpcc_by_hand():
    partner = np.array([[1.0, 2.0], [3.0, 4.0]])  # flattened 1, 2, 3, 4
    gt = partner.copy()  # PCC 1
    pred = np.array([[1.0, 2.0], [4.0, 3.0]])  # PCC 4 / 5 with 1, 2, 3, 4
    assert rpcc(pred, gt, partner) == pytest.approx(0.2, abs=1e-12)
    assert rpcc(gt, gt, partner) == 0.0
    # A reversed prediction: PCC -1, so |1 - (-1)| = 2.
    assert rpcc(partner[::-1, ::-1], gt, partner) == pytest.approx(2.0)


def test_rpcc_of_a_constant_prediction_is_nan_without_warnings():
    partner = np.array([[1.0, 2.0], [3.0, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = rpcc(np.zeros((2, 2)), partner, partner)
    assert math.isnan(value)


# ------------------------------------------------------------------ per clip


def test_clip_metrics_keys_and_identity():
    gt, partner = motion(60, seed=1), motion(60, seed=2)
    table = clip_metrics(gt, gt, partner)
    assert list(table) == list(METRICS)
    for metric in METRICS:
        assert list(table[metric]) == list(GROUPS)
    for metric in ("FD", "P-FD", "MSE", "rPCC"):
        for group in GROUPS:
            assert table[metric][group] == pytest.approx(0.0, abs=1e-5), (
                metric,
                group,
            )
    # Fitting on and assigning the same frames: both SID orders agree.
    assert table["SID_published"] == table["SID_corrected"]


def test_clip_metrics_scores_each_group_on_its_own_channels():
    gt, partner = motion(60, seed=1), motion(60, seed=2)
    pred = gt.copy()
    pred[:, 50:53] += np.float32(0.5)  # jaw only
    table = clip_metrics(pred, gt, partner)
    assert table["MSE"]["JAW"] == pytest.approx(0.25, rel=1e-6)
    assert table["FD"]["JAW"] == pytest.approx(0.75, rel=1e-5)  # 3 x 0.5^2
    assert table["P-FD"]["JAW"] == pytest.approx(0.75, rel=1e-5)
    for group in ("EXP", "POSE"):
        assert table["MSE"][group] == 0.0
        assert table["FD"][group] == pytest.approx(0.0, abs=1e-5)


def test_clip_metrics_crops_to_the_shortest():
    gt, partner = motion(60, seed=1), motion(50, seed=2)
    pred = np.concatenate([gt, motion(10, seed=9)])[:70]
    table = clip_metrics(pred, gt, partner)
    # Only the first 50 frames count, where pred equals gt.
    assert table["MSE"]["EXP"] == 0.0
    assert table["rPCC"]["EXP"] == 0.0


def test_clip_metrics_rejects_wrong_widths():
    with pytest.raises(ValueError, match="56"):
        clip_metrics(np.zeros((5, 55)), np.zeros((5, 56)), np.zeros((5, 56)))


# ------------------------------------------------------------------ scaling


def test_publication_scale_factors_match_the_published_tables():
    assert PUBLICATION_SCALE["FD"] == {"EXP": 1, "JAW": 1e3, "POSE": 1e2}
    assert PUBLICATION_SCALE["P-FD"] == {"EXP": 1, "JAW": 1e3, "POSE": 1e2}
    assert PUBLICATION_SCALE["MSE"] == {"EXP": 10, "JAW": 1e3, "POSE": 1e2}
    assert PUBLICATION_SCALE["rPCC"] == {"EXP": 1e2, "JAW": 10, "POSE": 10}
    for metric in ("SID_published", "SID_corrected"):
        assert PUBLICATION_SCALE[metric] == {"EXP": 1, "JAW": 1, "POSE": 1}
    table = {m: {g: 2.0 for g in GROUPS} for m in METRICS}
    scaled = scale_for_publication(table)
    assert scaled["MSE"]["EXP"] == 20.0
    assert scaled["FD"]["JAW"] == 2000.0
    assert scaled["rPCC"]["POSE"] == 20.0


def test_groups_cover_the_network_vector():
    assert GROUPS == {"EXP": slice(0, 50), "JAW": slice(50, 53), "POSE": slice(53, 56)}
    assert metrics.SID_CLUSTERS == {"EXP": 40, "JAW": 10, "POSE": 10}


def test_clip_metrics_labels_the_two_sid_orders():
    gt, partner = motion(60, seed=1), motion(60, seed=2)
    pred = gt.copy()
    pred[:, 50:53] = np.repeat([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], 30, axis=0)
    table = clip_metrics(pred, gt, partner)
    jaw_pred, jaw_gt = pred[:, 50:53], gt[:, 50:53]
    assert table["SID_published"]["JAW"] == sid(jaw_pred, jaw_gt, 10)
    assert table["SID_corrected"]["JAW"] == sid(jaw_gt, jaw_pred, 10)
    assert table["SID_published"]["JAW"] != table["SID_corrected"]["JAW"]
