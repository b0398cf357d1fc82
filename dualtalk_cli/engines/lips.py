"""Visemes: the mouth shapes of recognised phones, blended as speech blends them.

Each ARPAbet phone belongs to a viseme: how far it opens the jaw (0..1, scaled
by loudness later), which ARKit mouth shapes it makes, and whether it closes the
lips. Tracks run at 100 Hz. Coarticulation: every shape is reached
ANTICIPATION_S before its phone sounds (lips and jaw move ahead of the sound)
and neighbours blend over BLEND_S, while a closure (p, b, m) still closes fully.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from dualtalk_cli.phones import Phone

ANALYSIS_RATE = 100.0  # track frames per second
ANTICIPATION_S = 0.06  # shapes lead their phone by this much
BLEND_S = 0.03  # Gaussian spread of the blend between neighbouring shapes
CLOSURE_HOLD_S = 0.02  # a closure is widened this much either side


@dataclass(frozen=True)
class Viseme:
    opening: float  # jaw opening relative to an open vowel's
    shapes: dict[str, float] = field(default_factory=dict)  # ARKit weights
    closes_lips: bool = False


def _both(name: str, weight: float) -> dict[str, float]:
    return {f"{name}Left": weight, f"{name}Right": weight}


VISEMES: dict[str, Viseme] = {
    # p, b, m: lips pressed shut, jaw nearly closed.
    "bilabial": Viseme(0.0, {**_both("mouthPress", 0.5), "mouthRollLower": 0.15,
                             "mouthRollUpper": 0.1}, closes_lips=True),
    # f, v: the lower lip tucked under the upper teeth.
    "labiodental": Viseme(0.12, {"mouthRollLower": 0.65, "mouthShrugLower": 0.2,
                                 **_both("mouthUpperUp", 0.25)}),
    # oo, w: rounded and pushed forward.
    "rounded": Viseme(0.3, {"mouthPucker": 0.85, "mouthFunnel": 0.15}),
    # oh, aw: rounded and open.
    "rounded_open": Viseme(0.6, {"mouthFunnel": 0.6, "mouthPucker": 0.35}),
    # ah: the jaw at its widest.
    "open": Viseme(1.0, {**_both("mouthLowerDown", 0.35),
                         **_both("mouthUpperUp", 0.1)}),
    # a as in cat, e as in bed.
    "open_spread": Viseme(0.7, {**_both("mouthStretch", 0.3),
                                **_both("mouthLowerDown", 0.25)}),
    # ee, i: spread lips, a narrow opening.
    "spread": Viseme(0.3, {**_both("mouthStretch", 0.45), **_both("mouthSmile", 0.15)}),
    # er, r: slightly rounded.
    "rhotic": Viseme(0.35, {"mouthPucker": 0.35, "mouthFunnel": 0.2}),
    # sh, ch, j: lips pushed out in a funnel.
    "postalveolar": Viseme(0.2, {"mouthFunnel": 0.55, "mouthPucker": 0.25}),
    # s, t, d, n, l, th: teeth nearly together.
    "alveolar": Viseme(0.2, _both("mouthStretch", 0.1)),
    # k, g, ng, h: made behind the lips; the jaw follows the vowels around.
    "velar": Viseme(0.4),
}  # fmt: skip

VISEME_OF: dict[str, str] = {
    **dict.fromkeys(("P", "B", "M"), "bilabial"),
    **dict.fromkeys(("F", "V"), "labiodental"),
    **dict.fromkeys(("UW", "UH", "W"), "rounded"),
    **dict.fromkeys(("OW", "AO", "OY"), "rounded_open"),
    **dict.fromkeys(("AA", "AH", "AW", "AY"), "open"),
    **dict.fromkeys(("AE", "EH", "EY"), "open_spread"),
    **dict.fromkeys(("IY", "IH", "Y"), "spread"),
    **dict.fromkeys(("ER", "R"), "rhotic"),
    **dict.fromkeys(("SH", "ZH", "CH", "JH"), "postalveolar"),
    **dict.fromkeys(("S", "Z", "T", "D", "N", "L", "TH", "DH"), "alveolar"),
    **dict.fromkeys(("K", "G", "NG", "HH"), "velar"),
}
# Every ARKit shape some viseme makes, in a fixed order.
SHAPE_NAMES = tuple(sorted({name for v in VISEMES.values() for name in v.shapes}))


# Phones the recogniser often takes a p, b or m for: where it hears one of these
# (or nothing), a closure heard in the signal still closes the lips.
STOPS = frozenset(("P", "B", "M", "T", "D", "K", "G", "N", "NG", "SIL"))


@dataclass(frozen=True)
class VisemeTracks:
    """100 Hz tracks of one speaker's visemes."""

    known: np.ndarray  # 0..1: how much a recognised phone speaks for this frame
    opening: np.ndarray  # jaw opening 0..1, before loudness
    closure: np.ndarray  # lip closure 0..1
    shapes: dict[str, np.ndarray]  # ARKit weight per name of SHAPE_NAMES
    may_close: np.ndarray  # 0..1: where an acoustic closure may close the lips


def viseme_tracks(phones: Sequence[Phone], n_hops: int) -> VisemeTracks:
    """The visemes of ``phones`` as blended 100 Hz tracks of ``n_hops`` frames."""
    known = np.zeros(n_hops)
    may_close = np.ones(n_hops)
    opening = np.zeros(n_hops)
    closure = np.zeros(n_hops)
    shapes = {name: np.zeros(n_hops) for name in SHAPE_NAMES}
    lead = ANTICIPATION_S * ANALYSIS_RATE
    for phone in phones:
        name = VISEME_OF.get(phone.label)
        if name is None:  # silence, noise and fillers: no shape of their own
            continue
        viseme = VISEMES[name]
        first = max(0, round(phone.start * ANALYSIS_RATE - lead))
        last = min(n_hops, round(phone.end * ANALYSIS_RATE - lead))
        if last <= first:
            continue
        known[first:last] = 1.0
        may_close[first:last] = float(phone.label in STOPS)
        opening[first:last] = viseme.opening
        closure[first:last] = float(viseme.closes_lips)
        for shape, weight in viseme.shapes.items():
            shapes[shape][first:last] = weight
    sigma = BLEND_S * ANALYSIS_RATE
    hold = 2 * round(CLOSURE_HOLD_S * ANALYSIS_RATE) + 1
    # A closure blends at its edges but keeps its middle fully shut.
    closure = np.minimum(1.0, 1.5 * gaussian_filter1d(
        maximum_filter1d(closure, hold), sigma / 2, mode="nearest"))  # fmt: skip
    return VisemeTracks(
        known=gaussian_filter1d(known, sigma, mode="nearest"),
        opening=gaussian_filter1d(opening, sigma, mode="nearest"),
        closure=closure,
        shapes={
            k: gaussian_filter1d(v, sigma, mode="nearest") for k, v in shapes.items()
        },
        may_close=maximum_filter1d(may_close, hold),
    )
