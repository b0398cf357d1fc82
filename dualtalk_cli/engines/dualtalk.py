"""The DualTalk network engine: the released checkpoint, both speakers from audio alone.

The published model predicts one person from their audio, the partner's audio
and the partner's motion. Both heads come from audio alone by alternating: A is
predicted against a neutral B, then B against that A, and so on for ``passes``
rounds. Each track is encoded once per encoder and reused in every pass. Long
audio is encoded in overlapping windows with a linear cross-fade (the model's
``EncoderWindow``), so memory stays bounded. The network predicts no blinks,
gaze or eyelids: those come from the procedural engine, which the NPZ's
``engine`` field says.

Precision (``devices``): the two wav2vec 2.0 encoders, where the time goes, run
under autocast in bf16 or fp16 when asked, or by default where the device has
bf16 in hardware; the motion network after them always runs in float32.
``fp32`` is the published model as is.
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

from dualtalk_cli.audio import FPS, n_frames_for
from dualtalk_cli.engines.base import Engine
from dualtalk_cli.engines.devices import (
    computing_in,
    default_device,
    default_precision,
    device_problem,
    precision_problem,
)
from dualtalk_cli.errors import EngineUnavailable, first_line
from dualtalk_cli.motion import ARKIT_INDEX, N_NETWORK, Motion
from dualtalk_cli.weights import CHECKPOINT, REPO_WEIGHTS, WEIGHTS_ENV

TEST_NETWORK_ENV = "DUALTALK_TEST_NETWORK"  # "tiny": the tests' small network
DEFAULT_PASSES = 2  # A against neutral B, B against A, then once more each
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
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    precision: str | None = None,
    **settings: Any,
) -> str | None:
    """None when the network can run here, else a one-line reason."""
    missing = [name for name in ("torch", "transformers") if find_spec(name) is None]
    if missing:
        return f"needs {' and '.join(missing)} (pip install {' '.join(missing)})"
    try:
        found = find_weights(weights)
    except EngineUnavailable as error:
        return str(error)
    if found is None:
        return NOT_FOUND
    if device is not None and (problem := device_problem(device)):
        return problem
    if precision is None:
        return None
    return precision_problem(precision, device or default_device())


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
    follows_partner = True

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str | None = None,
        passes: int = DEFAULT_PASSES,
        precision: str | None = None,
        config: Any = None,
        window: Any = None,
    ) -> None:
        """``precision`` None: the device's default (``default_precision``).
        ``config`` and ``window`` (a DualTalkConfig and an EncoderWindow) are
        for tests and benchmarks; the defaults are the released model's."""
        from dualtalk_cli.engines.dualtalk_model import EncoderWindow

        path = find_weights(weights)
        if path is None:
            raise EngineUnavailable(NOT_FOUND)
        if passes < 1:
            raise EngineUnavailable(f"--passes must be at least 1, not {passes}")
        self.device = device or default_device()
        problem = device_problem(self.device)
        if problem:
            raise EngineUnavailable(problem)
        self.precision = precision or default_precision(self.device)
        problem = precision_problem(self.precision, self.device)
        if problem:
            raise EngineUnavailable(problem)
        self.passes = passes
        self.window = window or EncoderWindow()
        # The test hook: a tiny network in the released key layout, so the CLI
        # can be tested end to end without 2.6 GB of weights. Never set by users.
        if config is None and os.environ.get(TEST_NETWORK_ENV) == "tiny":
            from dualtalk_cli.engines.dualtalk_model import DualTalkConfig

            config = DualTalkConfig.tiny()
        self.model = load_model(path, self.device, config)

    @property
    def summary(self) -> str:
        return f"{self.name} ({self.precision} on {self.device})"

    @property
    def label(self) -> str:
        """The engine as the NPZ names it: a reduced precision is part of it."""
        return "dualtalk" if self.precision == "fp32" else f"dualtalk-{self.precision}"

    def _tensor(self, audio: np.ndarray) -> Any:
        """(1, N) normalised audio on the engine's device."""
        from dualtalk_cli.engines.dualtalk_model import normalise_audio

        return normalise_audio(audio)[None].to(self.device)

    def _encode(self, *pairs: tuple[Any, Any]) -> list[tuple[Any, Any]]:
        """Each (target, partner) pair of audio tensors through both encoders,
        as float32 features, in the engine's precision: the encoders are where
        the time goes (about 95 %). One autocast region for all pairs, so each
        weight is cast once, not once a window. (Casting the weights at load
        time measured no faster and held 1 GB more at its peak.)"""
        with computing_in(self.precision, self.device):
            encoded = [
                self.model.encode_audio(target, partner, self.window)
                for target, partner in pairs
            ]
        return [(target.float(), partner.float()) for target, partner in encoded]

    def _float32(self, motion: Any) -> np.ndarray:
        """(1, T, 56) network output as (T, 56) numpy; refuses an overflow."""
        vectors = motion[0].float().cpu().numpy()
        if not np.isfinite(vectors).all():
            advice = (
                "run again with --precision fp32"
                if self.precision != "fp32"
                else "the checkpoint or the audio is not usable"
            )
            raise EngineUnavailable(
                f"the network's output is not finite in {self.precision}; {advice}"
            )
        return vectors

    def predict_pair(
        self, audio_a: np.ndarray, audio_b: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(T, 56) network vectors for A and B at 25 fps, by alternating passes."""
        import torch

        with torch.inference_mode():
            a, b = self._tensor(audio_a), self._tensor(audio_b)
            # Each track through each encoder once, reused in every pass.
            (a_target, b_partner), (b_target, a_partner) = self._encode((a, b), (b, a))
            n_frames = a_target.shape[1]
            motion_b = torch.zeros(1, n_frames, N_NETWORK, device=self.device)
            # The motion network is cheap: always float32, so its output is
            # never rounded to a reduced precision.
            with computing_in("fp32", self.device):
                for _ in range(self.passes):
                    motion_a = self.model(a_target, b_partner, motion_b)
                    motion_b = self.model(b_target, a_partner, motion_a)
        return self._float32(motion_a), self._float32(motion_b)

    def predict_with_partner(
        self, audio_a: np.ndarray, audio_b: np.ndarray, partner: Motion
    ) -> np.ndarray:
        """(T, 56) for A given B's known motion: the published demo's one pass."""
        import torch

        with torch.inference_mode():
            motion = torch.as_tensor(partner.to_network(), device=self.device)[None]
            pair = (self._tensor(audio_a), self._tensor(audio_b))
            encoded = self._encode(pair)[0]
            with computing_in("fp32", self.device):
                predicted = self.model(*encoded, motion)
        return self._float32(predicted)

    def animate(
        self,
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        *,
        n_frames: int,
        frames_per_second: float = FPS,
        seed: int = 0,
    ) -> tuple[Motion, Motion]:
        vectors = self.predict_pair(audio_a, audio_b)
        extras = _procedural(audio_a, audio_b, n_frames, frames_per_second, seed)
        return tuple(
            _with_eyes(resample_frames(vector, n_frames), extra, self.label)
            for vector, extra in zip(vectors, extras)
        )

    def animate_with_partner(
        self,
        audio_a: np.ndarray,
        audio_b: np.ndarray,
        partner: Motion,
        *,
        seed: int = 0,
    ) -> Motion:
        """A's motion given B's known motion, as the published demo predicts it."""
        fps = partner.frames_per_second
        n_frames = n_frames_for(len(audio_a), fps)
        vector = self.predict_with_partner(audio_a, audio_b, partner)
        extras = _procedural(audio_a, audio_b, n_frames, fps, seed)
        return _with_eyes(resample_frames(vector, n_frames), extras[0], self.label)


def _procedural(
    audio_a: np.ndarray,
    audio_b: np.ndarray,
    n_frames: int,
    frames_per_second: float,
    seed: int,
) -> tuple[Motion, Motion]:
    """The procedural engine's motion, for the blinks, gaze and speech flags
    (its mouth is not used, so no phones are recognised)."""
    from dualtalk_cli.engines.procedural import ProceduralEngine

    return ProceduralEngine(phones=False).animate(
        audio_a,
        audio_b,
        n_frames=n_frames,
        frames_per_second=frames_per_second,
        seed=seed,
    )


def _with_eyes(vector: np.ndarray, extra: Motion, label: str) -> Motion:
    """Network motion from (n_frames, 56) with procedural eyes, lids and flags."""
    columns = [ARKIT_INDEX[name] for name in EYE_CHANNELS]
    network = Motion.from_network(vector, extra.frames_per_second, "dualtalk")
    arkit = np.zeros_like(extra.arkit)
    arkit[:, columns] = extra.arkit[:, columns]
    return replace(
        network,
        eyes=extra.eyes,
        eyelids=extra.eyelids,
        arkit=arkit,
        speaking=extra.speaking,
        engine=f"{label}+procedural-eyes",
    )


def resample_frames(vectors: np.ndarray, n_frames: int) -> np.ndarray:
    """(T, C) at 25 fps resampled linearly in time to ``n_frames`` rows."""
    if len(vectors) == n_frames:
        return vectors
    source = np.linspace(0.0, 1.0, len(vectors))
    target = np.linspace(0.0, 1.0, n_frames)
    return np.stack(
        [np.interp(target, source, column) for column in vectors.T], axis=1
    ).astype(np.float32)
