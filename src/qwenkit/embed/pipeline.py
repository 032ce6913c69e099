"""One-command staged training (paper section 3.2): weak pairs -> supervised pairs with cosine filtering -> slerp merge.

A pipeline config (``kind: pipeline``) holds ``base`` (fields of :class:`~qwenkit.embed.train.EmbedTrainConfig` shared
by every stage), a list of ``stages`` (each ``set`` deep-merged over ``base``; each starts from the previous stage's
model unless ``init`` says otherwise) and an optional ``merge`` (per-tensor slerp of two stage models or checkpoints).
Every stage is an ordinary ``train_embedder`` run in ``<out>/<stage>``; ``--resume`` skips finished stages and resumes
the interrupted one from its latest checkpoint.

Defaults (paper: weak pre-training, SFT on labelled + cosine-filtered synthetic pairs, merging):

- ``weak``: stdlib weak pairs (function name + argument names -> source), from the base model;
- ``supervised``: from ``weak``; labelled stdlib pairs plus weak pairs (weight 0.5) kept when their cosine under the
  stage's starting model exceeds ``cosine_filter`` 0.7 (the paper's threshold);
- ``merge``: ``slerp(weak, supervised, t=0.5)``. The paper merges checkpoints saved during SFT: name them as
  ``stage@STEP`` (needs ``trainer.checkpoint_every`` and enough ``keep_last``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from qwenkit.core.config import StrictModel, load_config

STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _default_stages() -> list[StageConfig]:
    return [
        StageConfig(name="weak", init="base", set={"mixture": [{"task": "stdlib", "pairs": "weak"}]}),
        StageConfig(name="supervised", set={"cosine_filter": 0.7, "mixture": [
            {"task": "stdlib"}, {"task": "stdlib", "pairs": "weak", "weight": 0.5}]}),
    ]


class StageConfig(StrictModel):
    name: str = Field(description="directory name of the stage under --out (letters, digits, _ and -)")
    init: str = Field("previous", description="'previous' (the stage before, the base model for the first), 'base', "
                      "or the name of an earlier stage")
    set: dict[str, Any] = Field(default_factory=dict, description="EmbedTrainConfig fields merged over `base`")

    @field_validator("name")
    @classmethod
    def _name_is_a_directory(cls, value: str) -> str:
        if not STAGE_NAME.match(value):
            raise ValueError(f"stage name {value!r} must use only letters, digits, '_' and '-'")
        return value


class MergeConfig(StrictModel):
    models: list[str] = Field(default_factory=lambda: ["weak", "supervised"], min_length=2, max_length=2,
                              description="two stage names, or 'stage@STEP' for a checkpoint of a stage")
    t: float = Field(0.5, ge=0, le=1, description="slerp weight: 0 = the first model, 1 = the second")


class PipelineConfig(StrictModel):
    kind: Literal["pipeline"] = "pipeline"
    base: dict[str, Any] = Field(default_factory=dict, description="EmbedTrainConfig fields shared by every stage")
    stages: list[StageConfig] = Field(default_factory=_default_stages, min_length=1)
    merge: MergeConfig | None = Field(default_factory=MergeConfig, description="null = no merge")

    @model_validator(mode="after")
    def _references_exist(self) -> PipelineConfig:
        seen: list[str] = []
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"stage name {stage.name!r} is used twice")
            if stage.init not in ("previous", "base") and stage.init not in seen:
                raise ValueError(f"stage {stage.name!r} has init {stage.init!r}, which is not an earlier stage "
                                 f"({seen or 'none'}); use 'previous', 'base' or an earlier stage's name")
            seen.append(stage.name)
        if self.merge is not None:
            for ref in self.merge.models:
                if ref.split("@")[0] not in seen:
                    raise ValueError(f"merge.models names {ref!r}, but the stages are {seen}")
        return self

    def stage_config(self, index: int, out: Path):
        """The validated EmbedTrainConfig of stage ``index`` (its ``model`` pointing at its starting model)."""
        from qwenkit.core.config import ConfigError
        from qwenkit.embed.train import EmbedTrainConfig

        stage = self.stages[index]
        data = _deep_merge(self.base, stage.set)
        init = self.stages[index - 1].name if stage.init == "previous" and index > 0 else stage.init
        if init != "previous" and init != "base":
            data["model"] = str(out / init / "model")
        try:
            return load_config(EmbedTrainConfig, data)
        except ConfigError as exc:
            raise ConfigError(f"stage {stage.name!r} (its fields come from base and stages.{index}.set): "
                              f"{exc}") from None


@dataclass
class PipelineResult:
    evaluation: dict[str, dict[str, dict[int, dict[str, float]]]]  # system -> task -> dim -> metrics
    model_dir: Path


def run_pipeline(config: PipelineConfig, out: str | Path, *, resume: bool = False,
                 quiet: bool | None = None) -> PipelineResult:
    """Train every stage in order (skipping finished ones under ``resume``), then merge; returns all evaluations."""
    from qwenkit.core.runs import RunDir
    from qwenkit.embed.train import train_embedder

    out = Path(out)
    if not resume and any((out / s.name).exists() for s in config.stages):
        raise FileExistsError(f"{out} already holds stages of a pipeline; pass --resume to continue it, or use a "
                              "new output directory")
    RunDir(out).save_config(config)
    evaluation: dict[str, dict] = {}
    model_dir = out
    for index, stage in enumerate(config.stages):
        stage_dir = out / stage.name
        done = stage_dir / "evaluation.json"
        if resume and done.is_file():
            evaluation[stage.name] = _load_evaluation(done)
            model_dir = stage_dir / "model"
            continue
        stage_config = config.stage_config(index, out)
        result = train_embedder(stage_config, run=RunDir(stage_dir), resume=resume, quiet=quiet)
        evaluation[stage.name] = result.evaluation
        done.write_text(json.dumps(result.evaluation), encoding="utf-8")
        model_dir = stage_dir / "model"
    if config.merge is not None:
        label = f"slerp({', '.join(config.merge.models)}, t={config.merge.t})"
        evaluation[label], model_dir = _merge(config, out)
    return PipelineResult(evaluation, model_dir)


def _merge(config: PipelineConfig, out: Path) -> tuple[dict, Path]:
    from qwenkit.embed.data import load_task
    from qwenkit.embed.embedder import Embedder
    from qwenkit.embed.evaluate import evaluate_embedder
    from qwenkit.embed.merge import slerp_state_dicts

    assert config.merge is not None
    first_ref, second_ref = config.merge.models
    merged = Embedder.from_pretrained(out / first_ref.split("@")[0] / "model")
    states = [_state_dict(out, ref, merged) for ref in (first_ref, second_ref)]
    merged.model.load_state_dict(slerp_state_dicts(states[0], states[1], config.merge.t))
    model_dir = merged.save_pretrained(out / "merged" / "model")
    last = config.stage_config(len(config.stages) - 1, out)
    evaluation = {}
    for name in last.eval_tasks or sorted({item.task for item in last.mixture}):
        task = load_task(name, last.cache_dir).subset(last.eval_max_queries)
        evaluation[name] = evaluate_embedder(merged, task, dims=[*last.eval_dims, None],
                                             use_instruction=last.instruction, query_max_length=last.query_max_length,
                                             doc_max_length=last.max_length)
    return evaluation, model_dir


def _state_dict(out: Path, ref: str, template) -> dict:
    """Weights of ``stage`` (its final model) or ``stage@STEP`` (its checkpoint at that optimizer step)."""
    from qwenkit.core.checkpoint import list_checkpoints, load_checkpoint
    from qwenkit.embed.embedder import Embedder

    stage, _, step = ref.partition("@")
    if not step:
        return Embedder.from_pretrained(out / stage / "model").model.state_dict()
    found = {int(p.name.split("-")[1]): p for p in list_checkpoints(out / stage / "checkpoints")}
    if not step.isdigit() or int(step) not in found:
        raise ValueError(f"merge model {ref!r}: stage {stage!r} has checkpoints at steps {sorted(found)}; set "
                         "trainer.checkpoint_every / keep_last so the step you name is kept")
    state = load_checkpoint(found[int(step)]).model
    expected = template.model.state_dict().keys()
    if set(state) != set(expected):
        raise ValueError(f"checkpoint {found[int(step)]} does not hold the same tensors as the stage model")
    return state


def _load_evaluation(path: Path) -> dict:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {task: {int(dim): metrics for dim, metrics in curve.items()} for task, curve in raw.items()}


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = json.loads(json.dumps(base))
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = json.loads(json.dumps(value))
    return merged


KINDS = ("embedder", "pipeline", "reranker")


def config_kind(data: dict[str, Any]) -> str:
    """The ``kind`` of a training config mapping (default ``embedder``); raises on an unknown kind."""
    kind = data.get("kind", "embedder")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    return kind
