"""DualTalk's motion metrics (FD, P-FD, MSE, SID, rPCC) on numpy arrays.

These follow the published evaluation script (``metric/metric.py``), described in
the spec's section 6: every metric is computed per clip over its frames (rows)
and per channel group of the 56-channel DualTalk vector [exp 50, jaw 3, neck 3].
Nothing here reads files; :mod:`dualtalk_cli.evaluate` does that.

SciPy and scikit-learn are imported inside the functions that need them, so
importing this module stays cheap.

Where the published script differs from its own intent, both are available:

* SID: the script passes ``(pred, gt)`` into a function whose parameters are
  ``(gt, pred)``, so its k-means is fit on the prediction and the ground-truth
  frames are histogrammed. :func:`clip_metrics` reports that order as
  ``"SID_published"`` and the intended one (fit on ground truth, prediction
  histogrammed) as ``"SID_corrected"``.
* SID on clips shorter than k frames: the script crashes (k-means needs at
  least k samples); :func:`sid` uses as many clusters as there are frames.
"""

from __future__ import annotations

import warnings

import numpy as np

from dualtalk_cli.motion import N_NETWORK

# Channel groups of the [T, 56] DualTalk vector; POSE is the neck/head rotation.
GROUPS: dict[str, slice] = {
    "EXP": slice(0, 50),
    "JAW": slice(50, 53),
    "POSE": slice(53, 56),
}

# Metric keys in the order the paper's table lists them.
METRICS: tuple[str, ...] = (
    "FD",
    "P-FD",
    "MSE",
    "SID_published",
    "SID_corrected",
    "rPCC",
)

# Row labels for people reading a table.
METRIC_LABELS: dict[str, str] = {
    "FD": "FD",
    "P-FD": "P-FD",
    "MSE": "MSE",
    "SID_published": "SID (published: k-means on prediction)",
    "SID_corrected": "SID (corrected: k-means on ground truth)",
    "rPCC": "rPCC",
}

# Higher SID means more varied motion; every other metric is an error.
HIGHER_IS_BETTER: frozenset[str] = frozenset({"SID_published", "SID_corrected"})

# Number of k-means clusters for SID, per group, as in the published script.
SID_CLUSTERS: dict[str, int] = {"EXP": 40, "JAW": 10, "POSE": 10}

# Factors the published tables multiply the raw means by (spec section 6.3);
# the evaluation script itself applies none.
PUBLICATION_SCALE: dict[str, dict[str, float]] = {
    "FD": {"EXP": 1.0, "JAW": 1e3, "POSE": 1e2},
    "P-FD": {"EXP": 1.0, "JAW": 1e3, "POSE": 1e2},
    "MSE": {"EXP": 10.0, "JAW": 1e3, "POSE": 1e2},
    "SID_published": {"EXP": 1.0, "JAW": 1.0, "POSE": 1.0},
    "SID_corrected": {"EXP": 1.0, "JAW": 1.0, "POSE": 1.0},
    "rPCC": {"EXP": 1e2, "JAW": 10.0, "POSE": 10.0},
}

SID_EPSILON = 1e-6  # added inside log2, as in the published script
SQRTM_OFFSET = 1e-6  # added to both covariances when sqrtm is not finite

MetricTable = dict[str, dict[str, float]]  # metric -> group -> value


def _as_frames(x: np.ndarray) -> np.ndarray:
    """``x`` as a float64 [frames, features] array; a 1-D array is one feature."""
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"expected [frames, features], got shape {array.shape}")
    return array


def _covariance(frames: np.ndarray) -> np.ndarray:
    """Unbiased covariance with each frame one observation, always 2-D."""
    # np.cov returns a 0-d array for a single feature.
    return np.atleast_2d(np.cov(frames, rowvar=False))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fit to the frames of ``a`` and ``b``.

    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b)). NaN when a covariance
    is undefined (fewer than two frames).
    """
    from scipy import linalg

    a, b = _as_frames(a), _as_frames(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature counts differ: {a.shape[1]} and {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mean_difference = a.mean(axis=0) - b.mean(axis=0)
    cov_a, cov_b = _covariance(a), _covariance(b)
    with warnings.catch_warnings():
        # Singular covariances (constant channels, clips shorter than the
        # feature count) are common; the non-finite check below handles them.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.all(np.isfinite(root)):
            offset = SQRTM_OFFSET * np.eye(len(cov_a))
            root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    # S_a S_b has real non-negative eigenvalues; any imaginary part is rounding.
    root = np.real(root)
    return float(
        mean_difference @ mean_difference
        + np.trace(cov_a)
        + np.trace(cov_b)
        - 2.0 * np.trace(root)
    )


def paired_frechet_distance(
    pred: np.ndarray, gt: np.ndarray, partner: np.ndarray
) -> float:
    """FD between [partner ‖ gt] and [partner ‖ pred], joined on the feature axis."""
    pred, gt, partner = _as_frames(pred), _as_frames(gt), _as_frames(partner)
    return frechet_distance(
        np.concatenate([partner, gt], axis=1),
        np.concatenate([partner, pred], axis=1),
    )


def mean_squared_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean of the squared difference over frames x features."""
    pred, gt = _as_frames(pred), _as_frames(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"shapes differ: {pred.shape} and {gt.shape}")
    return float(np.mean((pred - gt) ** 2))


