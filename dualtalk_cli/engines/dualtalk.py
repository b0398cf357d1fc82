"""The DualTalk network engine: the released checkpoint, both speakers from audio alone.

The published model predicts one person from their audio, the partner's audio
and the partner's motion. Both heads come from audio alone by alternating: A is
predicted against a neutral B, then B against that A, and so on for ``passes``
rounds. Each track is encoded once per encoder and reused in every pass. Long
audio is encoded in overlapping windows with a linear cross-fade, so memory
stays bounded. The network predicts no blinks, gaze or eyelids: those come from
the procedural engine, which the NPZ's ``engine`` field says.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from dualtalk_cli.engines.base import Engine
from dualtalk_cli.errors import EngineUnavailable, first_line
from dualtalk_cli.motion import ARKIT_INDEX, Motion
from dualtalk_cli.weights import CHECKPOINT, REPO_WEIGHTS, WEIGHTS_ENV

TEST_NETWORK_ENV = "DUALTALK_TEST_NETWORK"  # "tiny": the tests' small network
NETWORK_FPS = 25  # the frame rate the network was trained at
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
DEFAULT_PASSES = 2  # A against neutral B, B against A, then once more each
WINDOW_FRAMES = 500  # 20 s per encoder window
OVERLAP_FRAMES = 100  # 4 s shared by neighbouring windows, cross-faded
# ARKit channels taken from the procedural engine: the network has no eyes.
EYE_CHANNELS = tuple(
    name for name in ARKIT_INDEX if name.startswith(("eyeBlink", "eyeLook"))
)
NOT_FOUND = (
    "no DualTalk checkpoint found: run 'dualtalk download', pass --weights PATH "
    f"or set {WEIGHTS_ENV}"
)


def find_weights(path: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint: ``path``, else $DUALTALK_WEIGHTS, else weights/DualTalk.pth."""
    for given, source in (
        (path, "--weights"),
        (os.environ.get(WEIGHTS_ENV), WEIGHTS_ENV),
    ):
        if given:
            given = Path(given).expanduser()
            if not given.is_file():
                raise EngineUnavailable(f"checkpoint not found (from {source})", given)
            return given
    for folder in (Path.cwd() / "weights", REPO_WEIGHTS):
        if (folder / CHECKPOINT).is_file():
            return folder / CHECKPOINT
    return None


def unavailable_reason(
    weights: str | os.PathLike | None = None, **options: Any
) -> str | None:
    """None when the network can run here, else a one-line reason."""
    missing = [name for name in ("torch", "transformers") if find_spec(name) is None]
    if missing:
        return f"needs {' and '.join(missing)} (pip install {' '.join(missing)})"
    try:
        found = find_weights(weights)
    except EngineUnavailable as error:
        return str(error)
    return None if found else NOT_FOUND


