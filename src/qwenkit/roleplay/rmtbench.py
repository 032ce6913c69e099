"""A loader for RMTBench-format files (``xiangh/RMTBENCH``, gated), for users who have the official data.

We could not see the gated files, so this reads the layout the paper and its dataset card describe, with the field
names below. Every name has a few accepted spellings, so an export can be read with little or no conversion:

- a JSON file holding a list of records, a JSONL file with one record a line, or a directory of such files;
- one record per dialogue: ``id``; the subset (``subset``/``scenario``/``category``, else the file name, e.g.
  ``user_preference_en.jsonl``); ``language``/``lang`` (``en``/``zh``/``English``/``Chinese``); the character
  (``character_name``/``role_name``/``name``, optional, and ``character_profile``/``role_profile``/``profile``);
  the user turns (``user_turns``/``turns``/``utterances``/``dialogue``: strings or ``{"role": "user", "content"}``
  messages, other roles ignored, since RMTBench holds user turns only); optional ``user_profile`` and
  ``motivation``/``user_motivation``.
- subsets map to scenarios: ``character_understanding``, ``maintenance`` -> ``character_maintenance``,
  ``implicit_motivations`` -> ``implicit_intention``, ``user_preference`` -> ``preference_awareness``,
  ``sensitive`` -> ``sensitive_behaviour``.

A profile of at most 60 characters becomes an abstract card whose traits are its comma-separated parts; a longer one
becomes a custom card with the profile as background. Bad records raise one error naming the file, line and field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qwenkit.roleplay.data import CharacterCard, Dataset, MotivationScript, RoleplayDataError

SUBSETS = {
    "character_understanding": "character_understanding", "maintenance": "character_maintenance",
    "character_maintenance": "character_maintenance", "implicit_motivations": "implicit_intention",
    "implicit_intention": "implicit_intention", "user_preference": "preference_awareness",
    "preference_awareness": "preference_awareness", "sensitive": "sensitive_behaviour",
    "sensitive_behaviour": "sensitive_behaviour",
}
_LANGS = {"en": "en", "english": "en", "zh": "zh", "chinese": "zh", "cn": "zh"}
_FIELDS = {
    "subset": ("subset", "scenario", "category"), "lang": ("language", "lang"),
    "name": ("character_name", "role_name", "name"), "profile": ("character_profile", "role_profile", "profile"),
    "turns": ("user_turns", "turns", "utterances", "dialogue"), "user_profile": ("user_profile",),
    "motivation": ("motivation", "user_motivation"),
}
ABSTRACT_MAX_CHARS = 60


def _first(record: dict[str, Any], field: str) -> Any:
    return next((record[k] for k in _FIELDS[field] if record.get(k) not in (None, "", [])), None)


def _records(file: Path) -> list[tuple[int, Any]]:
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix == ".jsonl":
            return [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RoleplayDataError(f"{file}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise RoleplayDataError(f"{file}: a .json file must hold a list of dialogue records")
    return [(n, r) for n, r in enumerate(data, 1)]


def _subset_from_name(file: Path) -> str | None:
    stem = file.stem.lower()
    return next((s for s in sorted(SUBSETS, key=len, reverse=True) if s in stem), None)


def _turns(raw: Any) -> list[str] | None:
    if not isinstance(raw, list):
        return None
    turns = []
    for turn in raw:
        if isinstance(turn, str):
            turns.append(turn)
        elif isinstance(turn, dict) and turn.get("role", "user") == "user" and isinstance(turn.get("content"), str):
            turns.append(turn["content"])
    return turns or None


def _card(card_id: str, lang: str, name: str | None, profile: str) -> CharacterCard:
    if len(profile) <= ABSTRACT_MAX_CHARS:
        traits = [t.strip() for t in re.split(r"[,，、;；]", profile) if t.strip()]
        return CharacterCard(id=card_id, kind="abstract", lang=lang, name=name, traits=traits)
    return CharacterCard(id=card_id, kind="custom", lang=lang, name=name, traits=[name or "character"],
                         background=profile)


def load_rmtbench(path: str | Path) -> Dataset:
    """The dialogues of RMTBench-format files as a :class:`Dataset` (scripted mode: the user turns as given)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".json", ".jsonl"})
    elif path.is_file():
        files = [path]
    else:
        raise RoleplayDataError(f"{path}: no such file or directory; pass an RMTBench .json/.jsonl file or folder")
    if not files:
        raise RoleplayDataError(f"{path}: holds no .json or .jsonl files")
    characters: dict[str, CharacterCard] = {}
    dialogues: list[MotivationScript] = []
    for file in files:
        for line, record in _records(file):
            where = f"{file}: record {line}"
            if not isinstance(record, dict):
                raise RoleplayDataError(f"{where}: must be an object")
            subset = str(_first(record, "subset") or _subset_from_name(file) or "").lower()
            if subset not in SUBSETS:
                raise RoleplayDataError(f"{where}: field 'subset': {subset!r} is not one of {sorted(SUBSETS)} "
                                        "(nor does the file name contain one)")
            lang = _LANGS.get(str(_first(record, "lang") or "").lower())
            if lang is None:
                raise RoleplayDataError(f"{where}: field 'language': {_first(record, 'lang')!r}; use en or zh")
            profile = _first(record, "profile")
            if not isinstance(profile, str):
                raise RoleplayDataError(f"{where}: field 'character_profile' is missing (or not text)")
            turns = _turns(_first(record, "turns"))
            if turns is None:
                raise RoleplayDataError(f"{where}: field 'user_turns' is missing or holds no user turn")
            name = _first(record, "name")
            dialogue_id = str(record.get("id") or f"{file.stem}-{line}")
            if any(d.id == dialogue_id for d in dialogues):
                raise RoleplayDataError(f"{where}: field 'id': duplicate dialogue id {dialogue_id!r}")
            card_id = f"rmt-{lang}-{name or dialogue_id}"
            try:
                characters.setdefault(card_id, _card(card_id, lang, name, profile))
                dialogues.append(MotivationScript(
                    id=dialogue_id, character=card_id, lang=lang, scenario=SUBSETS[subset],
                    user_profile=str(_first(record, "user_profile") or "an RMTBench user"),
                    motivation=str(_first(record, "motivation") or "(not given in the RMTBench record)"),
                    turns=turns))
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                raise RoleplayDataError(f"{where}: field {field!r}: {first['msg']}") from None
    return Dataset(characters=characters, dialogues=dialogues, sources=[str(f) for f in files])
