"""The DualTalk network (CVPR 2025), written from its published description.

Two wav2vec 2.0 large encoders turn each speaker's 16 kHz audio into 25 fps features;
the partner's motion attends over the partner's audio; a transformer mixes both
speakers and a one-layer decoder predicts 56 FLAME channels per frame, in the
network's order [exp 50, jaw 3, neck 3]. Module and parameter names follow the
released checkpoint so it loads strictly. No I/O here: the engine reads files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from torch import Tensor, nn

from dualtalk_cli.audio import SAMPLES_PER_FRAME, n_frames_for
from dualtalk_cli.motion import N_NETWORK

# Weight-norm tensor names: as released (torch 1.12) and as torch >= 2.1 names them.
_RELEASED_WEIGHT_NORM = ("weight_g", "weight_v")
_CURRENT_WEIGHT_NORM = (
    "parametrizations.weight.original0",
    "parametrizations.weight.original1",
)


@dataclass(frozen=True)
class DualTalkConfig:
    """Sizes of the network; the defaults are the released model's."""

    blendshape_dim: int = N_NETWORK
    feature_dim: int = 256
    n_heads: int = 4
    n_interaction_layers: int = 3
    n_decoder_layers: int = 1
    ff_dim: int = 2048

    # wav2vec 2.0 large-lv60 encoder (facebook/wav2vec2-large-960h-lv60-self)
    audio_hidden: int = 1024
    audio_layers: int = 24
    audio_heads: int = 16
    audio_ff: int = 4096
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16

    @classmethod
    def tiny(cls) -> DualTalkConfig:
        """A few-thousand-parameter configuration for tests; same structure and
        the same 320-sample CNN hop, so frame counts behave as in the real model."""
        return cls(
            feature_dim=16,
            n_heads=2,
            n_interaction_layers=2,
            ff_dim=32,
            audio_hidden=32,
            audio_layers=2,
            audio_heads=2,
            audio_ff=64,
            conv_dim=(32,) * 7,
            pos_conv_kernel=16,
            pos_conv_groups=2,
        )


def wav2vec_config(config: DualTalkConfig) -> transformers.Wav2Vec2Config:
    """The encoder's HF config, built in code. Dropouts, layerdrop and SpecAugment
    are the training values; they do nothing in eval()."""
    return transformers.Wav2Vec2Config(
        hidden_size=config.audio_hidden,
        num_hidden_layers=config.audio_layers,
        num_attention_heads=config.audio_heads,
        intermediate_size=config.audio_ff,
        hidden_act="gelu",
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.1,
        feat_proj_dropout=0.1,
        layerdrop=0.1,
        layer_norm_eps=1e-5,
        feat_extract_norm="layer",
        feat_extract_activation="gelu",
        conv_dim=list(config.conv_dim),
        conv_kernel=list(config.conv_kernel),
        conv_stride=list(config.conv_stride),
        conv_bias=True,
        num_conv_pos_embeddings=config.pos_conv_kernel,
        num_conv_pos_embedding_groups=config.pos_conv_groups,
        do_stable_layer_norm=True,
        # mask_time_prob > 0 is also what makes HF create `masked_spec_embed`,
        # a released tensor that inference never uses.
        apply_spec_augment=True,
        mask_time_prob=0.05,
        mask_time_length=10,
        mask_feature_prob=0.0,
        add_adapter=False,
    )


@dataclass(frozen=True)
class EncoderWindow:
    """Long audio is encoded in windows of ``frames`` motion frames that overlap
    by ``overlap`` frames and are cross-faded linearly, so memory does not grow
    with the audio's length."""

    frames: int = 500  # 20 s
    overlap: int = 100  # 4 s shared by neighbouring windows

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.frames:
            raise ValueError("the overlap must be shorter than the window")


def normalise_audio(audio: np.ndarray | Tensor) -> Tensor:
    """Per-utterance (x - mean) / sqrt(var + 1e-7) over the last axis, float32,
    as the HF feature extractor's ``do_normalize``. (..., N) -> (..., N)."""
    x = torch.as_tensor(np.asarray(audio) if not torch.is_tensor(audio) else audio)
    # float64 statistics so long utterances do not lose precision in the sums
    x = x.to(torch.float64)
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    return ((x - mean) / torch.sqrt(var + 1e-7)).to(torch.float32)


