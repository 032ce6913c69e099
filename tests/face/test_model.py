"""Model components: audio encoders (log-mel and a tiny random Hugging Face wav2vec2), switches, shapes."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from qwenkit.face.audio import HFSpeechEncoder, LogMelEncoder, mel_filterbank, resample_frames
from qwenkit.face.errors import AudioEncoderError
from qwenkit.face.model import FaceAnimator, FaceModelConfig


def _inputs(batch=2, frames=12, coords=30, seed=0):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, int(frames / 30 * 16000), generator=generator) * 0.1
    reference_motion = torch.randn(batch, 10, coords, generator=generator)
    reference_audio = torch.randn(batch, int(10 / 30 * 16000), generator=generator) * 0.1
    return audio, reference_motion, reference_audio


def test_mel_filterbank_partitions_the_band():
    filters = mel_filterbank(16000, 512, 40)
    assert filters.shape == (40, 257) and filters.min() >= 0 and filters.max() <= 1 + 1e-6
    peaks = filters.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)


def test_resample_frames_keeps_a_constant_signal():
    features = torch.ones(1, 50, 3)
    assert torch.allclose(resample_frames(features, 30), torch.ones(1, 30, 3))


def test_logmel_encoder_shape():
    encoder = LogMelEncoder(16)
    audio, _, _ = _inputs()
    assert encoder(audio, 12).shape == (2, 12, 16)


def test_hf_encoder_from_a_tiny_random_config(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    encoder = HFSpeechEncoder(config)
    audio, _, _ = _inputs()
    features = encoder(audio, 12)
    assert features.shape == (2, 12, 32) and torch.isfinite(features).all()
    Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")  # the local-directory route, as for real weights
    model = FaceAnimator(FaceModelConfig(dim=16, audio_encoder="hf", audio_encoder_path=str(tmp_path / "w2v")), 10, 3)
    assert model.audio_encoder.output_dim == 32
    assert model(audio, 12, reference_motion=_inputs()[1], reference_audio=_inputs()[2]).shape == (2, 12, 30)


def test_hf_encoder_missing_path_says_what_to_pass(tmp_path):
    with pytest.raises(AudioEncoderError, match="audio_encoder_path"):
        HFSpeechEncoder(tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="audio_encoder_path"):
        FaceModelConfig(audio_encoder="hf")


@pytest.mark.parametrize("overrides", [
    {}, {"enhance": False}, {"primitives": 0}, {"style": "onehot"}, {"style": "none"}, {"content_layers": 0},
])
def test_every_switch_runs_and_trains(overrides):
    torch.manual_seed(0)
    model = FaceAnimator(FaceModelConfig(dim=16, **overrides), 10, 3)
    audio, reference_motion, reference_audio = _inputs()
    out = model(audio, 12, reference_motion=reference_motion, reference_audio=reference_audio,
                speaker=torch.tensor([0, 2]))
    assert out.shape == (2, 12, 30)
    assert torch.count_nonzero(out) == 0  # the output layer starts at zero (the template)
    out.sum().backward()
    assert model.output.weight.grad is not None and model.output.weight.grad.abs().sum() > 0


def test_style_encoder_output_depends_on_the_reference():
    torch.manual_seed(0)
    model = FaceAnimator(FaceModelConfig(dim=16), 10, 3)
    torch.nn.init.normal_(model.output.weight, std=0.1)
    audio, reference_motion, reference_audio = _inputs()
    first = model(audio, 12, reference_motion=reference_motion, reference_audio=reference_audio)
    second = model(audio, 12, reference_motion=reference_motion.flip(0), reference_audio=reference_audio.flip(0))
    assert not torch.allclose(first, second)
    with pytest.raises(ValueError, match="reference motion"):
        model(audio, 12)
