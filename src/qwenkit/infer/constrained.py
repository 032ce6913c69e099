"""Constrained decoding for ``response_format`` (JSON mode and JSON schemas) with llguidance.

`llguidance <https://github.com/guidance-ai/llguidance>`_ compiles a JSON schema into a grammar and, at every decoding
step, gives the set of tokens that keep the output a prefix of a string the grammar accepts (a bitmask over the
vocabulary). :class:`GrammarProcessor` applies that mask to one request's logits (every disallowed token gets
``-inf``) and feeds the sampled tokens back to the matcher; once the JSON is complete only an end-of-turn token is
allowed, so the reply is exactly one JSON value that validates against the schema.

- ``{"type": "json_object"}``: any JSON object (the schema ``{"type": "object"}``).
- ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``: the schema is first checked against
  its JSON Schema meta-schema (``jsonschema``), then compiled by llguidance; either failure is the client's error
  and names the place in the schema.

JSON is generated compactly (no whitespace between tokens: ``whitespace_flexible`` off), so a model cannot loop on
blank space. With thinking on, the mask starts after the model (or the thinking budget) closes ``</think>``; up to
two blank characters may then precede the JSON (Qwen3 writes ``</think>\\n\\n``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qwenkit.infer.tools import TOOL_CALL_END, TOOL_CALL_START
from qwenkit.lm.chat import THINK_END

JSON_OPTIONS = {"whitespace_flexible": False}


class SchemaError(ValueError):
    """A ``response_format`` the server cannot compile; ``param`` is the request path it concerns."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def check_schema(schema: dict[str, Any], param: str) -> None:
    """Raise :class:`SchemaError` when ``schema`` is not a valid JSON Schema (checked against its meta-schema)."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        path = f"{param}.{where}" if where else param
        raise SchemaError(f"{path} is not a valid JSON Schema: {exc.message}", path) from None


class _VocabularyWrapper:
    """What ``llguidance.LLTokenizer`` needs of a tokenizer it cannot read itself: the bytes of every token id.

    Used for tokenizers whose decoder llguidance does not know (e.g. the character-level synthetic tokenizer);
    special tokens get llguidance's marker byte ``0xff`` so that they never match text.
    """

    def __init__(self, tokenizer, vocab_size: int, eos_ids: Sequence[int]):
        special = set(tokenizer.all_special_ids)
        special.update(i for i, token in tokenizer.added_tokens_decoder.items() if token.special)
        known = len(tokenizer)
        self.tokens = []
        for i in range(vocab_size):
            if i >= known:
                self.tokens.append(b"\xff<unused_%d>" % i)
            elif i in special:
                self.tokens.append(b"\xff" + tokenizer.convert_ids_to_tokens(i).encode("utf-8"))
            else:
                self.tokens.append(tokenizer.decode([i], skip_special_tokens=False).encode("utf-8"))
        self.special_token_ids = sorted(i for i in special if i < vocab_size)
        self.eos_token_id = eos_ids[0]
        self.bos_token_id = None
        self._tokenizer = tokenizer

    def __call__(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])


class GrammarCompiler:
    """Compiles ``response_format`` objects for one model; the llguidance tokenizer is built once, on first use.

    ``vocab_size`` is the model's logits width (it may exceed ``len(tokenizer)``); ``stop_ids`` the end-of-turn ids
    the grammar allows once the JSON is complete.
    """

    def __init__(self, tokenizer, vocab_size: int, stop_ids: Sequence[int]):
        self.tokenizer, self.vocab_size, self.stop_ids = tokenizer, vocab_size, sorted(stop_ids)
        ids = tokenizer(THINK_END, add_special_tokens=False)["input_ids"]
        self.think_end_id = ids[0] if len(ids) == 1 else None
        self._ll_tokenizer = None
        self._lock = threading.Lock()

    def ll_tokenizer(self):
        import llguidance
        import llguidance.hf

        with self._lock:
            if self._ll_tokenizer is None:
                try:
                    self._ll_tokenizer = llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.vocab_size,
                                                                      eos_token=self.stop_ids)
                except ValueError:
                    wrapper = _VocabularyWrapper(self.tokenizer, self.vocab_size, self.stop_ids)
                    self._ll_tokenizer = llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper),
                                                                n_vocab=self.vocab_size, eos_token=self.stop_ids)
            return self._ll_tokenizer

    def grammar(self, schema: dict[str, Any], *, param: str, after_thinking: bool) -> str:
        """The llguidance grammar for one JSON value of ``schema``; ``after_thinking`` lets up to two blanks precede
        it."""
        return self._compile(schema, param=param, after_thinking=after_thinking)

    def tool_call_grammar(self, tools: Sequence[dict[str, Any]], *, after_thinking: bool) -> str:
        """The grammar of one Qwen3 call block, ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``,
        for one of ``tools`` (OpenAI function specs), its arguments following that function's ``parameters``."""
        choices = []
        for i, tool in enumerate(tools):
            function = tool["function"]
            parameters = function.get("parameters") or {"type": "object"}
            check_schema(parameters, f"tools.{i}.function.parameters")
            choices.append({"type": "object", "properties": {"name": {"const": function["name"]},
                                                             "arguments": parameters},
                            "required": ["name", "arguments"], "additionalProperties": False})
        schema = choices[0] if len(choices) == 1 else {"anyOf": choices}
        return self._compile(schema, param="tools", after_thinking=after_thinking,
                             before=TOOL_CALL_START + "\n", after="\n" + TOOL_CALL_END)

    def _compile(self, schema: dict[str, Any], *, param: str, after_thinking: bool, before: str = "",
                 after: str = "") -> str:
        import json

        import llguidance

        if not (after_thinking or before or after):
            compiled = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        else:
            body = {**schema, "x-guidance": {**JSON_OPTIONS, **schema.get("x-guidance", {})}}
            parts = (['/[ \\n]{0,2}/'] if after_thinking else []) + ([json.dumps(before)] if before else [])
            parts += ["value"] + ([json.dumps(after)] if after else [])
            compiled = llguidance.LLMatcher.grammar_from_lark(
                f"start: {' '.join(parts)}\nvalue: %json {json.dumps(body)}\n")
        problem = llguidance.LLMatcher.validate_grammar(compiled, self.ll_tokenizer())
        if problem:
            raise SchemaError(f"{param} cannot be used for constrained decoding: {problem}", param)
        return compiled

    def processor(self, grammar: str, *, after_thinking: bool, param: str = "response_format") -> GrammarProcessor:
        """A fresh matcher for one request (each choice needs its own); ``param`` names the field in errors."""
        import llguidance

        if after_thinking and self.think_end_id is None:
            raise SchemaError(f"{param}: constrained decoding with thinking on needs a tokenizer whose </think> is one "
                              "token; switch thinking off (chat_template_kwargs.enable_thinking=false)", param)
        matcher = llguidance.LLMatcher(self.ll_tokenizer(), grammar, log_level=0)
        return GrammarProcessor(matcher, self.vocab_size, self.stop_ids,
                                think_end_id=self.think_end_id if after_thinking else None)


