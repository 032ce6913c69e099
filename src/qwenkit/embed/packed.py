"""Padding-free inference forward for BERT-family encoders (all-MiniLM-L6-v2 and friends).

``encode`` batches texts of different lengths; a padded batch spends its linear layers, GELU and LayerNorm on pad
positions too. Here the real tokens of a batch are packed into one ``(tokens, hidden)`` matrix: embeddings, the fused
Q/K/V projection, the output projections, the feed-forward block and every LayerNorm run on real tokens only; only
scaled-dot-product attention sees a padded ``(batch, heads, length, head_dim)`` view (with a boolean key mask), and
pooling is a segment reduction. The mathematics is that of ``transformers``' ``BertModel`` in eval mode (absolute
positions from 0, token type 0, exact GELU), so outputs agree with it to float32 rounding (tested to 1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def supports_packed(model: torch.nn.Module) -> bool:
    """True for a plain ``transformers`` ``BertModel`` with absolute positions and exact GELU (no PEFT wrapper)."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "BertModel"
        and getattr(config, "hidden_act", None) == "gelu"
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(config, "is_decoder", False)
    )


_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
PACK_HINT = 1024  # rows per matmul the oneDNN weight layout is tuned for (any row count works)


@dataclass
class _Linear:
    """A linear layer's weight (oneDNN-prepacked on CPU when available) and bias."""

    weight: torch.Tensor
    bias: torch.Tensor

    @classmethod
    def of(cls, weight: torch.Tensor, bias: torch.Tensor) -> _Linear:
        weight, bias = weight.detach(), bias.detach()
        if _ONEDNN and weight.device.type == "cpu" and weight.dtype == torch.float32:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), PACK_HINT)
        return cls(weight, bias)

    def __call__(self, x: torch.Tensor, *, gelu: bool = False) -> torch.Tensor:
        """``x W^T + b`` (then exact GELU when ``gelu``); on CPU float32 the bias and GELU are fused into oneDNN's
        matmul, which saves the pass that copies the bias into the output."""
        if self.weight.is_mkldnn:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "gelu" if gelu else "none", [],
                                                      "none" if gelu else "")
        out = F.linear(x, self.weight, self.bias)
        return F.gelu(out) if gelu else out


@dataclass
class _Layer:
    qkv: _Linear
    attention_out: _Linear
    attention_norm: torch.nn.LayerNorm
    up: _Linear
    down: _Linear
    output_norm: torch.nn.LayerNorm


class PackedBert:
    """Callable ``(token id lists, pooling) -> pooled float32 (batch, hidden)`` over a ``BertModel``'s weights.

    Weights are fused (Q/K/V) and prepacked once at construction; call :meth:`refresh` after changing the model's
    weights.
    """

    def __init__(self, model: torch.nn.Module):
        if not supports_packed(model):
            raise ValueError(f"{type(model).__name__} is not a BERT encoder the packed forward supports")
        self.model = model
        self.refresh()

    def refresh(self) -> None:
        config = self.model.config
        self.heads = int(config.num_attention_heads)
        self.head_dim = int(config.hidden_size) // self.heads
        self.layers = []
        with torch.no_grad():
            for layer in self.model.encoder.layer:
                attention = layer.attention.self
                qkv = _Linear.of(torch.cat([attention.query.weight, attention.key.weight, attention.value.weight]),
                                 torch.cat([attention.query.bias, attention.key.bias, attention.value.bias]))
                self.layers.append(_Layer(
                    qkv, _Linear.of(layer.attention.output.dense.weight, layer.attention.output.dense.bias),
                    layer.attention.output.LayerNorm,
                    _Linear.of(layer.intermediate.dense.weight, layer.intermediate.dense.bias),
                    _Linear.of(layer.output.dense.weight, layer.output.dense.bias), layer.output.LayerNorm,
                ))

    @torch.inference_mode()
    def __call__(self, batch_ids: Sequence[Sequence[int]], pooling: str) -> torch.Tensor:
        device = self.model.embeddings.word_embeddings.weight.device
        lengths = torch.tensor([len(ids) for ids in batch_ids], dtype=torch.long)
        batch, width = len(batch_ids), int(lengths.max())
        flat_ids = torch.tensor([t for ids in batch_ids for t in ids], dtype=torch.long, device=device)
        positions = torch.cat([torch.arange(n) for n in lengths.tolist()]).to(device)
        rows = torch.repeat_interleave(torch.arange(batch), lengths).to(device)
        # rows of one length (a single text, or a server batch of same-length texts) need no padded layout at all
        ragged = batch * width != len(flat_ids)
        slots = rows * width + positions  # where each real token sits in the padded (batch * width) layout
        key_mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).to(device)[:, None, None, :]

        embeddings = self.model.embeddings
        x = embeddings.word_embeddings(flat_ids) + embeddings.token_type_embeddings.weight[0]
        x = x + embeddings.position_embeddings(positions)
        x = F.layer_norm(x, x.shape[-1:], embeddings.LayerNorm.weight, embeddings.LayerNorm.bias,
                         embeddings.LayerNorm.eps)
        hidden = x.shape[-1]
        padded = x.new_zeros(batch * width, 3 * hidden) if ragged else None  # pad slots stay zero in every layer
        for layer in self.layers:
            qkv = padded.index_copy_(0, slots, layer.qkv(x)) if ragged else layer.qkv(x)
            q, k, v = qkv.view(batch, width, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask if ragged else None)
            attended = attended.transpose(1, 2).reshape(batch * width, hidden)
            if ragged:
                attended = attended.index_select(0, slots)
            norm = layer.attention_norm
            projected = layer.attention_out(attended)
            x = F.layer_norm(projected + x, (hidden,), norm.weight, norm.bias, norm.eps)
            inner = layer.up(x, gelu=True)
            norm = layer.output_norm
            projected = layer.down(inner)
            x = F.layer_norm(projected + x, (hidden,), norm.weight, norm.bias, norm.eps)
        return segment_pool(x, rows, lengths.to(device), pooling)


def segment_pool(tokens: torch.Tensor, rows: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool packed token states ``(tokens, hidden)`` of rows with ``lengths`` into ``(rows, hidden)``.

    ``mean``: ``sum_t h_t / n``; ``cls``: the first token of each row; ``last``: the last token of each row.
    """
    ends = lengths.cumsum(0)
    if pooling == "mean":
        sums = tokens.new_zeros(len(lengths), tokens.shape[-1]).index_add_(0, rows, tokens)
        return sums / lengths.unsqueeze(1).to(tokens.dtype)
    if pooling == "cls":
        return tokens[ends - lengths]
    if pooling == "last":
        return tokens[ends - 1]
    raise ValueError(f"unknown pooling mode {pooling!r}")
