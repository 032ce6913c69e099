from __future__ import annotations

import pytest
import torch

from qwenkit.core.config import ConfigError, load_config
from qwenkit.core.runs import RunDir
from qwenkit.embed.embedder import Embedder
from qwenkit.embed.train import EmbedTrainConfig, grad_cache_backward, make_step_fn, train_embedder

QUERIES = ["add numbers", "sort a list", "open a file", "parse json", "join paths", "read lines"]
DOCS = ["def add(a, b): return a + b", "sorted(x)", "open(p)", "json.loads(s)", "os.path.join(a, b)", "f.readlines()"]
NEGS = [["open(p)"], ["json.loads(s)"], ["sorted(x)"], ["f.readlines()"], ["def add(a, b): return a + b"],
        ["sorted(x)"]]


def _batch():
    table = {d: i for i, d in enumerate(DOCS)}
    return {"queries": QUERIES, "positives": DOCS, "negatives": NEGS,
            "positive_ids": torch.tensor([table[d] for d in DOCS]),
            "negative_ids": torch.tensor([[table[n[0]]] for n in NEGS])}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_grad_cache_gives_full_batch_gradients():
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, "nano", seed=1).train()  # Qwen3 has no dropout: passes are deterministic
    embedder = Embedder(model, tokenizer, max_length=48)
    config = load_config(EmbedTrainConfig, {"model": "tiny-qwen3", "batch_size": 6})
    step = make_step_fn(embedder, config)
    loss, _ = step(model, _batch())
    loss.backward()
    full = _grads(model)
    model.zero_grad(set_to_none=True)
    cached_config = load_config(EmbedTrainConfig, {"model": "tiny-qwen3", "batch_size": 6, "chunk_size": 4})
    cached_loss, _ = make_step_fn(embedder, cached_config)(model, _batch())
    cached = _grads(model)
    assert cached_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert set(full) == set(cached) and len(full) > 5
    for name in full:
        assert torch.allclose(full[name], cached[name], atol=1e-5, rtol=1e-4), name


def test_grad_cache_restores_rng_for_dropout(minilm_path):
    embedder = Embedder.from_pretrained(minilm_path, max_length=32)
    embedder.model.train()  # BERT dropout on: both passes must draw the same masks
    groups = [(QUERIES, 16), (DOCS, 32)]

    def loss_fn(q, d):
        return -(torch.nn.functional.normalize(q) * torch.nn.functional.normalize(d)).sum()

    torch.manual_seed(0)
    reference = loss_fn(*[embedder.embed(t, max_length=m) for t, m in groups])
    reference.backward()
    full = _grads(embedder.model)
    embedder.model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    grad_cache_backward(embedder, groups, loss_fn, chunk_size=6)
    cached = _grads(embedder.model)
    for name in full:
        assert torch.allclose(full[name], cached[name], atol=1e-4, rtol=1e-3), name


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="matryoshka_weights"):
        load_config(EmbedTrainConfig, {"loss": {"matryoshka_dims": [32], "matryoshka_weights": [1.0]}})
    with pytest.raises(ConfigError, match="mixture.0.task"):
        load_config(EmbedTrainConfig, {"mixture": [{"task": "msmarco"}]})


def test_train_tiny_model_with_resume(tmp_path, stdlib_cache):
    overrides = {"model": "tiny-qwen3", "cache_dir": str(stdlib_cache), "batch_size": 4, "max_length": 48,
                 "query_max_length": 32, "mixture": [{"task": "stdlib", "max_pairs": 64}],
                 "loss": {"matryoshka_dims": [16]}, "eval_max_queries": 20, "eval_dims": [16],
                 "trainer": {"max_steps": 4, "lr": 1e-3, "checkpoint_every": 2}}
    config = load_config(EmbedTrainConfig, overrides)
    result = train_embedder(config, run=RunDir(tmp_path / "a"), quiet=True)
    assert len(result.history) == 4 and all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert set(result.evaluation["stdlib"]) == {16, 32}
    reloaded = Embedder.from_pretrained(result.model_dir)
    assert reloaded.causal and reloaded.pooling == "last"
    # kill after step 2 (simulated by a 2-step run), resume to 4: identical weights
    short = load_config(EmbedTrainConfig, {**overrides, "trainer": {**overrides["trainer"], "max_steps": 2}})
    train_embedder(short, run=RunDir(tmp_path / "b"), quiet=True, evaluate=False)
    resumed = train_embedder(config, run=RunDir(tmp_path / "b"), resume=True, quiet=True, evaluate=False)
    for (name, p), q in zip(result.embedder.model.state_dict().items(), resumed.embedder.model.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name


def test_grad_cache_through_the_loop_manual_backward_with_accumulation():
    """train_loop(manual_backward=True) + GradCache chunks + 2 accumulated micro-batches == the one-pass step."""
    from qwenkit.core.loop import TrainConfig, train_loop
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    tokenizer = build_synthetic_tokenizer()
    trainer = TrainConfig(max_steps=1, grad_accum_steps=2, lr=0.5, max_grad_norm=None)
    weights = {}
    for chunk_size in (None, 4):
        model = tiny_qwen3_for(tokenizer, "nano", seed=1)
        embedder = Embedder(model, tokenizer, max_length=48)
        config = load_config(EmbedTrainConfig, {"model": "tiny-qwen3", "batch_size": 6, "chunk_size": chunk_size})
        train_loop(model, make_step_fn(embedder, config), lambda index: _batch(), trainer, quiet=True,
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.5), manual_backward=chunk_size is not None)
        weights[chunk_size] = {k: v.clone() for k, v in model.state_dict().items()}
    start = tiny_qwen3_for(tokenizer, "nano", seed=1).state_dict()
    assert any(not torch.equal(start[k], weights[None][k]) for k in start)
    for name, value in weights[None].items():
        assert torch.allclose(value, weights[4][name], atol=1e-5), name