class GrammarProcessor:
    """Per-request logits processor ``(input_ids[1, n], scores[1, V]) -> scores`` masking tokens the grammar forbids.

    The first call sees the prompt (its length marks where generation starts); every later call feeds the tokens
    generated since to the matcher, then allows only the tokens the matcher accepts next. ``think_end_id``: the
    mask starts after the first generated ``</think>``. A matcher that has entered an error state (a token forced by
    another processor that the grammar forbids) allows only the end-of-turn ids, so the reply ends.
    """

    def __init__(self, matcher, vocab_size: int, stop_ids: Sequence[int], *, think_end_id: int | None = None):
        self.matcher, self.vocab_size = matcher, vocab_size
        self.stop_ids = torch.tensor(sorted(stop_ids), dtype=torch.long)
        self.think_end_id = think_end_id
        self.prompt_length: int | None = None
        self.start: int | None = None
        self.consumed = 0

    def _allowed(self) -> torch.Tensor:
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        return torch.from_numpy(np.unpackbits(bits, bitorder="little")[: self.vocab_size].astype(bool))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        history = input_ids[0]
        if self.prompt_length is None:
            self.prompt_length = int(history.shape[0])
        if self.start is None:
            if self.think_end_id is None:
                self.start = self.prompt_length
            else:
                closed = torch.nonzero(history[self.prompt_length :] == self.think_end_id).flatten()
                if not closed.numel():
                    return scores
                self.start = self.prompt_length + int(closed[0]) + 1
        for token in history[self.start + self.consumed :].tolist():
            self.consumed += 1
            if not self.matcher.consume_token(token):
                break
        scores = scores.clone()
        if self.matcher.is_error():
            allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
            allowed[self.stop_ids] = True
        else:
            allowed = self._allowed()
        width = min(scores.shape[-1], allowed.shape[0])
        scores[0, :width] = scores[0, :width].masked_fill(~allowed[:width], float("-inf"))
        scores[0, width:] = float("-inf")
        return scores
