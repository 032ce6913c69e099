"""Qwen3-Embedding-style embedding and reranking (arXiv 2506.05176): models, training, merging, evaluation, serving.

- :class:`Embedder` (``qwenkit.embed.embedder``): last/mean/cls pooling, instruction-formatted queries, Matryoshka dims.
- :class:`Reranker` (``qwenkit.embed.reranker``): the Qwen3-Reranker yes/no prompt, score ``sigmoid(z_yes - z_no)``.
- :mod:`qwenkit.embed.losses`: InfoNCE with false-negative masking (paper eq. 1), Matryoshka loss.
- :mod:`qwenkit.embed.merge`: slerp of checkpoints; :mod:`qwenkit.embed.rerank_train`: reranker SFT (eq. 2).
- :mod:`qwenkit.embed.data`, :mod:`qwenkit.embed.metrics`, :mod:`qwenkit.embed.train`, :mod:`qwenkit.embed.serve`.

Names are imported lazily so that ``import qwenkit.embed`` does not load torch.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Embedder": "qwenkit.embed.embedder",
        "format_query": "qwenkit.embed.embedder",
        "Reranker": "qwenkit.embed.reranker",
        "format_rerank_prompt": "qwenkit.embed.reranker",
        "info_nce_loss": "qwenkit.embed.losses",
        "matryoshka_info_nce_loss": "qwenkit.embed.losses",
        "slerp": "qwenkit.embed.merge",
        "train_reranker": "qwenkit.embed.rerank_train",
        "slerp_state_dicts": "qwenkit.embed.merge",
    },
)