def load_model(path: Path, device: str = "cpu", config: Any = None) -> Any:
    """The DualTalk network with every tensor of the checkpoint at ``path``."""
    import torch

    from dualtalk_cli.engines.dualtalk_model import (
        DualTalkModel,
        load_state_dict_checked,
    )

    try:
        # Memory-mapped: the tensors stay backed by the file, not copied into RAM.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
    ) as error:
        reason = first_line(error)[:120]
        raise EngineUnavailable(
            f"not a complete PyTorch checkpoint ({reason}); a truncated download? "
            "run 'dualtalk download' again",
            path,
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EngineUnavailable("holds no state dict", path)
    # Built without memory and given the checkpoint's tensors: no random
    # initialisation of 647 M parameters, and never two copies of the weights.
    with torch.device("meta"):
        model = DualTalkModel(config)
    try:
        load_state_dict_checked(model, state, assign=True)
    except ValueError as error:
        raise EngineUnavailable(
            f"is not the DualTalk checkpoint: {error}", path
        ) from None
    return model.eval().to(device)


class DualTalkEngine(Engine):
    """Both speakers' FLAME motion from the released DualTalk network."""

    name = "dualtalk"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str | None = None,
        passes: int = DEFAULT_PASSES,
        config: Any = None,
        window_frames: int = WINDOW_FRAMES,
        overlap_frames: int = OVERLAP_FRAMES,
        **options: Any,
    ) -> None:
        import torch

        path = find_weights(weights)
        if path is None:
            raise EngineUnavailable(NOT_FOUND)
        if passes < 1:
            raise EngineUnavailable(f"--passes must be at least 1, not {passes}")
        if not 0 <= overlap_frames < window_frames:
            raise ValueError("overlap_frames must be below window_frames")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.weights_path = path
        self.passes = passes
        self.window_frames, self.overlap_frames = window_frames, overlap_frames
        # The test hook: a tiny network in the released key layout, so the CLI
        # can be tested end to end without 2.6 GB of weights. Never set by users.
        if config is None and os.environ.get(TEST_NETWORK_ENV) == "tiny":
            from dualtalk_cli.engines.dualtalk_model import DualTalkConfig

            config = DualTalkConfig.tiny()
        self.model = load_model(path, self.device, config)

    def encode(self, which: int, audio: np.ndarray, n_frames: int) -> Any:
        """(1, n_frames, hidden) encoding of normalised audio by encoder 1 or 2.

        Windows of ``window_frames`` overlap by ``overlap_frames`` and are
        cross-faded linearly, so memory does not grow with the audio's length.
        """
        import torch

        encoder = getattr(self.model.joint_encoder, f"audio_encoder{which}")
        audio = torch.as_tensor(audio, dtype=torch.float32, device=self.device)[None]
        if n_frames <= self.window_frames:
            return encoder(audio, n_frames)
        step = self.window_frames - self.overlap_frames
        total = weight_sum = None
        for start in range(0, n_frames - self.overlap_frames, step):
            stop = min(start + self.window_frames, n_frames)
            part = audio[:, start * SAMPLES_PER_FRAME : stop * SAMPLES_PER_FRAME]
            encoded = encoder(part, stop - start)[0]
            if total is None:
                total = torch.zeros(n_frames, encoded.shape[-1], device=self.device)
                weight_sum = torch.zeros(n_frames, 1, device=self.device)
            weights = torch.ones(stop - start, 1, device=self.device)
            ramp = torch.linspace(0, 1, self.overlap_frames + 2, device=self.device)[
                1:-1
            ]
            if start > 0:
                weights[: self.overlap_frames, 0] = ramp
            if stop < n_frames:
                weights[-self.overlap_frames :, 0] = ramp.flip(0)
            total[start:stop] += weights * encoded
            weight_sum[start:stop] += weights
        return (total / weight_sum)[None]

    def predict_pair(
        self, audio_a: np.ndarray, audio_b: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(T, 56) network vectors for A and B at 25 fps, by alternating passes."""
        import torch

        from dualtalk_cli.engines.dualtalk_model import normalise_audio

        n_frames = -(-len(audio_a) // SAMPLES_PER_FRAME)
        with torch.inference_mode():
            a, b = normalise_audio(audio_a).numpy(), normalise_audio(audio_b).numpy()
            a_target, a_partner = (
                self.encode(1, a, n_frames),
                self.encode(2, a, n_frames),
            )
            b_target, b_partner = (
                self.encode(1, b, n_frames),
                self.encode(2, b, n_frames),
            )
            motion_b = torch.zeros(1, n_frames, 56, device=self.device)  # neutral
            for _ in range(self.passes):
                motion_a = self.model(a_target, b_partner, motion_b)
                motion_b = self.model(b_target, a_partner, motion_a)
        return motion_a[0].float().cpu().numpy(), motion_b[0].float().cpu().numpy()

    def predict_with_partner(
        self, audio_a: np.ndarray, audio_b: np.ndarray, partner: Motion
    ) -> np.ndarray:
        """(T, 56) for A given B's known motion: the published demo's one pass."""
        import torch

        from dualtalk_cli.engines.dualtalk_model import normalise_audio

        n_frames = -(-len(audio_a) // SAMPLES_PER_FRAME)
        with torch.inference_mode():
            a = self.encode(1, normalise_audio(audio_a).numpy(), n_frames)
            b = self.encode(2, normalise_audio(audio_b).numpy(), n_frames)
            motion = torch.as_tensor(partner.to_network(), device=self.device)[None]
            return self.model(a, b, motion)[0].float().cpu().numpy()

    def animate(
        self,
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        *,
        n_frames: int,
        frames_per_second: float = 25.0,
        seed: int = 0,
    ) -> tuple[Motion, Motion]:
        vectors = self.predict_pair(audio_a, audio_b)
        return self._with_eyes(
            vectors, audio_a, audio_b, n_frames, frames_per_second, seed
        )

    def animate_with_partner(
        self,
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        partner: Motion,
        *,
        n_frames: int,
        frames_per_second: float = 25.0,
        seed: int = 0,
    ) -> Motion:
        """A's motion given B's known motion, as the published demo predicts it."""
        vector = self.predict_with_partner(audio_a, audio_b, partner)
        motions = self._with_eyes(
            (vector,), audio_a, audio_b, n_frames, frames_per_second, seed
        )
        return motions[0]

    def _with_eyes(
        self,
        vectors: tuple[np.ndarray, ...],
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        n_frames: int,
        frames_per_second: float,
        seed: int,
    ) -> tuple[Motion, ...]:
        """Network motion at ``n_frames``, with procedural blinks, gaze and flags."""
        from dualtalk_cli.engines.procedural import ProceduralEngine

        extras = ProceduralEngine().animate(
            audio_a,
            audio_b,
            n_frames=n_frames,
            frames_per_second=frames_per_second,
            seed=seed,
        )
        columns = [ARKIT_INDEX[name] for name in EYE_CHANNELS]
        motions = []
        for vector, extra in zip(vectors, extras):
            network = Motion.from_network(
                resample_frames(vector, n_frames), frames_per_second, "dualtalk"
            )
            arkit = np.zeros_like(extra.arkit)
            arkit[:, columns] = extra.arkit[:, columns]
            motions.append(
                replace(
                    network,
                    eyes=extra.eyes,
                    eyelids=extra.eyelids,
                    arkit=arkit,
                    speaking=extra.speaking,
                    engine="dualtalk+procedural-eyes",
                )
            )
        return tuple(motions)


def resample_frames(vectors: np.ndarray, n_frames: int) -> np.ndarray:
    """(T, C) at 25 fps resampled linearly in time to ``n_frames`` rows."""
    if len(vectors) == n_frames:
        return vectors
    source = np.linspace(0.0, 1.0, len(vectors))
    target = np.linspace(0.0, 1.0, n_frames)
    return np.stack(
        [np.interp(target, source, column) for column in vectors.T], axis=1
    ).astype(np.float32)
