"""Inference backends of ``Embedder.encode``: the model's own forward, a padding-free packed forward, ONNX Runtime.

- ``torch`` (default): BERT-family encoders run :class:`~qwenkit.embed.packed.PackedBert` (no compute on padding,
  fused Q/K/V, oneDNN-prepacked weights with fused bias/GELU); other models run their ``transformers`` forward.
- ``onnx``: the backbone exported with ``torch.onnx.export`` (fp32) and run by ``onnxruntime`` on CPU, with
  ``intra_op_num_threads`` = torch's thread count; pooling stays in torch. Needs ``onnx`` (export) and
  ``onnxruntime``.
- ``onnx-int8``: the ONNX graph with dynamically quantised int8 MatMul weights (``onnxruntime.quantization``). Not
  exact: its deviation from fp32 is measured in ``benchmarks/results/embed_throughput.md``.

Every backend is a snapshot of the weights, rebuilt automatically when any parameter changes (its ``_version``
counter moves on in-place updates such as optimizer steps and ``load_state_dict``) or the thread count changes.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from qwenkit.embed.pooling import pool

BackendName = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
Runner = Callable[[Sequence[Sequence[int]]], torch.Tensor]


def weights_key(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or updated in place, or the thread count changes."""
    tensors = [*model.parameters(), *model.buffers()]
    return (torch.get_num_threads(), tuple((id(t), t._version) for t in tensors))


def build_runner(embedder, backend: BackendName) -> Runner | None:
    """The fast ``batch of token-id lists -> pooled embeddings`` function, or None to use ``embedder.forward``."""
    if backend == "torch":
        from qwenkit.embed.packed import PackedBert, supports_packed

        if not supports_packed(embedder.model):
            return None
        packed = PackedBert(embedder.model)
        return lambda batch_ids: packed(batch_ids, embedder.pooling)
    if backend in ("onnx", "onnx-int8"):
        return OnnxRunner(embedder, quantize=backend == "onnx-int8")
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


class _Backbone(torch.nn.Module):
    """``(input_ids, attention_mask[, position_ids]) -> last_hidden_state`` for export."""

    def __init__(self, backbone: torch.nn.Module, causal: bool):
        super().__init__()
        self.backbone, self.causal = backbone, causal

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None):
        kwargs = {"position_ids": position_ids, "use_cache": False} if self.causal else {}
        output = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]


class OnnxRunner:
    """The embedder's backbone as an in-memory ONNX graph run by ``onnxruntime`` (CPU, fp32 or int8 weights)."""

    def __init__(self, embedder, *, quantize: bool = False):
        try:
            import onnxruntime
        except ImportError as exc:
            raise ImportError("backend='onnx' needs onnxruntime: pip install onnxruntime") from exc
        try:
            import onnx  # noqa: F401  (torch.onnx.export serialises through it)
        except ImportError as exc:
            raise ImportError("backend='onnx' needs the onnx package to export the model: pip install onnx") from exc
        from qwenkit.embed.embedder import backbone_of

        self.embedder = embedder
        model = embedder.model
        if hasattr(model, "get_base_model"):
            raise ValueError("backend='onnx' needs a plain model; merge LoRA adapters first (merge_and_unload)")
        was_training = model.training
        model.eval()
        sample_ids, sample_mask = embedder.collate([[embedder.pad_token_id] * 3, [embedder.pad_token_id] * 2])
        inputs: tuple[torch.Tensor, ...] = (sample_ids, sample_mask)
        names = ["input_ids", "attention_mask"]
        if embedder.causal:
            inputs += ((sample_mask.cumsum(1) - 1).clamp(min=0),)
            names.append("position_ids")
        buffer = io.BytesIO()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches of the model
                torch.onnx.export(_Backbone(backbone_of(model), embedder.causal), inputs, buffer, input_names=names,
                                  output_names=["hidden"], opset_version=17, dynamo=False,
                                  dynamic_axes={**{n: {0: "batch", 1: "length"} for n in names},
                                                "hidden": {0: "batch", 1: "length"}})
        finally:
            model.train(was_training)
        graph = buffer.getvalue()
        if quantize:
            graph = _quantize_dynamic(graph)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.names = names

    def __call__(self, batch_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        input_ids, mask = self.embedder.collate(batch_ids)
        feed = {"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()}
        if "position_ids" in self.names:
            feed["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0).numpy()
        hidden = torch.from_numpy(np.asarray(self.session.run(None, feed)[0]))
        return pool(hidden, mask, self.embedder.pooling)


def _quantize_dynamic(graph: bytes) -> bytes:
    """int8 dynamic quantisation of the MatMul weights (activations quantised per batch at run time)."""
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as directory:
        source, target = Path(directory) / "fp32.onnx", Path(directory) / "int8.onnx"
        source.write_bytes(graph)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        return target.read_bytes()
