"""The style-aware talking-face model (StyleSpeaker, arXiv 2503.09852, as far as the paper's abstract describes it)
and its FaceFormer-style one-hot baseline, sharing one non-autoregressive backbone.

    audio (B, S) --audio encoder--> content c_t (B, T, d) --transformer--> c_t
    reference motion clip (B, R, D) --style encoder--> per-frame m_r, style s = mean_r m_r
    speech-conditioned enhancement: e_t = s + Attn(q = c_t, k = reference audio a_r, v = m_r)
    style infusion with K primitives P: alpha_t = softmax([c_t; e_t] W P^T / sqrt d); h_t = c_t + alpha_t P + W_e e_t
    motion decoder: transformer over h_t -> zero-initialised linear -> normalised motion (B, T, D)

Vertices are ``template + motion * motion_scale``. The paper's exact enhancement and infusion equations are not
public; the forms above are ours. Each of enhancement and primitives switches off (``enhance=False``: ``e_t = s``;
``primitives=0``: ``h_t = c_t + W_e e_t``); ``style="onehot"`` replaces the style encoder with a learned embedding per
training speaker (FaceFormer), ``style="none"`` drops style entirely.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from qwenkit.core.config import StrictModel


class FaceModelConfig(StrictModel):
    dim: int = Field(64, ge=8)
    heads: int = Field(4, ge=1)
    content_layers: int = Field(1, ge=0)
    decoder_layers: int = Field(1, ge=1)
    style: Literal["encoder", "onehot", "none"] = "encoder"
    enhance: bool = Field(True, description="speech-conditioned style enhancement")
    primitives: int = Field(16, ge=0, description="K style primitives; 0 switches the infusion module off")
    audio_encoder: Literal["logmel", "hf"] = "logmel"
    audio_encoder_path: str | None = Field(None, description="local HF speech model directory (audio_encoder: hf)")
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> FaceModelConfig:
        if self.audio_encoder == "hf" and not self.audio_encoder_path:
            raise ValueError("audio_encoder 'hf' needs audio_encoder_path: a local Hugging Face speech model directory")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def _transformer(dim: int, heads: int, layers: int, dropout: float) -> nn.Module:
    if layers == 0:
        return nn.Identity()
    layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class StyleEncoder(nn.Module):
    """Reference motion clip (B, R, D) -> per-frame style features (B, R, d) (mean-pooled to the style vector)."""

    def __init__(self, coords: int, dim: int, heads: int, dropout: float):
        super().__init__()
        self.project = nn.Linear(coords, dim)
        self.encoder = _transformer(dim, heads, 1, dropout)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        hidden = self.project(motion) + sinusoidal_positions(motion.shape[1], self.project.out_features, motion.device)
        return self.encoder(hidden)


class StyleEnhancement(nn.Module):
    """``e_t = s + Attn(q = c_t, k = a_r, v = m_r)``: how this speaker moved when the reference speech sounded like
    the current frame (our form of the paper's speech-conditioned style enhancement)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, content, style, reference_audio, reference_motion):
        looked_up, _ = self.attention(content, reference_audio, reference_motion, need_weights=False)
        return style[:, None] + looked_up


class StyleInfusion(nn.Module):
    """``h_t = c_t + softmax([c_t; e_t] W P^T / sqrt d) P + W_e e_t`` with K learned primitives P (our form)."""

    def __init__(self, dim: int, count: int):
        super().__init__()
        self.count = count
        self.style_projection = nn.Linear(dim, dim)
        if count:
            self.primitives = nn.Parameter(torch.randn(count, dim) / math.sqrt(dim))
            self.query = nn.Linear(2 * dim, dim)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        infused = content + self.style_projection(style)
        if not self.count:
            return infused
        query = self.query(torch.cat([content, style], dim=-1))
        weights = torch.softmax(query @ self.primitives.T / math.sqrt(content.shape[-1]), dim=-1)
        return infused + weights @ self.primitives


class FaceAnimator(nn.Module):
    """Speech (+ reference clip or speaker id) -> normalised motion; see the module docstring."""

    def __init__(self, config: FaceModelConfig, num_vertices: int, num_train_speakers: int):
        super().__init__()
        self.config = config
        self.coords = num_vertices * 3
        dim = config.dim
        if config.audio_encoder == "hf":
            from qwenkit.face.audio import HFSpeechEncoder

            self.audio_encoder = HFSpeechEncoder(config.audio_encoder_path)
        else:
            from qwenkit.face.audio import LogMelEncoder

            self.audio_encoder = LogMelEncoder(dim)
        self.audio_projection = nn.Linear(self.audio_encoder.output_dim, dim)
        self.content = _transformer(dim, config.heads, config.content_layers, config.dropout)
        if config.style == "encoder":
            self.style_encoder = StyleEncoder(self.coords, dim, config.heads, config.dropout)
            if config.enhance:
                self.enhancement = StyleEnhancement(dim, config.heads)
        elif config.style == "onehot":
            self.speaker_embedding = nn.Embedding(num_train_speakers, dim)
        self.infusion = StyleInfusion(dim, config.primitives)
        self.decoder = _transformer(dim, config.heads, config.decoder_layers, config.dropout)
        self.output = nn.Linear(dim, self.coords)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        # heads used only by the local contrastive loss: content features and true motion into one space
        self.sync_audio = nn.Linear(dim, dim)
        self.sync_motion = nn.Linear(self.coords, dim)
        self.register_buffer("motion_scale", torch.ones(()))

    def encode_audio(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        features = self.audio_projection(self.audio_encoder(audio, num_frames))
        return features + sinusoidal_positions(num_frames, features.shape[-1], features.device)

    def style(self, content, reference_motion=None, reference_audio=None, speaker=None) -> torch.Tensor:
        """Per-frame style (B, T, d) for the chosen conditioning (zeros with ``style="none"``)."""
        batch, frames, dim = content.shape
        if self.config.style == "none":
            return content.new_zeros(batch, frames, dim)
        if self.config.style == "onehot":
            if speaker is None:
                raise ValueError("a one-hot model needs speaker ids")
            return self.speaker_embedding(speaker)[:, None].expand(batch, frames, dim)
        if reference_motion is None:
            raise ValueError("a style-encoder model needs a reference motion clip")
        reference_features = self.style_encoder(reference_motion)
        pooled = reference_features.mean(dim=1)
        if not self.config.enhance:
            return pooled[:, None].expand(batch, frames, dim)
        if reference_audio is None:
            raise ValueError("style enhancement needs the reference clip's audio")
        reference_audio_features = self.encode_audio(reference_audio, reference_motion.shape[1])
        return self.enhancement(content, pooled, reference_audio_features, reference_features)

    def forward(self, audio, num_frames, *, reference_motion=None, reference_audio=None, speaker=None,
                return_content=False):
        """Normalised motion (B, T, D); with ``return_content`` also the content features (B, T, d)."""
        content = self.content(self.encode_audio(audio, num_frames))
        style = self.style(content, reference_motion, reference_audio, speaker)
        motion = self.output(self.decoder(self.infusion(content, style)))
        return (motion, content) if return_content else motion
