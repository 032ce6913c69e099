"""LoRA on the Qwen-Image MMDiT through ``peft`` (diffusers' ``PeftAdapterMixin``), saved in diffusers' format.

A LoRA adapter replaces each targeted linear ``W`` by ``W + (alpha / r) B A`` with ``A`` (r x in) initialised
randomly and ``B`` (out x r) at zero, so training starts from the base model (Hu et al. 2021, eq. 3). Targets default
to diffusers' Qwen-Image DreamBooth script (``to_q, to_k, to_v, to_out.0``: the image stream's attention) and are
configurable (e.g. ``add_q_proj``/``add_k_proj``/``add_v_proj``/``to_add_out`` for the text stream, ``img_mlp.net.2``).

Saved as ``pytorch_lora_weights.safetensors`` through ``QwenImagePipeline.save_lora_weights`` (keys
``transformer.<module>.lora_A/B.weight`` plus the adapter's config as metadata), which
``QwenImagePipeline.load_lora_weights`` accepts; :func:`load_lora` reads it back strictly: a file whose keys or
shapes do not match the adapter its metadata describes is refused with the keys named, never half-loaded.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.core.errors import QwenkitError

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


class LoraLoadError(QwenkitError):
    """A LoRA file does not fit the model (missing, unexpected or mis-shaped keys); the message lists them."""


class LoraSettings(StrictModel):
    rank: int = Field(8, ge=1, description="r: the rank of B A")
    alpha: float = Field(8.0, gt=0, description="the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(list(DEFAULT_TARGETS), min_length=1,
                                      description="module names (suffixes) of the transformer's linears to adapt")

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, init_lora_weights=True,
                          target_modules=list(self.target_modules))


def has_lora(transformer: torch.nn.Module) -> bool:
    """True when peft adapter layers are injected in ``transformer``."""
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in transformer.modules())


def add_lora(transformer: torch.nn.Module, settings: LoraSettings, *, seed: int = 0) -> None:
    """Freeze ``transformer`` and inject a trainable LoRA adapter (``A`` drawn from ``seed``, ``B = 0``).

    Targets that match no linear raise (peft's own error names them)."""
    names = [n for n, _ in transformer.named_modules()]
    unmatched = [t for t in settings.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if unmatched:
        raise LoraLoadError(f"lora.target_modules {unmatched} match no module of the transformer; use names such "
                            f"as {list(DEFAULT_TARGETS)} or add_q_proj, add_k_proj, add_v_proj, to_add_out")
    transformer.requires_grad_(False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        transformer.add_adapter(settings.peft_config())


def lora_state_dict(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors under diffusers' names (``<module>.lora_A.weight``, ``<module>.lora_B.weight``)."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(transformer).items()}


def save_lora(transformer: torch.nn.Module, settings: LoraSettings, directory: str | Path) -> Path:
    """Write ``directory/pytorch_lora_weights.safetensors`` in diffusers' LoRA format (loadable with
    ``QwenImagePipeline.load_lora_weights(directory)``); returns the file."""
    from diffusers import QwenImagePipeline

    directory = Path(directory)
    metadata = settings.peft_config().to_dict()
    metadata["target_modules"] = sorted(metadata["target_modules"])
    QwenImagePipeline.save_lora_weights(directory, transformer_lora_layers=lora_state_dict(transformer),
                                        transformer_lora_adapter_metadata=metadata)
    return directory / LORA_WEIGHTS


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], LoraSettings]:
    """The tensors (``transformer.`` prefix removed) and the settings stored in a diffusers LoRA file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / LORA_WEIGHTS
    if not path.is_file():
        raise LoraLoadError(f"{path} does not exist; pass the folder written by `qwenkit image finetune` (lora/)")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    tensors = load_file(path)
    raw = meta.get("lora_adapter_metadata")
    config = {k[len("transformer."):]: v for k, v in json.loads(raw).items() if k.startswith("transformer.")} \
        if raw else {}
    if not {"r", "lora_alpha", "target_modules"} <= set(config):
        raise LoraLoadError(f"{path} has no transformer adapter metadata (rank, alpha, targets); write it with "
                            "save_lora or QwenImagePipeline.save_lora_weights(transformer_lora_adapter_metadata=...)")
    settings = LoraSettings(rank=int(config["r"]), alpha=float(config["lora_alpha"]),
                            dropout=float(config.get("lora_dropout", 0.0)),
                            target_modules=sorted(config["target_modules"]))
    prefix = "transformer."
    foreign = [k for k in tensors if not k.startswith(prefix)]
    if foreign:
        raise LoraLoadError(f"{path}: keys {foreign[:3]} are not the transformer's (diffusers prefixes them with "
                            "'transformer.'); this LoRA belongs to another pipeline part")
    return {k[len(prefix):]: v for k, v in tensors.items()}, settings


def load_lora(transformer: torch.nn.Module, path: str | Path) -> LoraSettings:
    """Inject the adapter a LoRA file describes into ``transformer`` and load its tensors, strictly.

    Refused (``LoraLoadError`` naming the keys), before anything is changed: a file whose keys differ from those
    the adapter creates in this transformer (missing or unexpected), or whose shapes differ (another rank or
    model width)."""
    from peft.utils import set_peft_model_state_dict

    tensors, settings = read_lora_file(path)
    if has_lora(transformer):
        raise LoraLoadError("the transformer already has a LoRA adapter; load into a fresh copy of the model")
    probe = copy.deepcopy(transformer)
    add_lora(probe, settings)
    expected = {k: v.shape for k, v in lora_state_dict(probe).items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k]) != tuple(tensors[k].shape))
    if missing or unexpected or shapes:
        problems = [f"{len(missing)} missing (e.g. {missing[:2]})" if missing else "",
                    f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})" if unexpected else "",
                    "shape mismatch at " + ", ".join(f"{k}: file {tuple(tensors[k].shape)} vs model "
                                                     f"{tuple(expected[k])}" for k in shapes[:2]) if shapes else ""]
        raise LoraLoadError(f"{path}: the LoRA does not fit this transformer: "
                            + "; ".join(p for p in problems if p) + "; it was trained on another model")
    add_lora(transformer, settings)
    result = set_peft_model_state_dict(transformer, tensors)
    leftover = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if leftover:
        raise LoraLoadError(f"{path}: peft did not place {leftover[:3]}")
    return settings


def merged_copy(transformer: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``transformer`` with every LoRA update folded into its base weights (``W <- W + (alpha/r) B A``)
    and the adapter layers removed: a plain ``QwenImageTransformer2DModel`` whose ``save_pretrained`` has no
    ``base_layer`` / ``lora_*`` keys."""
    merged = copy.deepcopy(transformer)
    if has_lora(merged):
        merged.fuse_lora()
        merged.unload_lora()
    return merged.requires_grad_(True)
