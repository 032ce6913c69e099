"""Batched sampling from a causal LM: left padding, KV cache, temperature / top-k / top-p, stop strings and tokens.

Returns token ids, text and the sampler's own per-token log-probabilities, which RL uses as the behaviour policy's
log-probs. The log-prob reported for a token is ``log softmax(z / T)`` of the *temperature-scaled, untruncated*
distribution (what a trainer recomputes with :func:`qwenkit.lm.logprobs.token_logprobs` at the same temperature);
top-k/top-p only decide which tokens can be drawn. With ``temperature=0`` decoding is greedy and log-probs are at T=1.

Any ``transformers`` ``LogitsProcessor`` can be passed (``logits_processors``): it sees ``(input_ids, scores)`` with the
full left-padded ids so far and may rewrite the scores, e.g. to force tokens (qwenkit.infer's thinking budget).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.lm.logprobs import position_ids_from_mask


class SamplingParams(StrictModel):
    max_new_tokens: int = Field(64, ge=0)
    temperature: float = Field(1.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = no top-k truncation")
    stop: list[str] = Field(default_factory=list, description="stop strings; the text is cut before the first match")
    stop_token_ids: list[int] | None = Field(
        None, description="token ids that end a row; default: the tokenizer's EOS and pad tokens"
    )
    seed: int | None = Field(None, description="seed of the sampler's own generator (None: torch's global RNG)")


@dataclass
class SampleBatch:
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    """Generated ids per row, including the stop token or the tokens that completed a stop string."""
    texts: list[str]
    """Decoded completions (special tokens skipped), cut before a matched stop string."""
    logprobs: list[list[float]]
    """Sampler log-probability of each generated id (same length as ``completion_ids``)."""
    finish_reasons: list[str] = field(default_factory=list)
    """"stop" (stop token or string) or "length"."""


def _default_stop_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    generation_eos = getattr(getattr(tokenizer, "generation_config", None), "eos_token_id", None)
    if isinstance(generation_eos, int):
        ids.add(generation_eos)
    return sorted(i for i in ids if i is not None)


def cache_argument_name(model: torch.nn.Module) -> str:
    """``cache`` in transformers >= 5.2x, ``past_key_values`` before (the KV-cache argument was renamed)."""
    parameters = inspect.signature(type(getattr(model, "module", model)).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k and outside the smallest set with cumulative probability >= top_p to -inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass strictly before it already reaches top_p (the first token always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) with every row right-aligned."""
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids, mask


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    params: SamplingParams | None = None,
    *,
    logits_processors: Sequence = (),
) -> SampleBatch:
    """Generate a completion for every prompt (strings are tokenized without adding special tokens)."""
    params = params or SamplingParams()
    prompt_ids = [
        list(tokenizer(p, add_special_tokens=False)["input_ids"]) if isinstance(p, str) else list(p) for p in prompts
    ]
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_list = params.stop_token_ids if params.stop_token_ids is not None else _default_stop_ids(tokenizer)
    stop_ids = torch.tensor(stop_list)
    device = next(model.parameters()).device
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)

    ids, mask = left_pad(prompt_ids, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    batch = ids.shape[0]
    completions: list[list[int]] = [[] for _ in range(batch)]
    logprobs: list[list[float]] = [[] for _ in range(batch)]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    reasons = ["length"] * batch
    texts = [""] * batch
    max_stop_chars = max((len(s) for s in params.stop), default=0)
    was_training = model.training
    model.eval()
    past = None
    cache_kwarg = cache_argument_name(model)
    # MoE models must not compute their router aux loss on cached single-token steps
    extra_kwargs = {"output_router_logits": False} if getattr(model.config, "output_router_logits", False) else {}
    step_ids, step_mask = ids, mask
    position_ids = position_ids_from_mask(mask)
    try:
        for _ in range(params.max_new_tokens):
            out = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=True,
                **{cache_kwarg: past},
                **extra_kwargs,
            )
            past = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            logits = out.logits[:, -1, :].float()
            for processor in logits_processors:
                logits = processor(ids, logits)
            if params.temperature == 0:
                token = logits.argmax(-1)
                scaled = logits
            else:
                scaled = logits / params.temperature
                probs = torch.softmax(filter_logits(scaled, params.top_k, params.top_p), dim=-1)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            token_logp = torch.log_softmax(scaled, dim=-1).gather(-1, token[:, None]).squeeze(-1)
            token = torch.where(finished, torch.full_like(token, pad_id), token)
            for row in torch.nonzero(~finished).flatten().tolist():
                completions[row].append(int(token[row]))
                logprobs[row].append(float(token_logp[row]))
                if bool((stop_ids == token[row].cpu()).any()):
                    finished[row] = True
                    reasons[row] = "stop"
                elif max_stop_chars:
                    tail = tokenizer.decode(completions[row][-(max_stop_chars + 8) :], skip_special_tokens=True)
                    if any(s in tail for s in params.stop):
                        finished[row] = True
                        reasons[row] = "stop"
            ids = torch.cat([ids, token[:, None]], dim=1)
            step_mask = torch.ones((batch, 1), dtype=mask.dtype, device=device)
            mask = torch.cat([mask, step_mask], dim=1)
            position_ids = position_ids[:, -1:] + 1
            step_ids = token[:, None]
            if bool(finished.all()):
                break
    finally:
        model.train(was_training)
    for row in range(batch):
        text = tokenizer.decode(completions[row], skip_special_tokens=True)
        cut = min((text.find(s) for s in params.stop if s in text), default=-1)
        texts[row] = text[:cut] if cut >= 0 else text
    return SampleBatch(prompt_ids, completions, texts, logprobs, reasons)
