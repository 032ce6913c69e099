"""The role-play data model: character cards, motivation scripts (scripted or simulated dialogues), the protocol.

A dataset is one YAML/JSON file or a directory of them, each a mapping ``{format: qwenkit-roleplay, version: 1,
characters: [...], dialogues: [...]}``. Records are validated one by one, so an error names the file, the record
(index and id) and the field. Which dimensions a dialogue is scored on follows from its scenario through
``protocol.yaml`` (data, not code); a dialogue may narrow them with ``dimensions``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.core.errors import DataError

FORMAT = "qwenkit-roleplay"
FORMAT_VERSION = 1
Language = Literal["en", "zh"]
Scenario = Literal[
    "character_understanding", "character_maintenance", "implicit_intention", "preference_awareness",
    "sensitive_behaviour",
]
SCENARIOS: tuple[str, ...] = Scenario.__args__
Dimension = Literal["EE", "EC", "PA", "CU", "CM", "SEC", "UPA"]
DIMENSIONS: tuple[str, ...] = Dimension.__args__


class RoleplayDataError(DataError):
    """A data file is missing or invalid; the message names the file, the record and the field."""


class Bilingual(StrictModel):
    en: str
    zh: str

    def get(self, lang: str) -> str:
        return getattr(self, lang)


class DimensionSpec(StrictModel):
    name: Bilingual
    scale: tuple[int, int]
    """(lowest, highest) score; normalised score = 100 * score / highest (RMTBench: "normalised by the limit")."""
    rubric: Bilingual


class JudgeTemplates(StrictModel):
    system: Bilingual
    user: Bilingual
    prefill: str
    """The start of the judge's answer, continued by a ``score_from: logprobs`` judge (its next token is the score)."""
    content_free: Bilingual
    """The content-free reply whose score distribution calibrates a ``calibrate: true`` judge (Zhao et al. 2021)."""
    pairwise: Bilingual


class PlayerTemplates(StrictModel):
    system: Bilingual
    unnamed: Bilingual


class SimulatorTemplates(StrictModel):
    system: Bilingual


class Protocol(StrictModel):
    version: int
    dimensions: dict[Dimension, DimensionSpec]
    scenarios: dict[Scenario, list[Dimension]]
    judge: JudgeTemplates
    player: PlayerTemplates
    simulator: SimulatorTemplates

    @model_validator(mode="after")
    def _every_scenario(self) -> Protocol:
        missing = [s for s in SCENARIOS if s not in self.scenarios]
        if missing:
            raise ValueError(f"scenarios {missing} have no dimension list")
        return self


@cache
def load_protocol() -> Protocol:
    """The shipped protocol (``qwenkit/roleplay/protocol.yaml``): rubrics, applicability, prompt templates."""
    text = resources.files("qwenkit.roleplay").joinpath("protocol.yaml").read_text(encoding="utf-8")
    return Protocol.model_validate(yaml.safe_load(text))


def applicable_dimensions(scenario: str, protocol: Protocol | None = None) -> list[str]:
    """The dimensions a reply in ``scenario`` is scored on (EE/EC/PA/CU always; CM, SEC, UPA in their scenario)."""
    protocol = protocol or load_protocol()
    if scenario not in protocol.scenarios:
        raise RoleplayDataError(f"unknown scenario {scenario!r}; known: {list(protocol.scenarios)}")
    return list(protocol.scenarios[scenario])


