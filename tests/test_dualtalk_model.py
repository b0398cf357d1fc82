"""The DualTalk network: checkpoint layout, strict loading, shapes and numerics.

Numerics use the tiny test configuration; the real configuration is only built on
the meta device, to compare its parameter names and shapes with the released list.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dualtalk_cli.audio import n_frames_for
from dualtalk_cli.engines.dualtalk_model import (
    DualTalkConfig,
    DualTalkModel,
    load_state_dict_checked,
    normalise_audio,
    to_released_names,
)

RELEASED_KEYS = (
    Path(__file__).resolve().parents[2] / "shared/spec/dualtalk_state_dict.tsv"
)
N_SAMPLES = 16000 * 2 + 123  # not a multiple of 640


def tiny_model(seed: int = 0) -> DualTalkModel:
    torch.manual_seed(seed)
    return DualTalkModel(DualTalkConfig.tiny()).eval()


@pytest.fixture(scope="module")
def model() -> DualTalkModel:
    return tiny_model()


def audio(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return normalise_audio(rng.standard_normal((1, n)).astype(np.float32))


def random_released_checkpoint(seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict for the tiny model, in the released naming, random values."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randn(value.shape, generator=generator)
        for key, value in to_released_names(tiny_model().state_dict()).items()
    }


def test_real_configuration_has_the_released_keys_and_shapes():
    if not RELEASED_KEYS.is_file():
        pytest.skip(f"{RELEASED_KEYS} not present")
    released = {}
    for line in RELEASED_KEYS.read_text().splitlines()[1:]:
        key, shape = line.split("\t")
        released[key] = tuple(int(n) for n in shape.split("x"))
    assert len(released) == 932
    with torch.device("meta"):
        full = DualTalkModel(DualTalkConfig())
    ours = {
        key: tuple(value.shape)
        for key, value in to_released_names(full.state_dict()).items()
    }
    assert sorted(set(released) - set(ours)) == []
    assert sorted(set(ours) - set(released)) == []
    assert ours == released


def test_released_style_checkpoint_loads_strictly(tmp_path):
    checkpoint = random_released_checkpoint()
    assert any(key.endswith(".weight_g") for key in checkpoint)
    path = tmp_path / "DualTalk.pth"
    torch.save(checkpoint, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)

    net = tiny_model(seed=5)
    load_state_dict_checked(net, loaded)
    # every released tensor landed in the model, weight norm included
    after = to_released_names(net.state_dict())
    assert after.keys() == checkpoint.keys()
    for key, value in checkpoint.items():
        assert torch.equal(after[key], value), key
    encoder2 = net.joint_encoder.audio_encoder2
    assert torch.equal(
        encoder2.encoder.layers[1].attention.q_proj.weight,
        checkpoint[
            "joint_encoder.audio_encoder2.encoder.layers.1.attention.q_proj.weight"
        ],
    )
    conv = encoder2.encoder.pos_conv_embed.conv
    g = checkpoint["joint_encoder.audio_encoder2.encoder.pos_conv_embed.conv.weight_g"]
    v = checkpoint["joint_encoder.audio_encoder2.encoder.pos_conv_embed.conv.weight_v"]
    expected = v * (g / v.norm(dim=(0, 1), keepdim=True))
    torch.testing.assert_close(conv.weight, expected)
    assert torch.equal(
        net.temporal_enhancer.temporal_lstm.weight_hh_l1_reverse,
        checkpoint["temporal_enhancer.temporal_lstm.weight_hh_l1_reverse"],
    )


def test_meta_model_with_assign_matches_a_normal_load():
    checkpoint = random_released_checkpoint()
    net = tiny_model()
    load_state_dict_checked(net, checkpoint)
    with torch.device("meta"):
        lazy = DualTalkModel(DualTalkConfig.tiny())
    load_state_dict_checked(lazy, checkpoint, assign=True)
    lazy.eval()
    a1, a2 = audio(9000, 1), audio(9000, 2)
    motion = torch.randn(1, 10, 56)
    with torch.no_grad():
        torch.testing.assert_close(
            lazy.predict(a1, a2, motion), net.predict(a1, a2, motion)
        )


WEIGHT_V = "joint_encoder.audio_encoder1.encoder.pos_conv_embed.conv.weight_v"
PREDICTOR = "synthesis_module.blendshape_predictor.weight"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda sd: sd.pop("synthesis_module.modulation_layer.bias"),
            "1 missing keys: synthesis_module.modulation_layer.bias",
        ),
        (
            lambda sd: sd.pop(WEIGHT_V),
            "1 missing keys: joint_encoder.audio_encoder1.encoder.pos_conv_embed"
            ".conv.parametrizations.weight.original1",
        ),
        (
            lambda sd: sd.__setitem__("lm_head.weight", torch.zeros(3)),
            "1 unexpected keys: lm_head.weight",
        ),
        (
            lambda sd: sd.__setitem__(PREDICTOR, torch.zeros(52, 32)),
            f"1 wrong shapes: {PREDICTOR} (shape [52, 32], expected [56, 32])",
        ),
    ],
)
def test_mismatched_checkpoint_raises_naming_the_keys(change, expected):
    checkpoint = random_released_checkpoint()
    change(checkpoint)
    with pytest.raises(ValueError) as error:
        load_state_dict_checked(tiny_model(), checkpoint)
    assert expected in str(error.value)


def test_many_missing_keys_are_counted_not_all_listed():
    checkpoint = random_released_checkpoint()
    dropped = [key for key in checkpoint if ".audio_encoder2." in key]
    for key in dropped:
        del checkpoint[key]
    with pytest.raises(ValueError, match=rf"{len(dropped)} missing keys: .*more\)"):
        load_state_dict_checked(tiny_model(), checkpoint)


def test_output_has_one_frame_per_640_samples(model):
    n_frames = math.ceil(N_SAMPLES / 640)
    assert n_frames_for(N_SAMPLES) == n_frames == 51
    with torch.no_grad():
        out = model.predict(
            audio(N_SAMPLES, 1), audio(N_SAMPLES, 2), torch.randn(1, 37, 56)
        )
    assert out.shape == (1, n_frames, 56)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_eval_mode_is_deterministic(model):
    a1, a2, motion = audio(N_SAMPLES, 1), audio(N_SAMPLES, 2), torch.randn(1, 20, 56)
    with torch.no_grad():
        first = model.predict(a1, a2, motion)
        second = model.predict(a1, a2, motion)
    assert torch.equal(first, second)


def test_partner_audio_is_stretched_to_the_target_frame_count(model):
    a1, a2 = audio(N_SAMPLES, 1), audio(N_SAMPLES - 5000, 2)
    n_frames = n_frames_for(N_SAMPLES)
    with torch.no_grad():
        enc1, enc2 = model.encode_audio(a1, a2)
        encoder2 = model.joint_encoder.audio_encoder2
        direct = encoder2.encode_features(encoder2.features(a2), n_frames)
        out = model.predict(a1, a2, torch.randn(1, 30, 56))
    assert enc1.shape == enc2.shape == (1, n_frames, 32)
    assert torch.equal(enc2, direct)
    assert out.shape == (1, n_frames, 56)


def test_features_are_cnn_frames_at_50_hz(model):
    with torch.no_grad():
        features = model.joint_encoder.audio_encoder1.features(audio(16000, 1))
    assert features.shape == (1, 49, 32)  # HF wav2vec: 49 frames per second


def test_too_short_audio_is_a_value_error(model):
    with pytest.raises(ValueError, match="at least 400"):
        model.joint_encoder.audio_encoder1.features(audio(399, 1))


def test_normalise_audio_zero_mean_unit_variance():
    x = (np.random.default_rng(0).standard_normal(48000) * 0.1 + 0.3).astype(np.float32)
    y = normalise_audio(x)
    assert y.dtype == torch.float32 and y.shape == (48000,)
    assert abs(float(y.double().mean())) < 1e-6
    assert abs(float(y.double().var(unbiased=False)) - 1.0) < 1e-4
    # the same as HF's feature extractor with do_normalize
    from transformers import Wav2Vec2FeatureExtractor

    hf = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    expected = hf(x, sampling_rate=16000, return_tensors="np").input_values[0]
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-5)
    assert torch.equal(normalise_audio(torch.from_numpy(x)), y)


def test_forward_on_encoded_audio_equals_predict(model):
    a1, a2, motion = (
        audio(N_SAMPLES, 3),
        audio(N_SAMPLES + 700, 4),
        torch.randn(1, 25, 56),
    )
    with torch.no_grad():
        encoded = model.encode_audio(a1, a2)
        assert torch.equal(model(*encoded, motion), model.predict(a1, a2, motion))
        # the encodings can be reused with other partner motion
        other = torch.randn(1, 60, 56)
        assert torch.equal(model(*encoded, other), model.predict(a1, a2, other))


def test_partner_motion_enters_without_order(model):
    """Partner motion is only the cross-attention's keys and values, so permuting
    its frames changes nothing, while changing its values does."""
    a1, a2 = audio(12000, 5), audio(12000, 6)
    motion = torch.randn(1, 30, 56)
    with torch.no_grad():
        encoded = model.encode_audio(a1, a2)
        out = model(*encoded, motion)
        shuffled = model(*encoded, motion[:, torch.randperm(30)])
        other = model(*encoded, motion + 1.0)
    torch.testing.assert_close(shuffled, out)
    assert not torch.allclose(other, out)


def test_encoded_audio_of_different_lengths_is_rejected(model):
    with pytest.raises(ValueError, match="frame count"):
        model(torch.zeros(1, 10, 32), torch.zeros(1, 11, 32), torch.zeros(1, 5, 56))


def test_cnn_features_are_resampled_linearly_end_to_end(model):
    """The projection sees the CNN frames linearly resampled with aligned corners:
    first and last frames kept, the rest interpolated between them."""
    encoder = model.joint_encoder.audio_encoder1
    seen = []
    hook = encoder.feature_projection.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].clone())
    )
    try:
        with torch.no_grad():
            features = encoder.features(audio(N_SAMPLES, 7))
            encoder.encode_features(features, 51)
    finally:
        hook.remove()
    (resampled,) = seen
    assert features.shape[1] == 100 and resampled.shape == (1, 51, 32)
    position = torch.linspace(0, features.shape[1] - 1, 51)
    low = position.floor().long().clamp(max=features.shape[1] - 2)
    weight = (position - low)[None, :, None]
    expected = features[:, low] * (1 - weight) + features[:, low + 1] * weight
    torch.testing.assert_close(resampled, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(resampled[:, 0], features[:, 0])
