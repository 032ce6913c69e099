"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically and verified on load.

Layout of one checkpoint (a directory)::

    step-00000120/
      model.safetensors      model state dict, tied weights stored once (a weights-only export is this one file)
      optimizer.safetensors  the optimizer's tensors (Adam moments), in their own file
      state.safetensors      every other tensor: RNG states, domain extras
      meta.json              step, JSON-able state (param groups, scheduler, RNG of Python/NumPy, domain extras), which
                             model keys alias a stored one (tied weights), and the size and sha256 of each tensor file

``save_checkpoint(..., keep=N)`` deletes older checkpoints only after the new one has been re-read and verified, and
:func:`remove_leftovers` clears the temporary files a killed run left behind.

A checkpoint directory is first written under a temporary name, each file fsync'ed, then renamed into place, and the
``latest`` pointer file is replaced atomically last: a kill at any moment leaves either the old or the new checkpoint,
never half of one. On load every file is checked against its recorded size and hash, so a truncated or corrupted
checkpoint raises :class:`CheckpointError` instead of silently restarting or loading garbage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from qwenkit.core.errors import QwenkitError

FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)
_TENSOR_MARK = "__tensor__"
_TMP_PREFIX = ".step-"


class CheckpointError(QwenkitError, RuntimeError):
    """A checkpoint is missing, truncated, corrupt or of an unknown format."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``state`` holds the JSON and tensor state with tensors put back in place."""

    path: Path
    step: int
    model: dict[str, torch.Tensor]
    state: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None


def save_checkpoint(
    directory: str | Path,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    state: Mapping[str, Any] | None = None,
    *,
    optimizer_state: Mapping[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Write checkpoint ``step`` under ``directory`` and point ``latest`` at it; keep the newest ``keep`` checkpoints.

    ``state`` and ``optimizer_state`` are any nesting of dicts/lists/tuples holding tensors, numbers, strings, None and
    numpy arrays (RNG states, an optimizer ``state_dict()``); tensors go to safetensors, the rest to JSON, and they
    come back identical. Model tensors that share storage (tied embeddings) are written once.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{step:08d}.", dir=directory))
    try:
        model_tensors, tied = _dedupe_tied(model_state)
        _save_tensors(model_tensors, tmp / "model.safetensors")
        state_tensors: dict[str, torch.Tensor] = {}
        json_state = _split_tensors(dict(state or {}), state_tensors, prefix="")
        _save_tensors(state_tensors, tmp / "state.safetensors")
        names = ["model.safetensors", "state.safetensors"]
        json_optimizer = None
        if optimizer_state is not None:
            optimizer_tensors: dict[str, torch.Tensor] = {}
            json_optimizer = _split_tensors(dict(optimizer_state), optimizer_tensors, prefix="")
            _save_tensors(optimizer_tensors, tmp / "optimizer.safetensors")
            names.append("optimizer.safetensors")
        files = {name: _file_digest(tmp / name) for name in names}
        meta = {"format": FORMAT_VERSION, "step": int(step), "state": json_state, "optimizer": json_optimizer,
                "tied": tied, "files": files}
        _write_synced(tmp / "meta.json", json.dumps(meta).encode("utf-8"))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(directory / "latest", final.name + "\n")
    if keep is not None and keep > 0:
        verify_checkpoint(final)
        for old in list_checkpoints(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def remove_leftovers(directory: str | Path) -> list[Path]:
    """Delete the half-written ``.step-*`` directories and ``.*.tmp`` files a killed run left in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        if entry.name.startswith(_TMP_PREFIX) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints under ``directory``, oldest first (temporary half-written ones are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith("step-"))


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint ``latest`` points at, or None when there is none yet."""
    directory = Path(directory)
    pointer = directory / "latest"
    if not pointer.exists():
        found = list_checkpoints(directory)
        return found[-1] if found else None
    target = directory / pointer.read_text(encoding="utf-8").strip()
    if not target.is_dir():
        raise CheckpointError(
            f"{pointer} points at {target.name}, which does not exist; remove the 'latest' file to resume from "
            f"{[p.name for p in list_checkpoints(directory)] or 'nothing'}"
        )
    return target


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and verify a checkpoint directory (or a run's ``checkpoints`` directory: then its latest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not (path / "meta.json").exists():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"{str(path)!r} holds no checkpoint (no meta.json and no step-* directories)")
        path = latest
    meta = verify_checkpoint(path)
    device = str(map_location)
    model = load_file(path / "model.safetensors", device=device)
    for alias, stored in (meta.get("tied") or {}).items():
        model[alias] = model[stored]
    state = _join_tensors(meta["state"], load_file(path / "state.safetensors", device=device))
    optimizer = None
    if meta.get("optimizer") is not None:
        optimizer = _join_tensors(meta["optimizer"], load_file(path / "optimizer.safetensors", device=device))
    elif meta["format"] == 1 and "optimizer" in state:  # format 1 kept the optimizer inside the state
        optimizer = state.pop("optimizer")
    return Checkpoint(path=path, step=int(meta["step"]), model=model, state=state, optimizer=optimizer)


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check every file of checkpoint ``path`` against its recorded size and sha256; return its metadata."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: meta.json is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: meta.json is not valid JSON ({exc})") from exc
    if meta.get("format") not in _READABLE_FORMATS:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {meta.get('format')!r}; this qwenkit reads {list(_READABLE_FORMATS)}"
        )
    for name, expected in meta["files"].items():
        file = path / name
        if not file.exists():
            raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: {name} is missing")
        actual = _file_digest(file)
        if actual["size"] != expected["size"]:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is truncated: {name} has {actual['size']} bytes, expected "
                f"{expected['size']}; resume from an earlier checkpoint or delete this one"
            )
        if actual["sha256"] != expected["sha256"]:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupt: {name} does not match its recorded sha256; "
                "resume from an earlier checkpoint or delete this one"
            )
    return meta