class CharacterCard(StrictModel):
    id: str = Field(min_length=1)
    kind: Literal["custom", "abstract"]
    """custom: a detailed background; abstract: a few traits only, sometimes without a name (RMTBench)."""
    lang: Language
    name: str | None = None
    traits: list[str] = Field(min_length=1)
    background: str = ""
    speech_style: str = ""
    catchphrases: list[str] = Field(default_factory=list)
    boundaries: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _custom_has_background(self) -> CharacterCard:
        if self.kind == "custom" and not self.background.strip():
            raise ValueError("a custom character needs a background (or use kind: abstract)")
        return self

    def describe(self) -> str:
        """The card as prompt text, in the card's language."""
        zh = self.lang == "zh"
        labels = (("名字", "性格", "背景", "说话风格", "口头禅", "界限") if zh
                  else ("Name", "Traits", "Background", "Speech style", "Catchphrases", "Boundaries"))
        sep = "、" if zh else ", "
        parts = [(labels[0], self.name or ""), (labels[1], sep.join(self.traits)), (labels[2], self.background),
                 (labels[3], self.speech_style), (labels[4], sep.join(self.catchphrases)),
                 (labels[5], sep.join(self.boundaries))]
        colon = "：" if zh else ": "
        return "\n".join(f"{label}{colon}{value}" for label, value in parts if value)


class SimulationSpec(StrictModel):
    max_turns: int = Field(ge=1, le=50)
    stop_when: str = Field(min_length=1)
    """When the simulated user should end the dialogue (given to the simulator in its prompt)."""


class MotivationScript(StrictModel):
    id: str = Field(min_length=1)
    character: str = Field(min_length=1)
    """The id of a character card in the same dataset."""
    lang: Language
    scenario: Scenario
    user_profile: str = Field(min_length=1)
    motivation: str = Field(min_length=1)
    preferences: list[str] = Field(default_factory=list)
    """Preferences the user plants (UPA checks that later replies honour them)."""
    probes: list[str] = Field(default_factory=list)
    """What the dialogue tests, for a reader (e.g. "asks the character whether it is an AI")."""
    turns: list[str] | None = None
    """Fixed user turns (scripted mode); the player writes every reply."""
    simulate: SimulationSpec | None = None
    """A user-simulator spec (simulated mode) instead of fixed turns."""
    dimensions: list[Dimension] | None = None
    """Narrow the scenario's dimensions (None: all of the scenario's)."""

    @field_validator("turns")
    @classmethod
    def _turns_not_blank(cls, turns: list[str] | None) -> list[str] | None:
        if turns is not None:
            if not turns:
                raise ValueError("turns is empty; give at least one user turn or use simulate")
            blank = [i for i, t in enumerate(turns) if not t.strip()]
            if blank:
                raise ValueError(f"turns {blank} are blank")
        return turns

    @model_validator(mode="after")
    def _one_mode(self) -> MotivationScript:
        if (self.turns is None) == (self.simulate is None):
            raise ValueError("give exactly one of turns (scripted) or simulate (simulated user)")
        if self.dimensions is not None:
            allowed = applicable_dimensions(self.scenario)
            extra = [d for d in self.dimensions if d not in allowed]
            if extra:
                raise ValueError(f"dimensions {extra} do not apply to scenario {self.scenario}; allowed: {allowed}")
        return self

    @property
    def scored_dimensions(self) -> list[str]:
        return list(self.dimensions) if self.dimensions is not None else applicable_dimensions(self.scenario)


class Dataset(StrictModel):
    characters: dict[str, CharacterCard]
    dialogues: list[MotivationScript]
    sources: list[str] = Field(default_factory=list)

    def character(self, script: MotivationScript) -> CharacterCard:
        return self.characters[script.character]

    def select(self, *, langs: list[str] | None = None, scenarios: list[str] | None = None,
               ids: list[str] | None = None, limit: int | None = None) -> Dataset:
        """The dialogues matching every given filter (in dataset order), at most ``limit``."""
        chosen = [d for d in self.dialogues
                  if (not langs or d.lang in langs) and (not scenarios or d.scenario in scenarios)
                  and (not ids or d.id in ids)]
        return Dataset(characters=self.characters, dialogues=chosen[:limit] if limit else chosen,
                       sources=self.sources)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoleplayDataError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RoleplayDataError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise RoleplayDataError(f"{path}: must hold a mapping with format, version, characters and dialogues; "
                                f"got a {type(data).__name__}")
    return data


