from __future__ import annotations

import numpy as np
import pytest
import torch

from qwenkit.embed.embedder import Embedder, format_query
from qwenkit.embed.pooling import last_token_index, matryoshka, pool

TEXTS = ["a", "the quick brown fox", "jumps over the lazy dog again and again", "hello world", "x y z", "q" * 30, "z"]


def test_format_query_is_exact():
    assert format_query("Find code", "sort a list") == "Instruct: Find code\nQuery:sort a list"


def test_last_token_index_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 3, 0]
    assert last_token_index(left).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="no real token"):
        last_token_index(torch.tensor([[0, 0]]))


def test_pool_modes_hand_computed():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[0, 1, 1], [1, 1, 0]])
    assert torch.equal(pool(hidden, mask, "last"), torch.stack([hidden[0, 2], hidden[1, 1]]))
    assert torch.equal(pool(hidden, mask, "cls"), torch.stack([hidden[0, 1], hidden[1, 0]]))
    expected_mean = torch.stack([(hidden[0, 1] + hidden[0, 2]) / 2, (hidden[1, 0] + hidden[1, 1]) / 2])
    assert torch.allclose(pool(hidden, mask, "mean"), expected_mean)


def test_matryoshka_truncates_then_normalises():
    vector = torch.tensor([[3.0, 4.0] + [12.0] * 62])
    cut = matryoshka(vector, 32)
    reference = vector[:, :32] / vector[:, :32].norm()
    assert cut.shape == (1, 32)
    assert torch.allclose(cut, reference)
    assert torch.allclose(cut.norm(dim=-1), torch.ones(1))
    for bad in (31, 65, 0):
        with pytest.raises(ValueError, match="out of range"):
            matryoshka(vector, bad)


def test_eos_appended_and_kept_after_truncation(tiny_lm):
    model, tokenizer = tiny_lm
    embedder = Embedder(model, tokenizer, max_length=8)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert embedder.append_token_id == eot != tokenizer.eos_token_id
    short, long = embedder.tokenize(["ab", "abcdefghijklmnop"])
    assert short == [*tokenizer("ab")["input_ids"], eot]
    assert len(long) == 8 and long[-1] == eot
    assert long[:7] == tokenizer("abcdefg")["input_ids"]


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pooling_is_padding_invariant(tiny_lm, side):
    model, tokenizer = tiny_lm
    embedder = Embedder(model, tokenizer, max_length=64)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        alone = np.stack([embedder.encode([t], batch_size=1)[0] for t in TEXTS])
        batched = embedder.encode(TEXTS, batch_size=len(TEXTS))
        ids = embedder.tokenize(TEXTS)
        input_ids, mask = embedder.collate(ids)
        first_col = mask[:, 0].tolist()
        assert (side == "left") == (0 in first_col)
    finally:
        tokenizer.padding_side = old_side
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_encode_keeps_order_and_dims(tiny_lm):
    model, tokenizer = tiny_lm
    embedder = Embedder(model, tokenizer, max_length=64)
    full = embedder.encode(TEXTS, batch_size=3)
    reversed_ = embedder.encode(TEXTS[::-1], batch_size=2)
    np.testing.assert_allclose(full, reversed_[::-1], atol=1e-5)
    cut = embedder.encode(TEXTS, dim=32)
    reference = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, reference, atol=1e-5)
    assert embedder.encode([]).shape == (0, 32)
    assert embedder.encode("hello").shape == (32,)
    query = embedder.encode(["sort"], instruction="Find code")
    np.testing.assert_allclose(query, embedder.encode([format_query("Find code", "sort")]), atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        embedder.encode(TEXTS, dim=16)


def test_save_and_reload_roundtrip(tiny_lm, tmp_path):
    model, tokenizer = tiny_lm
    embedder = Embedder(model, tokenizer, max_length=40)
    embedder.save_pretrained(tmp_path / "m")
    loaded = Embedder.from_pretrained(tmp_path / "m")
    assert loaded.causal and loaded.pooling == "last" and loaded.max_length == 40
    assert loaded.append_token_id == embedder.append_token_id
    np.testing.assert_allclose(loaded.encode(TEXTS), embedder.encode(TEXTS), atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_parity_with_sentence_transformers_minilm(minilm_path, batch_size):
    st = pytest.importorskip("sentence_transformers")
    texts = [f"sentence {i}: " + " ".join(["token"] * (i % 23)) + " end" for i in range(40)]
    texts += ["An EXTREMELY long passage. " * 80]
    reference = st.SentenceTransformer(minilm_path, device="cpu").encode(texts, batch_size=batch_size)
    ours = Embedder.from_pretrained(minilm_path).encode(texts, batch_size=batch_size)
    assert ours.shape == reference.shape == (41, 384)
    assert np.abs(ours - reference).max() <= 1e-5


def test_minilm_reads_sentence_transformers_settings(minilm_path):
    embedder = Embedder.from_pretrained(minilm_path)
    assert (embedder.pooling, embedder.max_length, embedder.causal) == ("mean", 256, False)
    assert embedder.append_token_id is None