def _dedupe_tied(model_state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors to store (each storage once) and ``{alias: stored_key}`` for keys that are views of a stored one."""
    stored: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype], str] = {}
    for key, tensor in model_state.items():
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                    tuple(tensor.stride()), tensor.dtype)
        if tensor.numel() and identity in seen:
            tied[key] = seen[identity]
            continue
        seen[identity] = key
        stored[key] = _contiguous_cpu(tensor)
    return stored, tied


def _split_tensors(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """Replace every tensor in ``obj`` by a reference and collect it in ``tensors`` (JSON keeps the structure)."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "value"
        tensors[key] = _contiguous_cpu(obj)
        return {_TENSOR_MARK: key}
    if type(obj).__module__ == "numpy" and hasattr(obj, "dtype"):
        return _split_tensors(torch.from_numpy(__import__("numpy").ascontiguousarray(obj)), tensors, prefix)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise TypeError(f"checkpoint state keys must be str or int, got {k!r}")
            # JSON keys are strings; remember int keys (optimizer state is keyed by parameter index).
            json_key = f"int:{k}" if isinstance(k, int) else k
            out[json_key] = _split_tensors(v, tensors, f"{prefix}/{k}" if prefix else str(k))
        return out
    if isinstance(obj, tuple):
        return {"__tuple__": [_split_tensors(v, tensors, f"{prefix}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_split_tensors(v, tensors, f"{prefix}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint; convert it to tensors or JSON")


def _join_tensors(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR_MARK}:
            return tensors[obj[_TENSOR_MARK]]
        if set(obj) == {"__tuple__"}:
            return tuple(_join_tensors(v, tensors) for v in obj["__tuple__"])
        return {(int(k[4:]) if k.startswith("int:") else k): _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def _contiguous_cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu").contiguous().clone()


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    # safetensors refuses tensors that share storage; clones above make each one own its memory.
    save_file(tensors, str(path))
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _file_digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