class AudioEncoder(nn.Module):
    """wav2vec 2.0 with DualTalk's forward: the CNN features are resampled to the
    motion frame rate *before* the projection and the transformer."""

    def __init__(self, config: DualTalkConfig):
        super().__init__()
        wav2vec = transformers.Wav2Vec2Model(wav2vec_config(config))
        # Adopt HF's submodules under HF's names, so the keys match the checkpoint,
        # without inheriting Wav2Vec2Model's forward and its padding/mask logic.
        self.min_samples = self._receptive_field(config)
        self.masked_spec_embed = wav2vec.masked_spec_embed
        self.feature_extractor = wav2vec.feature_extractor
        self.feature_projection = wav2vec.feature_projection
        self.encoder = wav2vec.encoder

    @staticmethod
    def _receptive_field(config: DualTalkConfig) -> int:
        field = 1
        for kernel, stride in reversed(
            list(zip(config.conv_kernel, config.conv_stride))
        ):
            field = (field - 1) * stride + kernel
        return field

    def features(self, audio: Tensor) -> Tensor:
        """CNN features at about 50 Hz: (B, N) normalised audio -> (B, T50, C)."""
        if audio.shape[-1] < self.min_samples:
            raise ValueError(
                f"audio has {audio.shape[-1]} samples; the encoder needs at least "
                f"{self.min_samples}"
            )
        return self.feature_extractor(audio).transpose(1, 2)

    def encode_features(self, features: Tensor, n_frames: int) -> Tensor:
        """Resample CNN features to ``n_frames`` and run the transformer.
        (B, T50, C) -> (B, n_frames, hidden)."""
        # Linear, align_corners=True: the first and last CNN frames map exactly
        # onto the first and last motion frames, as in the released model.
        x = F.interpolate(
            features.transpose(1, 2), size=n_frames, mode="linear", align_corners=True
        ).transpose(1, 2)
        x = self.feature_projection(x)[0]
        return self.encoder(x).last_hidden_state

    def forward(
        self, audio: Tensor, n_frames: int, window: EncoderWindow | None = None
    ) -> Tensor:
        """(B, N) normalised 16 kHz audio -> (B, n_frames, hidden).

        With ``window``, audio longer than one window is encoded window by window.
        """
        if window is None or n_frames <= window.frames:
            return self.encode_features(self.features(audio), n_frames)
        step = window.frames - window.overlap
        total = weight_sum = None
        ramp = torch.linspace(0, 1, window.overlap + 2, device=audio.device)[1:-1]
        for start in range(0, n_frames - window.overlap, step):
            stop = min(start + window.frames, n_frames)
            part = audio[..., start * SAMPLES_PER_FRAME : stop * SAMPLES_PER_FRAME]
            encoded = self.encode_features(self.features(part), stop - start)
            if total is None:
                shape = (*encoded.shape[:-2], n_frames, encoded.shape[-1])
                total = torch.zeros(shape, device=audio.device)
                weight_sum = torch.zeros(n_frames, 1, device=audio.device)
            weights = torch.ones(stop - start, 1, device=audio.device)
            if start > 0:
                weights[: window.overlap, 0] = ramp
            if stop < n_frames:
                weights[-window.overlap :, 0] = ramp.flip(0)
            total[..., start:stop, :] += weights * encoded
            weight_sum[start:stop] += weights
        return total / weight_sum