def _field_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<record>"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        parts.append(f"field {field!r}: {message} (got {err.get('input')!r:.80})" if err["type"] != "missing"
                     else f"field {field!r}: required field is missing")
    return "; ".join(parts)


def _records(path: Path, data: dict[str, Any], section: str, model: type[StrictModel], problems: list[str]) -> list:
    raw = data.get(section, [])
    if not isinstance(raw, list):
        problems.append(f"{path}: {section} must be a list of records, got a {type(raw).__name__}")
        return []
    records = []
    for index, record in enumerate(raw):
        where = f"{path}: {section}[{index}]"
        if not isinstance(record, dict):
            problems.append(f"{where}: must be a mapping, got a {type(record).__name__}")
            continue
        if record.get("id"):
            where += f" (id {record['id']!r})"
        try:
            records.append((where, model.model_validate(record)))
        except ValidationError as exc:
            problems.append(f"{where}: {_field_errors(exc)}")
    return records


def dataset_files(path: str | Path) -> list[Path]:
    """The data files of ``path``: the file itself, or the ``*.yaml``/``*.yml``/``*.json`` files of a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
        if not files:
            raise RoleplayDataError(f"{path}: the directory holds no .yaml, .yml or .json data files")
        return files
    if not path.is_file():
        raise RoleplayDataError(f"{path}: no such file or directory; pass a dataset file or directory")
    return [path]


def load_dataset(path: str | Path) -> Dataset:
    """Load and validate a dataset; every problem of every file is reported in one :class:`RoleplayDataError`."""
    problems: list[str] = []
    characters: dict[str, tuple[str, CharacterCard]] = {}
    dialogues: list[tuple[str, MotivationScript]] = []
    files = dataset_files(path)
    for file in files:
        data = _read_mapping(file)
        unknown = sorted(set(data) - {"format", "version", "characters", "dialogues"})
        if unknown:
            problems.append(f"{file}: unknown top-level fields {unknown}; allowed: format, version, characters, "
                            "dialogues")
        if data.get("format") != FORMAT:
            problems.append(f"{file}: field 'format' must be {FORMAT!r}, got {data.get('format')!r}")
        if data.get("version") != FORMAT_VERSION:
            problems.append(f"{file}: field 'version' must be {FORMAT_VERSION}, got {data.get('version')!r}")
        for where, card in _records(file, data, "characters", CharacterCard, problems):
            if card.id in characters:
                problems.append(f"{where}: field 'id': duplicate character id (first in {characters[card.id][0]})")
            characters[card.id] = (where, card)
        dialogues.extend(_records(file, data, "dialogues", MotivationScript, problems))
    seen: dict[str, str] = {}
    for where, script in dialogues:
        if script.id in seen:
            problems.append(f"{where}: field 'id': duplicate dialogue id (first in {seen[script.id]})")
        seen.setdefault(script.id, where)
        if script.character not in characters:
            problems.append(f"{where}: field 'character': no character with id {script.character!r}")
        elif characters[script.character][1].lang != script.lang:
            problems.append(f"{where}: field 'lang': {script.lang!r} differs from character {script.character!r}'s "
                            f"language {characters[script.character][1].lang!r}")
    if problems:
        raise RoleplayDataError(f"invalid role-play data ({len(problems)} problem(s)):\n  - " + "\n  - ".join(problems))
    return Dataset(characters={k: v[1] for k, v in characters.items()}, dialogues=[d for _, d in dialogues],
                   sources=[str(f) for f in files])


def shipped_dataset_path() -> Path:
    """The directory of the dataset written for qwenkit (package data)."""
    return Path(str(resources.files("qwenkit.roleplay").joinpath("dataset")))


def load_shipped_dataset() -> Dataset:
    return load_dataset(shipped_dataset_path())
