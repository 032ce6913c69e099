"""A Bradley-Terry reward model on any causal LM: a bias-free scalar head read at the last attended token.

The network is a transformers ``AutoModelForSequenceClassification`` (``num_labels=1``) whose backbone weights are
copied from the causal LM, so a trained model saves with ``save_pretrained`` and reloads with
``AutoModelForSequenceClassification.from_pretrained``, giving the same scores (transformers pools at the last token
that is not ``pad_token_id``; qwenkit pools at the last attended token and makes sure it is the reward token).

Text is rendered as WorldPM does (README "Key Notes"): the chat template with an empty system turn that is kept, the
response as the final assistant turn, and the reward read at the end-of-sequence token, appended when missing (TRL's
``RewardTrainer`` and OpenRLHF do the same). The reward token must differ from the pad token: a reward read at a PAD
position is the failure that TRL #937 and #3750 report, and transformers' pooling would skip it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qwenkit.reward.errors import RewardModelError

FORMAT_FILE = "reward_format.json"
Message = Mapping[str, Any]


@dataclass(frozen=True)
class RewardFormat:
    """How a (conversation, response) becomes tokens; saved next to the weights as ``reward_format.json``."""

    reward_token: str
    max_length: int = 512
    system_prompt: str = ""


def response_messages(prompt: str | Sequence[Message], response: str, system_prompt: str = "") -> list[dict]:
    """``[system, *conversation, assistant]``: a string prompt is one user turn; the system turn is always present."""
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if not turns or turns[0].get("role") != "system":
        turns.insert(0, {"role": "system", "content": system_prompt})
    return [*turns, {"role": "assistant", "content": response}]


def encode_response(tokenizer: Any, prompt: str | Sequence[Message], response: str, fmt: RewardFormat) -> list[int]:
    """Token ids of one scored sequence, ending with the reward token (appended when the template does not end so).

    Sequences longer than ``fmt.max_length`` keep their last tokens, so the reward token is never cut off.
    """
    from qwenkit.lm.chat import render_chat

    text = render_chat(
        response_messages(prompt, response, fmt.system_prompt),
        tokenizer=tokenizer,
        add_generation_prompt=False,
        enable_thinking=False,
    ).rstrip("\n")
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    reward_id = tokenizer.convert_tokens_to_ids(fmt.reward_token)
    if not ids or ids[-1] != reward_id:
        ids.append(reward_id)
    return ids[-fmt.max_length :]


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of a batch padded with ``pad_id`` on ``side`` ("right" or "left")."""
    if side not in ("right", "left"):
        raise ValueError(f"padding side must be 'right' or 'left', got {side!r}")
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        input_ids[row, span] = torch.tensor(list(seq), dtype=torch.long)
        attention_mask[row, span] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def last_attended_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position with ``attention_mask == 1`` in each row (left or right padding alike)."""
    if bool((attention_mask.sum(-1) == 0).any()):
        raise ValueError("a row of the batch has no attended token; every scored sequence needs at least one token")
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.to(positions.dtype)).argmax(-1)


def reward_format_for(tokenizer: Any, max_length: int = 512, reward_token: str | None = None) -> RewardFormat:
    """The format for ``tokenizer``: the reward token is its EOS unless named; it must not be the pad token."""
    token = reward_token or tokenizer.eos_token
    if token is None:
        raise RewardModelError("the tokenizer has no eos_token; name the reward token (model.reward_token)")
    if tokenizer.convert_tokens_to_ids(token) == tokenizer.unk_token_id and token != tokenizer.unk_token:
        raise RewardModelError(f"reward token {token!r} is not in the tokenizer's vocabulary; name one that is")
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids(token):
        raise RewardModelError(
            f"the tokenizer's pad token ({tokenizer.pad_token!r}) is the reward token {token!r}: the reward would be "
            "read at a padding position; give the tokenizer another pad token (e.g. '<|endoftext|>') first"
        )
    return RewardFormat(reward_token=token, max_length=max_length)


class RewardModel(nn.Module):
    """``forward(input_ids, attention_mask) -> rewards`` (one float per row), on a sequence-classification network.

    ``network`` is an ``AutoModelForSequenceClassification`` with one label, optionally wrapped by ``peft``.
    Position ids follow the attention mask, so left- and right-padded batches give the same rewards.
    """

    def __init__(self, network: nn.Module, tokenizer: Any, fmt: RewardFormat):
        super().__init__()
        self.network = network
        self.tokenizer = tokenizer
        self.format = fmt
        self.pad_id = int(tokenizer.pad_token_id)
        self.reward_id = int(tokenizer.convert_tokens_to_ids(fmt.reward_token))

    @property
    def classifier(self) -> nn.Module:
        """The sequence-classification model (inside the peft wrapper when there is one)."""
        return self.network.get_base_model() if hasattr(self.network, "get_base_model") else self.network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        classifier = self.classifier
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = classifier.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        last = last_attended_index(attention_mask)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        read_at = input_ids[rows, last]
        if bool((read_at == self.pad_id).any()):
            raise RewardModelError(
                "a reward would be read at a PAD token: the attention mask marks padding as attended; build batches "
                "with qwenkit.reward.model.pad_sequences (or encode_response, which ends every sequence with the "
                "reward token)"
            )
        return classifier.score(hidden[rows, last]).squeeze(-1).float()

    def encode(self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts and {len(responses)} responses; pass one prompt per response")
        pairs = zip(prompts, responses, strict=True)
        sequences = [encode_response(self.tokenizer, p, r, self.format) for p, r in pairs]
        return pad_sequences(sequences, self.pad_id)

    @torch.no_grad()
    def score(
        self, prompts: Sequence[str | Sequence[Message]], responses: Sequence[str], batch_size: int = 16
    ) -> torch.Tensor:
        """Rewards of (prompt, response) pairs, in batches, in evaluation mode (restored afterwards)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            out = []
            for start in range(0, len(responses), batch_size):
                batch = self.encode(prompts[start : start + batch_size], responses[start : start + batch_size])
                out.append(self(batch["input_ids"].to(device), batch["attention_mask"].to(device)).cpu())
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)