def sid(fit_on: np.ndarray, assign: np.ndarray, n_clusters: int) -> float:
    """Shannon index of diversity: entropy (bits) of k-means cluster occupancy.

    k-means (``random_state=0``, ``n_init="auto"``) is fit on the frames of
    ``fit_on``; the frames of ``assign`` are put in their nearest cluster and the
    fractions p per cluster give -sum(p log2(p + 1e-6)). With fewer frames in
    ``fit_on`` than ``n_clusters``, one cluster per frame is used (the published
    script would crash). k-means runs on the arrays' own dtype, float32 for
    files, as in the published script.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    fit_on, assign = np.asarray(fit_on), np.asarray(assign)
    if fit_on.ndim == 1:
        fit_on = fit_on[:, None]
    if assign.ndim == 1:
        assign = assign[:, None]
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    if len(fit_on) < 1 or len(assign) < 1:
        return float("nan")
    n_clusters = min(n_clusters, len(fit_on))
    with warnings.catch_warnings():
        # Constant or nearly constant motion has fewer distinct points than
        # clusters; k-means then warns, but the histogram is still meaningful.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = KMeans(n_clusters=n_clusters, random_state=0, n_init="auto")
        model.fit(fit_on)
        labels = model.predict(assign)
    counts = np.bincount(labels, minlength=n_clusters)
    fractions = counts / counts.sum()
    return float(-np.sum(fractions * np.log2(fractions + SID_EPSILON)))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two flattened arrays; NaN if either is constant."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def rpcc(pred: np.ndarray, gt: np.ndarray, partner: np.ndarray) -> float:
    """|PCC(gt, partner) - PCC(pred, partner)| on arrays flattened over T x D.

    How far the prediction's correlation with the partner is from the real
    one's. NaN when a correlation is undefined (a constant array).
    """
    pred, gt, partner = _as_frames(pred), _as_frames(gt), _as_frames(partner)
    if not pred.shape == gt.shape == partner.shape:
        raise ValueError(f"shapes differ: {pred.shape}, {gt.shape} and {partner.shape}")
    return abs(_pearson(gt, partner) - _pearson(pred, partner))


def crop_to_shortest(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays cut to the frame count of the shortest one."""
    n_frames = min(len(array) for array in arrays)
    return tuple(array[:n_frames] for array in arrays)


def clip_metrics(pred: np.ndarray, gt: np.ndarray, partner: np.ndarray) -> MetricTable:
    """Every metric for every group of one clip, as ``{metric: {group: value}}``.

    ``pred``, ``gt`` and ``partner`` are [T, 56] DualTalk vectors (the partner
    is the other speaker's ground truth); they are cropped to the shortest.
    """
    for name, array in (("pred", pred), ("gt", gt), ("partner", partner)):
        if np.ndim(array) != 2 or np.shape(array)[1] != N_NETWORK:
            raise ValueError(
                f"{name} has shape {np.shape(array)}, expected (T, {N_NETWORK})"
            )
    pred, gt, partner = crop_to_shortest(
        np.asarray(pred), np.asarray(gt), np.asarray(partner)
    )
    table: MetricTable = {metric: {} for metric in METRICS}
    for group, channels in GROUPS.items():
        p, g, q = pred[:, channels], gt[:, channels], partner[:, channels]
        k = SID_CLUSTERS[group]
        table["FD"][group] = frechet_distance(p, g)
        table["P-FD"][group] = paired_frechet_distance(p, g, q)
        table["MSE"][group] = mean_squared_error(p, g)
        table["SID_published"][group] = sid(p, g, k)
        table["SID_corrected"][group] = sid(g, p, k)
        table["rPCC"][group] = rpcc(p, g, q)
    return table


def scale_for_publication(table: MetricTable) -> MetricTable:
    """``table`` multiplied by the published tables' factors (PUBLICATION_SCALE)."""
    return {
        metric: {
            group: value * PUBLICATION_SCALE[metric][group]
            for group, value in groups.items()
        }
        for metric, groups in table.items()
    }
