from __future__ import annotations

import numpy as np
import pytest
import torch

from qwenkit.embed.embedder import Embedder
from qwenkit.embed.packed import PackedBert, segment_pool, supports_packed

TEXTS = ["a", "the quick brown fox", "jumps over the lazy dog again and again " * 6, "hello world", "x y z", "zz"]


def _hf_reference(embedder: Embedder, texts, pooling: str) -> torch.Tensor:
    """The model's own transformers forward (padded batch), never the packed path."""
    with torch.no_grad():
        return embedder.forward(*embedder.collate(embedder.tokenize(texts)))


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", "the", "##s"]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tokenizer = BertTokenizerFast(str(Path(directory) / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128)
    return BertModel(config).eval(), tokenizer


def test_segment_pool_hand_computed():
    tokens = torch.arange(10, dtype=torch.float32).reshape(5, 2)  # rows of lengths 2 and 3
    rows, lengths = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([2, 3])
    assert torch.equal(segment_pool(tokens, rows, lengths, "mean"), torch.tensor([[1.0, 2.0], [6.0, 7.0]]))
    assert torch.equal(segment_pool(tokens, rows, lengths, "cls"), tokens[[0, 2]])
    assert torch.equal(segment_pool(tokens, rows, lengths, "last"), tokens[[1, 4]])


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_packed_forward_matches_transformers(tiny_bert, pooling):
    model, tokenizer = tiny_bert
    embedder = Embedder(model, tokenizer, pooling=pooling, max_length=64, append_token=False)
    assert supports_packed(model) and embedder.runner() is not None
    packed = PackedBert(model)(embedder.tokenize(TEXTS), pooling)
    reference = _hf_reference(embedder, TEXTS, pooling)
    assert torch.allclose(packed, reference, atol=1e-5), (packed - reference).abs().max()
    # rows of one length (one text; same-length texts) take the path without a padded layout
    for same_length in (TEXTS[2:3], ["x y z", "a b c", "d e f"]):
        packed = PackedBert(model)(embedder.tokenize(same_length), pooling)
        reference = _hf_reference(embedder, same_length, pooling)
        assert torch.allclose(packed, reference, atol=1e-5), (packed - reference).abs().max()


def test_packed_runner_follows_weight_updates(tiny_bert):
    model, tokenizer = tiny_bert
    model = type(model)(model.config).eval()
    model.load_state_dict(tiny_bert[0].state_dict())
    embedder = Embedder(model, tokenizer, max_length=64)
    before = embedder.encode(TEXTS)
    with torch.no_grad():
        model.encoder.layer[0].intermediate.dense.weight.mul_(1.5)  # an in-place update, like an optimizer step
    after = embedder.encode(TEXTS)
    assert not np.allclose(before, after, atol=1e-4)
    reference = torch.nn.functional.normalize(_hf_reference(embedder, TEXTS, "mean")).numpy()
    np.testing.assert_allclose(after, reference, atol=1e-5)


def test_peft_and_causal_models_use_their_own_forward(tiny_lm):
    model, tokenizer = tiny_lm
    assert not supports_packed(model)
    assert Embedder(model, tokenizer).runner() is None


@pytest.mark.parametrize("model_kind", ["bert", "qwen3"])
def test_onnx_backend_matches_torch(tiny_bert, tiny_lm, model_kind):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, tokenizer = tiny_bert if model_kind == "bert" else tiny_lm
    reference = Embedder(model, tokenizer, max_length=64).encode(TEXTS, batch_size=4)
    onnx = Embedder(model, tokenizer, max_length=64, backend="onnx").encode(TEXTS, batch_size=4)
    np.testing.assert_allclose(onnx, reference, atol=1e-5)


def test_onnx_int8_is_close_but_not_exact(tiny_bert):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, tokenizer = tiny_bert
    reference = Embedder(model, tokenizer, max_length=64).encode(TEXTS)
    quantized = Embedder(model, tokenizer, max_length=64, backend="onnx-int8").encode(TEXTS)
    cosine = (reference * quantized).sum(1)
    assert cosine.min() > 0.9


def test_unknown_backend_is_rejected(tiny_bert):
    with pytest.raises(ValueError, match="unknown backend"):
        Embedder(*tiny_bert, backend="tensorrt")
