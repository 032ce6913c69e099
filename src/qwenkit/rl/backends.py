"""Rollout backends: who samples the responses of a rollout batch.

A backend turns prompts into a :class:`qwenkit.lm.sampling.SampleBatch` (ids, text, the sampler's per-token log-probs
of the temperature-scaled distribution) and receives the policy's new weights after each update.

- :class:`LocalBackend` samples with :func:`qwenkit.lm.sampling.sample` from the training model itself (the default,
  what every test and reproduction here uses).
- :class:`VLLMBackend` samples with vLLM from a local checkpoint directory and pushes updated weights into the
  engine. It is import-guarded and **not exercised here** (no GPU, no vLLM on this machine, and vLLM's internal
  weight-loading API moves between releases): treat it as a starting point for GPU users, verified against
  vLLM's documented ``LLM.generate`` and ``SamplingParams`` API only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from qwenkit.lm.sampling import SampleBatch, SamplingParams, sample


class RolloutBackend(Protocol):
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> SampleBatch: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...


class LocalBackend:
    """Sample from the training model in-process (batched, KV cache); weights are shared, so syncing is a no-op."""

    def __init__(self, model: torch.nn.Module, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> SampleBatch:
        return sample(getattr(self.model, "module", self.model), self.tokenizer, list(prompts), params)

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model


class VLLMBackend:
    """Sample with vLLM (``pip install vllm``; a GPU). ``path`` is the policy's local checkpoint directory.

    Log-probs are requested as ``processed_logprobs`` (after temperature), matching the trainer's convention; with an
    older vLLM that lacks ``logprobs_mode`` they are the raw model's, which differ at temperature != 1.
    """

    def __init__(self, path: str, tokenizer, *, gpu_memory_utilization: float = 0.4, **engine_kwargs):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError("VLLMBackend needs vLLM (pip install vllm) and a GPU; else use LocalBackend") from exc
        self._vllm = vllm
        self.tokenizer = tokenizer
        try:
            self.engine = vllm.LLM(model=path, gpu_memory_utilization=gpu_memory_utilization,
                                   logprobs_mode="processed_logprobs", **engine_kwargs)
        except TypeError:
            self.engine = vllm.LLM(model=path, gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> SampleBatch:
        sampling = self._vllm.SamplingParams(
            temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or -1,
            max_tokens=params.max_new_tokens, stop=params.stop or None, stop_token_ids=params.stop_token_ids,
            seed=params.seed, logprobs=0,
        )
        outputs = self.engine.generate(list(prompts), sampling, use_tqdm=False)
        prompt_ids, completion_ids, texts, logprobs, reasons = [], [], [], [], []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            prompt_ids.append(list(output.prompt_token_ids))
            completion_ids.append(ids)
            texts.append(completion.text)
            logprobs.append([step[token].logprob for step, token in zip(completion.logprobs, ids, strict=True)])
            reasons.append("length" if completion.finish_reason == "length" else "stop")
        return SampleBatch(prompt_ids, completion_ids, texts, logprobs, reasons)

    def sync_weights(self, model: torch.nn.Module) -> None:
        inner = getattr(model, "module", model)
        runner = self.engine.llm_engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(weights=list(inner.state_dict().items()))
