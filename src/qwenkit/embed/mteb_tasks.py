"""Our offline retrieval tasks as MTEB tasks, and ``Embedder`` as an MTEB encoder (``pip install mteb``).

``mteb_task(task)`` turns a :class:`~qwenkit.embed.data.RetrievalTask` (stdlib code, WordNet, or any in-memory task)
into an ``mteb.abstasks.retrieval.AbsTaskRetrieval`` whose data is loaded from memory (no hub access);
``MtebEmbedder`` wraps an :class:`~qwenkit.embed.embedder.Embedder` (queries get the task's instruction unless
``use_instruction=False``; documents never do). ``run_mteb`` evaluates with ``mteb.evaluate`` without a results cache
and returns MTEB's own scores (``ndcg_at_10``, ``mrr_at_10``, ``recall_at_100``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from qwenkit.embed.data import RetrievalTask
    from qwenkit.embed.embedder import Embedder


def _require_mteb():
    try:
        import mteb
    except ImportError as exc:
        raise ImportError("MTEB evaluation needs the mteb package: pip install mteb (tested with 2.26.24)") from exc
    return mteb


def mteb_task(task: RetrievalTask):
    """An MTEB retrieval task (split ``test``, main score ``ndcg_at_10``) holding ``task``'s queries, corpus, qrels."""
    _require_mteb()
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    name = f"Qwenkit{task.name.capitalize()}Retrieval"
    metadata = TaskMetadata(
        name=name, description=f"qwenkit offline task {task.name!r}: {task.instruction} ({task.source})",
        reference="https://github.com/qwenkit/qwenkit/blob/main/docs/embed.md",
        dataset={"path": f"local/qwenkit-{task.name}", "revision": task.sha256[:12] or "local"},
        type="Retrieval", category="t2t", modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"],
        main_score="ndcg_at_10", date=("2024-01-01", "2024-12-31"), domains=[], task_subtypes=[],
        license="not specified", annotations_creators="derived", dialect=[], sample_creation="found",
        bibtex_citation="")

    class LocalRetrieval(AbsTaskRetrieval):
        def load_data(self, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            split = RetrievalSplitData(
                queries=Dataset.from_list([{"id": q, "text": t} for q, t in task.queries.items()]),
                corpus=Dataset.from_list([{"id": d, "title": "", "text": t} for d, t in task.corpus.items()]),
                relevant_docs={q: dict(docs) for q, docs in task.qrels.items()},
                top_ranked=None)
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    LocalRetrieval.metadata = metadata
    LocalRetrieval.__name__ = LocalRetrieval.__qualname__ = name
    return LocalRetrieval()


class MtebEmbedder:
    """``mteb``'s encoder protocol over an :class:`Embedder` (cosine similarity; rows are L2-normalised)."""

    def __init__(self, embedder: Embedder, *, instructions: dict[str, str] | None = None,
                 use_instruction: bool = True, batch_size: int = 32, dim: int | None = None, name: str = "qwenkit"):
        from mteb.models.model_meta import ModelMeta

        self.embedder, self.instructions, self.use_instruction = embedder, dict(instructions or {}), use_instruction
        self.batch_size, self.dim = batch_size, dim
        self.mteb_model_meta = ModelMeta.create_empty(overwrites={
            "name": f"qwenkit/{name}", "revision": "local", "similarity_fn_name": "cosine",
            "embed_dim": dim or embedder.dimension, "framework": ["PyTorch"]})

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str, prompt_type=None,
               **kwargs: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in _texts(batch)]
        is_query = prompt_type is not None and getattr(prompt_type, "value", prompt_type) == "query"
        instruction = self.instructions.get(task_metadata.name) if is_query and self.use_instruction else None
        return self.embedder.encode(texts, instruction=instruction, dim=self.dim, batch_size=self.batch_size,
                                    show_progress=False)

    def similarity(self, embeddings1, embeddings2):
        import torch

        return torch.as_tensor(np.asarray(embeddings1) @ np.asarray(embeddings2).T)

    def similarity_pairwise(self, embeddings1, embeddings2):
        import torch

        return torch.as_tensor((np.asarray(embeddings1) * np.asarray(embeddings2)).sum(-1))


def _texts(batch: Any) -> list[str]:
    if isinstance(batch, dict):
        return list(batch["text"])
    return [str(x) for x in batch]


def run_mteb(embedder: Embedder, tasks: Sequence[RetrievalTask], *, use_instruction: bool = True,
             dim: int | None = None, batch_size: int = 32) -> dict[str, dict[str, float]]:
    """Evaluate through ``mteb.evaluate`` (no results cache); returns ``{task name: MTEB scores of split test}``."""
    mteb = _require_mteb()
    wrapped = {t.name: mteb_task(t) for t in tasks}
    model = MtebEmbedder(embedder, instructions={w.metadata.name: t.instruction
                                                 for t, w in zip(tasks, wrapped.values(), strict=True)},
                         use_instruction=use_instruction, dim=dim, batch_size=batch_size)
    result = mteb.evaluate(model, tasks=list(wrapped.values()), cache=None, show_progress_bar=False)
    scores: dict[str, dict[str, float]] = {}
    for task_result in result.task_results:
        name = next(n for n, w in wrapped.items() if w.metadata.name == task_result.task_name)
        split = task_result.scores["test"][0]
        scores[name] = {k: float(v) for k, v in split.items() if isinstance(v, int | float)}
    return scores
