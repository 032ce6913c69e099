"""``Reranker``: a causal LM as a point-wise yes/no judge with the Qwen3-Reranker prompt (paper section 2).

The prompt is built in-library (a missing template is the usual cause of near-random reranker scores: vLLM #20478):
``RERANK_PREFIX + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}" + RERANK_SUFFIX``.
Only the body is truncated (from its end, i.e. the document's tail first); the prefix and the suffix with the empty
think block are always kept. Score = ``sigmoid(z_yes - z_no)`` at the last position.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qwenkit.embed.embedder import DEFAULT_TASK, backbone_of

RERANK_SYSTEM = (
    'Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
    'Note that the answer can only be "yes" or "no".'
)
RERANK_PREFIX = f"<|im_start|>system\n{RERANK_SYSTEM}<|im_end|>\n<|im_start|>user\n"
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def format_rerank_body(instruction: str, query: str, document: str) -> str:
    """The user-turn body: ``f"<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}"``."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


def format_rerank_prompt(instruction: str, query: str, document: str) -> str:
    """The whole Qwen3-Reranker input: system turn, user turn with the body, assistant turn with an empty think."""
    return RERANK_PREFIX + format_rerank_body(instruction, query, document) + RERANK_SUFFIX


def yes_no_score(logits: torch.Tensor, yes_id: int, no_id: int) -> torch.Tensor:
    """``P(yes) = exp(z_yes) / (exp(z_yes) + exp(z_no)) = sigmoid(z_yes - z_no)`` over the last dim of ``logits``.

    The two-way softmax of the Qwen3-Reranker README (``log_softmax([z_no, z_yes])[1].exp()``) written as a sigmoid
    of the logit difference, which is exact and never overflows.
    """
    return torch.sigmoid(logits[..., yes_id].float() - logits[..., no_id].float())


def reranker_loss(logits_no_yes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Reranker SFT loss (paper eq. 2): ``L = -mean log p(l | P(q, d))`` with ``p`` the softmax over ``[z_no, z_yes]``.

    ``logits_no_yes``: (batch, 2) last-position logits of the ``no`` and ``yes`` tokens; ``labels``: 1 = yes, 0 = no.
    """
    return torch.nn.functional.cross_entropy(logits_no_yes.float(), labels.long())


def single_token_id(tokenizer: Any, word: str) -> int:
    """The id of ``word`` when it is one token of ``tokenizer``; raises ``ValueError`` otherwise."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the reranker needs {word!r} to be a single token, but this tokenizer splits it into {ids}")
    return int(ids[0])


class Reranker:
    """Score (query, document) pairs with a causal LM: ``score(query, docs) -> np.ndarray`` of P(yes) in [0, 1]."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, max_length: int = 512,
                 instruction: str = DEFAULT_TASK):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.instruction = instruction
        self.yes_id = single_token_id(tokenizer, "yes")
        self.no_id = single_token_id(tokenizer, "no")
        self.prefix_ids = tokenizer(RERANK_PREFIX, add_special_tokens=False)["input_ids"]
        self.suffix_ids = tokenizer(RERANK_SUFFIX, add_special_tokens=False)["input_ids"]
        if len(self.prefix_ids) + len(self.suffix_ids) + 1 > self.max_length:
            raise ValueError(f"max_length={max_length} leaves no room for the body: the prompt's fixed parts take "
                             f"{len(self.prefix_ids) + len(self.suffix_ids)} tokens")
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else int(tokenizer.eos_token_id or 0)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, gguf_file: str | None = None, max_length: int = 512,
                        instruction: str = DEFAULT_TASK, dtype: torch.dtype = torch.float32) -> Reranker:
        from qwenkit.lm.loading import load_causal_lm, load_tokenizer, offline_environment

        offline_environment()
        model = load_causal_lm(path, gguf_file=gguf_file, dtype=dtype)
        return cls(model, load_tokenizer(path, gguf_file=gguf_file), max_length=max_length, instruction=instruction)

    def prompt_ids(self, query: str, document: str, instruction: str | None = None, *,
                   truncate: bool = True) -> list[int]:
        """Token ids of one prompt: prefix + body (truncated from its end to fit ``max_length``) + suffix.

        ``truncate=False`` keeps the whole body (the prompt may then exceed ``max_length``; servers refuse it).
        """
        body = format_rerank_body(instruction or self.instruction, query, document)
        body_ids = self.tokenizer(body, add_special_tokens=False)["input_ids"]
        room = self.max_length - len(self.prefix_ids) - len(self.suffix_ids)
        return [*self.prefix_ids, *(body_ids[:room] if truncate else body_ids), *self.suffix_ids]

    def logits(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Last-position ``[z_no, z_yes]`` logits (batch, 2) of left-padded prompts, with autograd."""
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids):] = 1
        device = next(self.model.parameters()).device
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        hidden = backbone_of(self.model)(input_ids=input_ids, attention_mask=mask, position_ids=positions)
        last = hidden.last_hidden_state[:, -1]  # left padding: the last column is every row's last real token
        head = self.model.get_output_embeddings()
        weight = head.weight[[self.no_id, self.yes_id]]
        bias = head.bias[[self.no_id, self.yes_id]] if getattr(head, "bias", None) is not None else None
        return torch.nn.functional.linear(last, weight, bias)

    def score(self, query: str, documents: Sequence[str], *, instruction: str | None = None,
              batch_size: int = 8, raw: bool = False) -> np.ndarray:
        """P(yes) for each document given ``query`` (float32, input order); ``raw``: the log-odds instead."""
        return self.score_pairs([(query, d) for d in documents], instruction=instruction, batch_size=batch_size,
                                raw=raw)

    def score_pairs(self, pairs: Sequence[tuple[str, str]], *, instruction: str | None = None,
                    batch_size: int = 8, raw: bool = False) -> np.ndarray:
        """P(yes) = sigmoid(z_yes - z_no) for each (query, document) pair (``raw``: ``z_yes - z_no``, the log-odds);
        batches sorted by length."""
        prompts = [self.prompt_ids(q, d, instruction) for q, d in pairs]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out = np.empty(len(prompts), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    no_yes = self.logits([prompts[i] for i in rows])
                    scores = (no_yes[:, 1] - no_yes[:, 0]).float() if raw else yes_no_score(no_yes, 1, 0)
                    out[rows] = scores.cpu().numpy()
        finally:
            self.model.train(was_training)
        return out
