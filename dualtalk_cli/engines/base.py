"""The interface every engine implements: two audio tracks in, two motions out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from dualtalk_cli.audio import FPS
from dualtalk_cli.errors import EngineUnavailable
from dualtalk_cli.motion import Motion


class Engine(ABC):
    """Turns a conversation's two 16 kHz mono tracks into each speaker's motion.

    Speaker A is shown on the left, facing toward +x (toward B); B on the right.
    Settings are the constructor's keyword arguments; the registry refuses any
    other.
    """

    name: ClassVar[str] = "engine"
    # Whether ``animate_with_partner`` works: predicting one speaker from both
    # tracks and the partner's known motion (the published DualTalk protocol).
    follows_partner: ClassVar[bool] = False

    @property
    def summary(self) -> str:
        """The engine as a run's first line names it, with settings worth saying."""
        return self.name

    @abstractmethod
    def animate(
        self,
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        *,
        n_frames: int,
        frames_per_second: float = FPS,
        seed: int = 0,
    ) -> tuple[Motion, Motion]:
        """Motion for A and B, ``n_frames`` each, from equal-length float32 tracks."""

    def animate_with_partner(
        self,
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        partner: Motion,
        *,
        seed: int = 0,
    ) -> Motion:
        """A's motion from both tracks and B's known motion, at B's frame rate."""
        raise EngineUnavailable(
            f"engine '{self.name}' cannot predict from a partner's known motion"
        )
