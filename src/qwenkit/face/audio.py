"""Audio encoders: raw 16 kHz waveform (B, S) -> features at the motion frame rate (B, T, d).

- ``LogMelEncoder``: a log-mel front end computed in torch (no download), two strided convolutions, then linear
  resampling to the T motion frames.
- ``HFSpeechEncoder``: any Hugging Face speech model with a ``last_hidden_state`` (wav2vec2, HuBERT, WavLM) loaded from
  a local directory (or built from a config, as the tests do), its hidden states resampled to the T motion frames.
  The model is not subclassed (FaceFormer's subclass breaks across transformers versions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qwenkit.face.errors import AudioEncoderError


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 50.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft // 2 + 1) on the HTK mel scale ``2595 log10(1 + f / 700)``."""
    fmax = fmax or sample_rate / 2
    mel = np.linspace(2595 * np.log10(1 + fmin / 700), 2595 * np.log10(1 + fmax / 700), n_mels + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0, None).astype(np.float32)


def resample_frames(features: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Linear interpolation of (B, T_in, d) features to (B, num_frames, d)."""
    return F.interpolate(features.transpose(1, 2), size=num_frames, mode="linear", align_corners=False).transpose(1, 2)


class LogMelEncoder(nn.Module):
    """Log-mel (n_fft 512, hop 160 = 100 Hz at 16 kHz, 40 mels) -> Conv1d x2 -> d, resampled to the motion rate."""

    def __init__(self, dim: int, sample_rate: int = 16000, n_mels: int = 40, n_fft: int = 512, hop: int = 160):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("filters", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.norm = nn.LayerNorm(n_mels)
        self.convs = nn.Sequential(nn.Conv1d(n_mels, dim, 5, padding=2), nn.GELU(), nn.Conv1d(dim, dim, 5, padding=2))
        self.output_dim = dim

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(audio, self.n_fft, self.hop, window=self.window, return_complex=True, center=True)
        power = spectrum.abs().square()
        return torch.log(torch.einsum("mf,bft->btm", self.filters, power) + 1e-6)

    def forward(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        mel = self.norm(self.log_mel(audio))
        hidden = self.convs(mel.transpose(1, 2)).transpose(1, 2)
        return resample_frames(hidden, num_frames)


class HFSpeechEncoder(nn.Module):
    """A Hugging Face speech model (local path or config) -> ``last_hidden_state`` resampled to T motion frames."""

    def __init__(self, source: str | Path | object, freeze_feature_encoder: bool = True):
        super().__init__()
        from transformers import AutoModel, PretrainedConfig

        if isinstance(source, PretrainedConfig):
            self.model = AutoModel.from_config(source)
        else:
            path = Path(source)
            if not (path / "config.json").is_file():
                raise AudioEncoderError(
                    f"audio encoder path {str(path)!r} is not a local Hugging Face model directory (no config.json); "
                    "download e.g. facebook/wav2vec2-base-960h elsewhere and pass its directory as "
                    "model.audio_encoder_path (nothing is fetched from the hub)")
            self.model = AutoModel.from_pretrained(path, local_files_only=True)
        if freeze_feature_encoder and hasattr(self.model, "freeze_feature_encoder"):
            self.model.freeze_feature_encoder()
        self.output_dim = int(self.model.config.hidden_size)

    def forward(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        # wav2vec2-style models expect zero-mean, unit-variance waveforms
        normalised = (audio - audio.mean(-1, keepdim=True)) / (audio.std(-1, keepdim=True) + 1e-5)
        hidden = self.model(normalised).last_hidden_state
        return resample_frames(hidden, num_frames)