def reward_model_from_causal_lm(
    causal_lm: nn.Module, tokenizer: Any, *, max_length: int = 512, reward_token: str | None = None, seed: int = 0
) -> RewardModel:
    """A reward model whose backbone is a copy of ``causal_lm``'s and whose head is new.

    The head is ``Linear(hidden, 1, bias=False)`` initialised N(0, (1/(hidden+1))^2) as in OpenRLHF's reward model.
    """
    from transformers import AutoModelForSequenceClassification

    fmt = reward_format_for(tokenizer, max_length, reward_token)
    config = copy.deepcopy(causal_lm.config)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    config.problem_type = "regression"
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        network = AutoModelForSequenceClassification.from_config(config)
        network.to(next(causal_lm.parameters()).dtype)
        missing, unexpected = network.base_model.load_state_dict(causal_lm.base_model.state_dict(), strict=False)
        if missing:
            raise RewardModelError(f"the causal LM's backbone does not fit the classifier: missing {missing[:3]}")
        nn.init.normal_(network.score.weight, std=1.0 / (config.hidden_size + 1))
    finally:
        torch.random.set_rng_state(generator_state)
    return RewardModel(network, tokenizer, fmt)


def add_lora(model: RewardModel, *, rank: int = 8, alpha: int = 16, dropout: float = 0.0,
             target_modules: Sequence[str] | str = "all-linear") -> RewardModel:
    """Wrap the network with LoRA adapters (``peft``, task ``SEQ_CLS``); the scalar head stays fully trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="SEQ_CLS",
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        modules_to_save=["score"],
    )
    return RewardModel(get_peft_model(model.network, config), model.tokenizer, model.format)


def save_reward_model(model: RewardModel, directory: str | Path) -> Path:
    """Save as a transformers sequence-classification checkpoint (LoRA merged) plus tokenizer and format file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    network = copy.deepcopy(model.network)
    if hasattr(network, "merge_and_unload"):
        network = network.merge_and_unload()
    network.config.pad_token_id = model.pad_id
    network.config.num_labels = 1
    network.save_pretrained(directory, safe_serialization=True)
    model.tokenizer.save_pretrained(directory)
    (directory / FORMAT_FILE).write_text(json.dumps(asdict(model.format), indent=2) + "\n", encoding="utf-8")
    return directory


def load_reward_model(directory: str | Path, *, device: str | torch.device | None = None) -> RewardModel:
    """Load a directory written by :func:`save_reward_model` (or any one-label sequence classifier with a pad id)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise RewardModelError(
            f"reward model directory {str(directory)!r} has no config.json; pass a directory written by "
            "`qwenkit reward train` (its `model/` folder) or by save_reward_model"
        )
    try:
        network = AutoModelForSequenceClassification.from_pretrained(str(directory), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise RewardModelError(f"cannot load the reward model in {str(directory)!r}: {exc}") from exc
    if network.config.num_labels != 1:
        raise RewardModelError(f"{str(directory)!r} has {network.config.num_labels} labels; a reward model has one")
    format_path = directory / FORMAT_FILE
    if format_path.is_file():
        fmt = RewardFormat(**json.loads(format_path.read_text(encoding="utf-8")))
    else:
        fmt = reward_format_for(tokenizer)
    model = RewardModel(network, tokenizer, fmt)
    if device is not None:
        model.to(device)
    model.eval()
    return model
