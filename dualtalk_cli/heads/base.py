"""The interface every head implements: motion in, vertices out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

from dualtalk_cli.motion import Motion


class Head(ABC):
    """A mesh that a Motion can drive. Units are metres, +y up, the face toward +z."""

    name: str = "head"
    chunk_frames: int = 50  # frames evaluated per call when streaming

    @property
    @abstractmethod
    def faces(self) -> np.ndarray:
        """(F, 3) int32 triangle indices, the same on every frame."""

    @property
    @abstractmethod
    def rest_vertices(self) -> np.ndarray:
        """(V, 3) float32 neutral mesh, used to frame the camera."""

    @property
    def description(self) -> str:
        """One line for the user: which head, and from which file."""
        return self.name

    @property
    def vertex_colors(self) -> np.ndarray | None:
        """(V, 3) uint8 per-vertex colours, or None for a plain material."""
        return None

    @abstractmethod
    def vertices(
        self, motion: Motion, start: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """(stop - start, V, 3) float32 vertices of frames ``start:stop``."""

    def iter_vertices(self, motion: Motion) -> Iterator[np.ndarray]:
        """Yield (n, V, 3) chunks covering every frame, so memory stays bounded."""
        for start in range(0, motion.n_frames, self.chunk_frames):
            yield self.vertices(
                motion, start, min(start + self.chunk_frames, motion.n_frames)
            )

    def notes(self, motion: Motion) -> list[str]:
        """One-line remarks on what this head cannot show of ``motion``."""
        return []
