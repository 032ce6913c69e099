"""``Embedder``: any local Hugging Face encoder or causal LM as a text embedder, Qwen3-Embedding style.

Causal LMs get last-token pooling over an appended ``<|endoftext|>`` (kept after truncation), explicit position ids
(so a text embeds the same alone and inside a left- or right-padded batch), and instruction-formatted queries;
encoders (BERT-like, e.g. all-MiniLM-L6-v2) read their pooling from the sentence-transformers files of the directory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qwenkit.embed.backends import BACKENDS, BackendName, Runner, build_runner, weights_key
from qwenkit.embed.pooling import POOLING_MODES, PoolingMode, check_dim, matryoshka, pool

DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"
ENDOFTEXT = "<|endoftext|>"
CONFIG_NAME = "qwenkit_embed.json"
ST_CONFIG_NAME = "config_sentence_transformers.json"
PROGRESS_MIN_TEXTS = 256


def format_query(task: str, query: str) -> str:
    """The Qwen3-Embedding query format, exactly ``f"Instruct: {task}\\nQuery:{query}"`` (no space after ``Query:``).

    Documents are embedded without any instruction.
    """
    return f"Instruct: {task}\nQuery:{query}"


def is_causal_lm(model: torch.nn.Module) -> bool:
    """True for ``*ForCausalLM`` models (and their PEFT wrappers); encoders such as ``BertModel`` are False."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(inner).__name__.endswith("ForCausalLM")


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The module returning ``last_hidden_state``: ``model.model`` of a causal LM, the model itself for an encoder."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(inner, "base_model", inner)
    return base if base is not None else inner


