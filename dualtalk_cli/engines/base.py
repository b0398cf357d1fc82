"""The interface every engine implements: two audio tracks in, two motions out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from dualtalk_cli.motion import Motion


class Engine(ABC):
    """Turns a conversation's two 16 kHz mono tracks into each speaker's motion.

    Speaker A is shown on the left, facing toward +x (toward B); B on the right.
    """

    name: str = "engine"

    def __init__(self, **options: object) -> None:  # noqa: B027
        # Options meant for other engines (weights, device) do not apply here.
        pass

    @abstractmethod
    def animate(
        self,
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        *,
        n_frames: int,
        frames_per_second: float = 25.0,
        seed: int = 0,
    ) -> tuple[Motion, Motion]:
        """Motion for A and B, ``n_frames`` each, from equal-length float32 tracks."""