class JointEncoder(nn.Module):
    """Both speakers' audio encoders, a shared audio projection, and a per-frame
    MLP over the partner's motion."""

    def __init__(self, config: DualTalkConfig):
        super().__init__()
        dim = config.feature_dim
        self.audio_encoder1 = AudioEncoder(config)
        self.audio_encoder2 = AudioEncoder(config)
        self.audio_projection = nn.Linear(config.audio_hidden, dim)
        self.blendshape_encoder = nn.Sequential(
            nn.Linear(config.blendshape_dim, dim // 2),
            nn.ReLU(),
            nn.Linear(dim // 2, dim),
            nn.ReLU(),
        )

    def forward(
        self, audio1_encoded: Tensor, audio2_encoded: Tensor, partner_motion: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(B,T,hidden) x2, (B,T2,56) -> A1 (B,T,D), A2 (B,T,D), motion (B,T2,D)."""
        return (
            self.audio_projection(audio1_encoded),
            self.audio_projection(audio2_encoded),
            self.blendshape_encoder(partner_motion),
        )


class TemporalEnhancer(nn.Module):
    """Partner audio queries the partner's motion; a BiLSTM adds temporal order."""

    def __init__(self, config: DualTalkConfig):
        super().__init__()
        dim = config.feature_dim
        self.cross_attention = nn.MultiheadAttention(
            dim, config.n_heads, dropout=0.0, batch_first=True
        )
        self.temporal_lstm = nn.LSTM(
            dim, dim // 2, num_layers=2, bidirectional=True, batch_first=True
        )

    def forward(self, partner_audio: Tensor, partner_motion: Tensor) -> Tensor:
        """(B,T,D), (B,T2,D) -> (B,T,D). No residual and no norm, as released."""
        x = self.cross_attention(
            partner_audio, partner_motion, partner_motion, need_weights=False
        )[0]
        return self.temporal_lstm(x)[0]


def _layer(kind: type[nn.Module], config: DualTalkConfig) -> nn.Module:
    """One transformer layer over both speakers' features (2 x feature_dim wide)."""
    return kind(
        2 * config.feature_dim,
        config.n_heads,
        dim_feedforward=config.ff_dim,
        batch_first=True,
    )


class InteractionModule(nn.Module):
    """Transformer encoder over both speakers' features, then plain self-attention."""

    def __init__(self, config: DualTalkConfig):
        super().__init__()
        self.interaction_encoder = nn.TransformerEncoder(
            _layer(nn.TransformerEncoderLayer, config),
            config.n_interaction_layers,
            norm=None,
            enable_nested_tensor=False,
        )
        self.self_attention = nn.MultiheadAttention(
            2 * config.feature_dim, config.n_heads, batch_first=True
        )
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        """(B,T,2D) -> (B,T,2D)."""
        x = self.interaction_encoder(x)
        return self.dropout(self.self_attention(x, x, x, need_weights=False)[0])


class SynthesisModule(nn.Module):
    """One decoder layer (target = memory), a small modulation, a linear head."""

    mod_factor = 0.1  # fixed in the released code

    def __init__(self, config: DualTalkConfig):
        super().__init__()
        width = 2 * config.feature_dim
        self.synthesis_decoder = nn.TransformerDecoder(
            _layer(nn.TransformerDecoderLayer, config),
            config.n_decoder_layers,
            norm=None,
        )
        self.modulation_layer = nn.Linear(width, width)
        self.blendshape_predictor = nn.Linear(width, config.blendshape_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B,T,2D) -> (B,T,56)."""
        x = self.synthesis_decoder(x, x)
        x = x + self.mod_factor * self.modulation_layer(x)
        return self.blendshape_predictor(x)


class DualTalkModel(nn.Module):
    """Target speaker's motion from both speakers' audio and the partner's motion."""

    def __init__(self, config: DualTalkConfig | None = None):
        super().__init__()
        self.config = config or DualTalkConfig()
        self.joint_encoder = JointEncoder(self.config)
        self.temporal_enhancer = TemporalEnhancer(self.config)
        self.interaction_module = InteractionModule(self.config)
        self.synthesis_module = SynthesisModule(self.config)

    def encode_audio(
        self, audio1: Tensor, audio2: Tensor, window: EncoderWindow | None = None
    ) -> tuple[Tensor, Tensor]:
        """Normalised (B,N1), (B,N2) -> (B,T,hidden) each, T = ceil(N1 / 640).
        audio2 is stretched to audio1's frame count, as in the released model.
        ``window``: encode long audio in windows (see EncoderWindow)."""
        n_frames = n_frames_for(audio1.shape[-1])
        return (
            self.joint_encoder.audio_encoder1(audio1, n_frames, window),
            self.joint_encoder.audio_encoder2(audio2, n_frames, window),
        )

    def forward(
        self, audio1_encoded: Tensor, audio2_encoded: Tensor, partner_motion: Tensor
    ) -> Tensor:
        """Encoded target audio (B,T,hidden), encoded partner audio (B,T,hidden),
        partner motion (B,T2,56) in [exp, jaw, neck] order -> motion (B,T,56)."""
        with _without_attention_fastpath():
            return self._forward(audio1_encoded, audio2_encoded, partner_motion)

    def _forward(
        self, audio1_encoded: Tensor, audio2_encoded: Tensor, partner_motion: Tensor
    ) -> Tensor:
        if audio1_encoded.shape[:2] != audio2_encoded.shape[:2]:
            raise ValueError(
                "encoded audio must share batch and frame count, got "
                f"{tuple(audio1_encoded.shape)} and {tuple(audio2_encoded.shape)}"
            )
        a1, a2, motion = self.joint_encoder(
            audio1_encoded, audio2_encoded, partner_motion
        )
        partner = self.temporal_enhancer(a2, motion)
        x = self.interaction_module(torch.cat([a1, partner], dim=-1))
        return self.synthesis_module(x)

    def predict(
        self,
        audio1: Tensor,
        audio2: Tensor,
        partner_motion: Tensor,
        window: EncoderWindow | None = None,
    ) -> Tensor:
        """Normalised raw audio (B,N1), (B,N2), partner motion (B,T2,56)
        -> (B, ceil(N1/640), 56)."""
        return self(*self.encode_audio(audio1, audio2, window), partner_motion)


@contextlib.contextmanager
def _without_attention_fastpath() -> Iterator[None]:
    """Use scaled_dot_product_attention in the attention layers, for this call only.

    PyTorch's fused inference path for these layers materialises every T x T
    attention matrix: 3.6 GB for ten minutes of conversation, against about
    0.7 GB and less time through scaled_dot_product_attention.
    """
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def to_released_names(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename current weight-norm keys to the released ``weight_g``/``weight_v``."""
    renamed = {}
    for key, value in state_dict.items():
        for current, released in zip(_CURRENT_WEIGHT_NORM, _RELEASED_WEIGHT_NORM):
            if key.endswith("." + current):
                key = key[: -len(current)] + released
        renamed[key] = value
    return renamed


def _to_model_names(
    state_dict: Mapping[str, Tensor], model_keys: set[str]
) -> dict[str, Tensor]:
    """Rename released weight-norm keys to the model's names where they differ.
    Done here rather than by torch's compatibility hook so that the key check
    below sees the names load_state_dict will see."""
    renamed = {}
    for key, value in state_dict.items():
        for released, current in zip(_RELEASED_WEIGHT_NORM, _CURRENT_WEIGHT_NORM):
            if key.endswith("." + released) and key not in model_keys:
                target = key[: -len(released)] + current
                key = target if target in model_keys else key
        renamed[key] = value
    return renamed


def _listing(kind: str, keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{len(keys)} {kind}: {shown}{more}"


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, assign: bool = False
) -> None:
    """Load strictly, accepting released weight-norm names. Raises ValueError
    listing missing, unexpected and wrong-shape keys. ``assign=True`` adopts the
    tensors (for a model built on the meta device)."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    state = _to_model_names(state_dict, set(expected))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = []
    for key in sorted(set(state) & set(expected)):
        value = state[key]
        if not torch.is_tensor(value):
            mismatched.append(f"{key} (not a tensor)")
        elif tuple(value.shape) != expected[key]:
            got, want = tuple(value.shape), expected[key]
            mismatched.append(f"{key} (shape {list(got)}, expected {list(want)})")
    problems = [
        _listing(kind, keys)
        for kind, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", mismatched),
        )
        if keys
    ]
    if problems:
        raise ValueError("checkpoint does not match the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True, assign=assign)