class Embedder:
    """Embed texts: ``encode(texts, instruction=..., dim=...) -> np.ndarray`` (float32, L2-normalised rows).

    ``model`` is a ``*ForCausalLM`` (pooled at the last real token, ``append_token`` ends every text) or an encoder
    (pooling ``mean``/``cls``/``last``). ``max_length`` counts every token including the appended one. ``prompts``
    (name -> text prepended to the input) and ``default_prompt_name`` are sentence-transformers' own
    (``config_sentence_transformers.json``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        pooling: PoolingMode | None = None,
        max_length: int = 512,
        normalize: bool = True,
        append_token: str | None | bool = True,
        backend: BackendName = "torch",
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        self.backend: BackendName = backend
        self._runner: tuple[tuple, Runner | None] | None = None
        self.model = model
        self.tokenizer = tokenizer
        self.causal = is_causal_lm(model)
        self.pooling: PoolingMode = pooling or ("last" if self.causal else "mean")
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of {POOLING_MODES}")
        if max_length < 2:
            raise ValueError(f"max_length={max_length} is too small; it must leave room for one token and the EOS")
        self.max_length = int(max_length)
        self.normalize = normalize
        self.prompts = dict(prompts or {})
        if default_prompt_name is not None and default_prompt_name not in self.prompts:
            raise ValueError(f"default_prompt_name {default_prompt_name!r} is not one of the prompts "
                             f"{sorted(self.prompts)}")
        self.default_prompt_name = default_prompt_name
        # a fast tokenizer keeps its truncation settings on the shared Rust object, so two threads tokenizing with
        # different settings (a server's concurrent requests) can get each other's: every call holds this lock
        self._tokenizer_lock = threading.Lock()
        self.append_token_id = self._resolve_append_token(append_token)
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else (self.append_token_id or 0)
        self.tokenizer_appends_end = self._tokenizer_appends(self.append_token_id)

    def _tokenizer_appends(self, token_id: int | None) -> bool:
        """True when the tokenizer's post-processor already ends every text with ``token_id`` (Qwen3-Embedding's
        tokenizer since QwenLM/Qwen3-Embedding #54)."""
        if token_id is None:
            return False
        with self._tokenizer_lock:
            probes = self.tokenizer(["a", "b c"])["input_ids"]
        return all(ids and ids[-1] == token_id for ids in probes)

    def _resolve_append_token(self, append_token: str | None | bool) -> int | None:
        if append_token is False or append_token is None or (append_token is True and self.pooling != "last"):
            return None
        if append_token is True:
            vocab = self.tokenizer.get_vocab()
            append_token = ENDOFTEXT if ENDOFTEXT in vocab else self.tokenizer.eos_token
            if append_token is None:
                raise ValueError("last-token pooling needs an end token, but the tokenizer has neither "
                                 f"{ENDOFTEXT!r} nor an eos_token; pass append_token='<token>'")
        vocab = self.tokenizer.get_vocab()
        if append_token not in vocab:  # membership, not the unk id: SmolLM2's unk token *is* <|endoftext|>
            raise ValueError(f"append_token {append_token!r} is not in the tokenizer's vocabulary")
        return int(vocab[append_token])

    @property
    def dimension(self) -> int:
        return int(backbone_of(self.model).config.hidden_size)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        gguf_file: str | None = None,
        pooling: PoolingMode | None = None,
        max_length: int | None = None,
        dtype: torch.dtype = torch.float32,
        normalize: bool = True,
        backend: BackendName = "torch",
    ) -> Embedder:
        """Load a local directory: a causal LM (HF or ``gguf_file``) or an encoder with sentence-transformers files.

        Pooling and ``max_length`` come from, in order: the arguments, ``qwenkit_embed.json``, the directory's
        ``1_Pooling/config.json`` and ``sentence_bert_config.json``, then the defaults (``last`` for causal LMs,
        ``mean`` for encoders; 512 tokens). ``prompts`` and ``default_prompt_name`` come from
        ``config_sentence_transformers.json``. ``backend`` picks how ``encode`` runs (``qwenkit.embed.backends``).
        """
        from qwenkit.lm.loading import ModelLoadError, load_causal_lm, load_tokenizer, offline_environment

        offline_environment()
        directory = Path(path).expanduser()
        saved = _read_json(directory / CONFIG_NAME)
        st_config = _read_json(directory / ST_CONFIG_NAME)
        st_pooling, st_max_length = _sentence_transformers_settings(directory)
        causal = gguf_file is not None or _config_is_causal(directory)
        if causal:
            model = load_causal_lm(directory, gguf_file=gguf_file, dtype=dtype)
        else:
            from transformers import AutoModel

            if not (directory / "config.json").is_file():
                raise ModelLoadError(f"{str(directory)!r} has no config.json; it is not a Hugging Face model directory")
            model = AutoModel.from_pretrained(str(directory), dtype=dtype, local_files_only=True)
            model.eval()
        tokenizer = load_tokenizer(directory, gguf_file=gguf_file)
        if causal:
            tokenizer.padding_side = "left"
        return cls(
            model,
            tokenizer,
            pooling=pooling or saved.get("pooling") or st_pooling,
            max_length=max_length or saved.get("max_length") or st_max_length or 512,
            normalize=normalize,
            append_token=saved.get("append_token", True),
            backend=backend,
            prompts=st_config.get("prompts") or {},
            default_prompt_name=st_config.get("default_prompt_name"),
        )

    def save_pretrained(self, path: str | Path) -> Path:
        """Write weights, tokenizer, ``qwenkit_embed.json`` and the sentence-transformers files (modules, pooling,
        ``max_seq_length``, prompts), so ``SentenceTransformer(path)`` loads the same embedder."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        append = None if self.append_token_id is None else self.tokenizer.convert_ids_to_tokens(self.append_token_id)
        settings = {"pooling": self.pooling, "max_length": self.max_length, "append_token": append}
        (directory / CONFIG_NAME).write_text(json.dumps(settings, indent=2), encoding="utf-8")
        st_mode = {"last": "pooling_mode_lasttoken", "mean": "pooling_mode_mean_tokens",
                   "cls": "pooling_mode_cls_token"}
        (directory / "1_Pooling").mkdir(exist_ok=True)
        pooling_config = {"word_embedding_dimension": self.dimension, st_mode[self.pooling]: True}
        (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2), encoding="utf-8")
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]
        (directory / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
        (directory / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": self.max_length, "do_lower_case": False}), encoding="utf-8"
        )
        st_config = {"prompts": self.prompts, "default_prompt_name": self.default_prompt_name,
                     "similarity_fn_name": "cosine"}
        (directory / ST_CONFIG_NAME).write_text(json.dumps(st_config, indent=2), encoding="utf-8")
        return directory

    def tokenize(self, texts: Sequence[str], max_length: int | None = None, *,
                 truncate: bool = True) -> list[list[int]]:
        """Token ids per text, at most ``max_length`` tokens each (``truncate=False``: never cut).

        This is what sentence-transformers and the Qwen3-Embedding card produce with a tokenizer whose post-processor
        appends ``<|endoftext|>``: the text is cut to ``max_length - 1`` tokens and the end token ends every row, so a
        truncated text keeps exactly ``max_length`` tokens. A tokenizer without that post-processor (older
        Qwen3-Embedding revisions, SmolLM2) gets the end token appended here after the same cut, so both kinds give
        identical ids. Without an end token (encoders) it is the tokenizer's own truncation, as in
        sentence-transformers. Thread-safe: concurrent calls with different truncation never see each other's.
        """
        max_length = max_length or self.max_length
        appends_here = self.append_token_id is not None and not self.tokenizer_appends_end
        cut = {"truncation": True, "max_length": max_length - 1 if appends_here else max_length} if truncate else {}
        with self._tokenizer_lock:
            encoded = self.tokenizer(list(texts), **cut)["input_ids"]
        return [[*ids, self.append_token_id] for ids in encoded] if appends_here else encoded

    def collate(self, batch_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad to the longest row on the tokenizer's padding side; returns ``(input_ids, attention_mask)``."""
        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
        left = self.tokenizer.padding_side == "left"
        for row, ids in enumerate(batch_ids):
            span = slice(width - len(ids), width) if left else slice(0, len(ids))
            input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
            mask[row, span] = 1
        return input_ids, mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled, un-normalised embeddings (batch, hidden) with autograd (training uses this)."""
        device = next(self.model.parameters()).device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        kwargs: dict[str, Any] = {}
        if self.causal:
            # positions count real tokens only, so left padding does not shift the text's positions
            kwargs["position_ids"] = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        output = backbone_of(self.model)(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        return pool(hidden, attention_mask, self.pooling)

    def embed(self, texts: Sequence[str], *, max_length: int | None = None) -> torch.Tensor:
        """Pooled, un-normalised embeddings of ``texts`` in one batch, with autograd (for losses)."""
        return self.forward(*self.collate(self.tokenize(texts, max_length)))

    def runner(self) -> Runner | None:
        """The inference function of ``self.backend`` for the current weights (rebuilt when they change)."""
        key = (id(self.model), weights_key(self.model))
        if self._runner is None or self._runner[0] != key:
            self._runner = (key, build_runner(self, self.backend))
        return self._runner[1]

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        instruction: str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        dim: int | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        normalize: bool | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed ``texts``; returns float32 ``(n, dim or full)`` (one row for a single string: ``(dim or full,)``).

        At most one of ``instruction`` (queries become ``format_query(instruction, text)``), ``prompt_name`` (a key
        of ``self.prompts``) and ``prompt`` (literal text prepended); with none, the ``default_prompt_name`` prompt
        if the model has one (sentence-transformers' rules). Texts are tokenized once, sorted by token length
        (longest first) and batched; BERT encoders run without any compute on padding (``backend='torch'``). The
        output keeps the input order. ``dim`` truncates then re-normalises (Matryoshka).
        """
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if any(not isinstance(t, str) for t in items):
            raise TypeError("encode() takes a string or a sequence of strings")
        items = self.apply_prompt(items, instruction=instruction, prompt_name=prompt_name, prompt=prompt)
        token_ids = self.tokenize(items, max_length) if items else []
        out = self.encode_token_ids(token_ids, dim=dim, batch_size=batch_size, normalize=normalize,
                                    show_progress=show_progress)
        return out[0] if single else out

    def resolve_prompt(self, *, instruction: str | None = None, prompt_name: str | None = None,
                       prompt: str | None = None) -> str | None:
        """The text prepended to every input: ``prompt``, ``self.prompts[prompt_name]``, the Qwen3 query prefix of
        ``instruction``, else the default prompt (None when there is none). Giving more than one raises."""
        given = [name for name, value in (("instruction", instruction), ("prompt_name", prompt_name),
                                          ("prompt", prompt)) if value is not None]
        if len(given) > 1:
            raise ValueError(f"pass at most one of instruction, prompt_name and prompt (got {', '.join(given)})")
        if prompt is not None:
            return prompt
        if instruction is not None:
            return format_query(instruction, "")
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return None
        if name not in self.prompts:
            known = ", ".join(repr(k) for k in sorted(self.prompts)) or "none"
            raise ValueError(f"prompt_name {name!r} is not a prompt of this model (its prompts: {known}); "
                             "pass prompt='...' for a literal prompt")
        return self.prompts[name]

    def apply_prompt(self, texts: Sequence[str], **prompt_args: str | None) -> list[str]:
        """``texts`` with the prompt chosen by :meth:`resolve_prompt` prepended."""
        prefix = self.resolve_prompt(**prompt_args)
        return list(texts) if not prefix else [prefix + t for t in texts]

    def encode_token_ids(
        self,
        token_ids: Sequence[Sequence[int]],
        *,
        dim: int | None = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed already-tokenized inputs (used as given: no end token is added, nothing is cut); ``(n, dim)``."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; it must be >= 1")
        full = self.dimension
        if dim is not None:
            check_dim(dim, full)
        normalize = self.normalize if normalize is None else normalize
        items = list(token_ids)
        if not items:
            return np.zeros((0, dim or full), dtype=np.float32)
        if any(len(ids) == 0 for ids in items):
            raise ValueError("an input has no tokens; every input needs at least one token")
        order = sorted(range(len(items)), key=lambda i: -len(token_ids[i]))
        out = np.empty((len(items), dim or full), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        if show_progress is None:
            show_progress = len(items) >= PROGRESS_MIN_TEXTS
        from qwenkit.core.progress import track

        was_training = self.model.training
        if was_training:  # each switch walks every module (~1 ms on MiniLM): a server's batches skip both
            self.model.eval()
        try:
            run = self.runner()
            with torch.inference_mode():
                for start in track(starts, "embedding", quiet=not show_progress or None):
                    rows = order[start : start + batch_size]
                    batch_ids = [token_ids[i] for i in rows]
                    pooled = (run(batch_ids) if run is not None else self.forward(*self.collate(batch_ids))).float()
                    out[rows] = matryoshka(pooled, dim, normalize=normalize).cpu().numpy()
        finally:
            if was_training:
                self.model.train()
        return out


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _config_is_causal(directory: Path) -> bool:
    config = _read_json(directory / "config.json")
    return any(name.endswith("ForCausalLM") for name in config.get("architectures") or [])


def _sentence_transformers_settings(directory: Path) -> tuple[PoolingMode | None, int | None]:
    """Pooling mode and max_seq_length from a sentence-transformers directory (None when absent)."""
    max_length = _read_json(directory / "sentence_bert_config.json").get("max_seq_length")
    pooling_dir = None
    for module in _read_json_list(directory / "modules.json"):
        if module.get("type", "").endswith("Pooling"):
            pooling_dir = directory / module.get("path", "")
    config = _read_json(pooling_dir / "config.json") if pooling_dir else {}
    modes = {"pooling_mode_lasttoken": "last", "pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
    chosen = [mode for key, mode in modes.items() if config.get(key)]
    if len(chosen) > 1:
        raise ValueError(f"{pooling_dir} enables several pooling modes {chosen}; qwenkit supports exactly one")
    if config.get("include_prompt") is False:
        raise ValueError(f"{pooling_dir / 'config.json'} sets include_prompt: false (pool without the prompt's "
                         "tokens), which qwenkit does not implement; set it to true")
    return (chosen[0] if chosen else None), max_length


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
