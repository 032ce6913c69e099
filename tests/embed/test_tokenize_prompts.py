"""Exact truncation and prompts, against sentence-transformers on a tiny model saved like Qwen3-Embedding-0.6B."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from qwenkit.embed.embedder import Embedder

LIMIT = 16
QWEN3_QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def _appending_tokenizer():
    """The synthetic tokenizer with Qwen3-Embedding's post-processor: ``$A <|endoftext|>`` (pad = appended token)."""
    from tokenizers import processors

    from qwenkit.lm import build_synthetic_tokenizer

    tokenizer = build_synthetic_tokenizer(extra_tokens=("yes", "no"))
    end = "<|endoftext|>"
    end_id = tokenizer.convert_tokens_to_ids(end)
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {end}", pair=f"$A {end} $B:1 {end}:1", special_tokens=[(end, end_id)])
    return tokenizer


@pytest.fixture(scope="module")
def qwen3_like(tiny_lm, tmp_path_factory):
    """A directory laid out as Qwen/Qwen3-Embedding-0.6B: Transformer + last-token Pooling + Normalize, prompts,
    left padding, a tokenizer that appends the end token; max_seq_length 16."""
    model, _ = tiny_lm
    tokenizer = _appending_tokenizer()
    directory = tmp_path_factory.mktemp("qwen3-like")
    Embedder(model, tokenizer, max_length=LIMIT, prompts={"query": QWEN3_QUERY_PROMPT, "document": ""}).save_pretrained(
        directory)
    return directory


# 13..18 characters around the limit, plus far beyond it (the character tokenizer: one token per character)
TEXTS = ["a" * 13, "b" * 14, "c" * 15, "d" * 16, "e" * 17, "the quick brown fox jumps over the lazy dog"]


def test_appending_tokenizer_detected_and_truncation_keeps_the_limit(tiny_lm, qwen3_like):
    model, plain = tiny_lm
    end_id = plain.convert_tokens_to_ids("<|endoftext|>")
    appending = Embedder.from_pretrained(qwen3_like)
    appended_here = Embedder(model, plain, max_length=LIMIT)
    assert appending.tokenizer_appends_end and not appended_here.tokenizer_appends_end
    for embedder in (appending, appended_here):
        ids = embedder.tokenize(TEXTS)
        assert [len(row) for row in ids] == [14, 15, 16, 16, 16, 16]
        assert all(row[-1] == end_id and row.count(end_id) == 1 for row in ids)
        assert ids[-1][:-1] == plain("the quick brown", add_special_tokens=False)["input_ids"]
        assert [len(row) for row in embedder.tokenize(TEXTS, truncate=False)] == [len(t) + 1 for t in TEXTS]
    assert appending.tokenize(TEXTS) == appended_here.tokenize(TEXTS)


def test_parity_with_sentence_transformers_at_the_limit(tiny_lm, qwen3_like):
    st = pytest.importorskip("sentence_transformers")
    model, plain = tiny_lm
    reference_model = st.SentenceTransformer(str(qwen3_like), device="cpu")
    assert reference_model.max_seq_length == LIMIT
    for prompt_name in (None, "query"):
        reference = reference_model.encode(TEXTS, batch_size=4, prompt_name=prompt_name)
        ours = Embedder.from_pretrained(qwen3_like).encode(TEXTS, batch_size=4, prompt_name=prompt_name)
        assert np.abs(ours - reference).max() <= 1e-5
        # a tokenizer without the post-processor gives the same embeddings (end token appended after the cut)
        without_post_processor = Embedder(model, plain, max_length=LIMIT, prompts={"query": QWEN3_QUERY_PROMPT})
        ours_plain = without_post_processor.encode(TEXTS, batch_size=4, prompt_name=prompt_name)
        assert np.abs(ours_plain - reference).max() <= 1e-5


def test_minilm_parity_at_the_limit(minilm_path):
    st = pytest.importorskip("sentence_transformers")
    embedder = Embedder.from_pretrained(minilm_path)
    word_ids = embedder.tokenizer("word", add_special_tokens=False)["input_ids"]
    assert len(word_ids) == 1
    texts = [" ".join(["word"] * n) for n in (252, 253, 254, 255, 300)]  # [CLS] + n + [SEP] around 256
    lengths = [len(ids) for ids in embedder.tokenize(texts)]
    assert lengths == [254, 255, 256, 256, 256]
    reference = st.SentenceTransformer(minilm_path, device="cpu").encode(texts, batch_size=2)
    assert np.abs(embedder.encode(texts, batch_size=2) - reference).max() <= 1e-5


def test_prompts_from_the_model_directory(qwen3_like, tmp_path):
    embedder = Embedder.from_pretrained(qwen3_like)
    assert embedder.prompts == {"query": QWEN3_QUERY_PROMPT, "document": ""}
    assert embedder.default_prompt_name is None
    query = embedder.encode(["sort"], prompt_name="query")
    np.testing.assert_allclose(query, embedder.encode([QWEN3_QUERY_PROMPT + "sort"]), atol=1e-6)
    np.testing.assert_allclose(query, embedder.encode(["sort"], prompt=QWEN3_QUERY_PROMPT), atol=1e-6)
    np.testing.assert_allclose(embedder.encode(["sort"], prompt_name="document"), embedder.encode(["sort"]),
                               atol=1e-6)
    with pytest.raises(ValueError, match="not a prompt of this model"):
        embedder.encode(["sort"], prompt_name="passage")
    with pytest.raises(ValueError, match="at most one"):
        embedder.encode(["sort"], prompt_name="query", instruction="Find code")

    config = json.loads((qwen3_like / "config_sentence_transformers.json").read_text())
    config["default_prompt_name"] = "query"
    (qwen3_like / "config_sentence_transformers.json").write_text(json.dumps(config))
    try:
        defaulted = Embedder.from_pretrained(qwen3_like)
        assert defaulted.default_prompt_name == "query"
        np.testing.assert_allclose(defaulted.encode(["sort"]), query, atol=1e-6)
    finally:
        config["default_prompt_name"] = None
        (qwen3_like / "config_sentence_transformers.json").write_text(json.dumps(config))


class _OverlapProbe:
    """Wraps a tokenizer and records how many calls run at once (each call lingers so that overlaps show)."""

    def __init__(self, tokenizer):
        self.inner, self.running, self.most_at_once = tokenizer, 0, 0
        self._count = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._count:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.002)
        try:
            return self.inner(*args, **kwargs)
        finally:
            with self._count:
                self.running -= 1

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_concurrent_tokenize_calls_never_share_the_tokenizer(qwen3_like):
    """A fast tokenizer keeps its truncation setting on one shared object: a server's concurrent truncating and
    non-truncating requests must not run inside it at once (they got each other's setting: spurious 400s)."""
    embedder = Embedder.from_pretrained(qwen3_like)
    expected = {cut: embedder.tokenize(TEXTS, truncate=cut) for cut in (True, False)}
    probe = embedder.tokenizer = _OverlapProbe(embedder.tokenizer)
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda i: (i % 2 == 0, embedder.tokenize(TEXTS, truncate=i % 2 == 0)), range(16)))
    assert probe.most_at_once == 1
    assert all(ids == expected[cut] for cut, ids in got)
