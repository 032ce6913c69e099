"""Configs: a YAML file (or dict) validated into a pydantic model, with ``--set a.b=value`` overrides.

Every error names the field, the value it got, what is allowed and how to fix it, in one ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from qwenkit.core.errors import ConfigError

__all__ = ["ConfigError", "StrictModel", "apply_overrides", "dump_config", "load_config", "parse_override", "read_yaml"]

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every qwenkit config: unknown fields are errors (a typo must never be silently ignored)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_override(override: str) -> tuple[list[str], Any]:
    """Split ``"trainer.lr=1e-4"`` into ``(["trainer", "lr"], 1e-4)``; the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} is not of the form dotted.key=value (e.g. --set trainer.lr=1e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({exc})") from exc
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``dotted.key=value`` override set (intermediate mappings are created)."""
    result = _deep_copy(data)
    for override in overrides:
        path, value = parse_override(override)
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(
                    f"override {override!r}: {where} is {child!r}, not a section; cannot set {path[-1]} in it"
                )
            node = child
        node[path[-1]] = value
    return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` with errors that point at the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of fields, got a {type(data).__name__}")
    return data


def load_config(
    model: type[ModelT],
    source: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    *,
    origin: str | None = None,
) -> ModelT:
    """Validate ``source`` (a YAML path, a mapping, or None for the defaults) plus ``overrides`` into ``model``.

    ``origin`` names where a mapping came from in error messages (e.g. the file it was read from).
    """
    if source is None:
        data: dict[str, Any] = {}
        origin = origin or "defaults"
    elif isinstance(source, Mapping):
        data = dict(source)
        origin = origin or "the given mapping"
    else:
        data = read_yaml(source)
        origin = origin or f"config file {str(source)!r}"
    if overrides:
        origin += " with --set overrides"
    data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None


def format_validation_error(exc: ValidationError, origin: str) -> str:
    """One readable line per problem: field, value, what is allowed, and the fix."""
    lines = [f"invalid config ({origin}):"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        kind = err["type"]
        if kind == "extra_forbidden":
            lines.append(f"  - {field}: unknown field (value {err.get('input')!r}); remove it or check its spelling")
        elif kind == "missing":
            lines.append(f"  - {field}: required field is missing; add it to the file or pass --set {field}=...")
        else:
            lines.append(
                f"  - {field}: got {err.get('input')!r}; {err['msg']}; fix it in the file or with --set {field}=..."
            )
    return "\n".join(lines)


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML (what a run directory stores, re-loadable with ``load_config``)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
