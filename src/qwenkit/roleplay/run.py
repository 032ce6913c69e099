"""A benchmark run: play every selected dialogue with every player, judge every reply on every dimension, aggregate.

Outputs in the run directory: ``config.yaml``; ``calls.sqlite`` (the call cache: resume repeats no finished call);
``transcripts.jsonl`` and ``judgments.jsonl`` (sorted by id, no timings: byte-identical whatever the concurrency and
however often the run was interrupted); ``summary.json`` (aggregates with bootstrap intervals); ``usage.json``
(calls, cache hits, tokens and cost per role for this invocation).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel, dump_config
from qwenkit.core.errors import QwenkitError
from qwenkit.roleplay.backends import BackendSpec, TransformersSpec, build_backend
from qwenkit.roleplay.calls import CallCache, CallRunner, RoleChannel
from qwenkit.roleplay.data import Dataset, Dimension, load_dataset, load_protocol, shipped_dataset_path


class Selection(StrictModel):
    langs: list[str] | None = None
    scenarios: list[str] | None = None
    ids: list[str] | None = None
    limit: int | None = Field(default=None, ge=1)
    max_rounds: int | None = Field(default=None, ge=1)
    """Play at most this many rounds of each dialogue (a quick slice); None: all."""


class RunConfig(StrictModel):
    data: str = "shipped"
    """A dataset file or directory, ``shipped`` (the dataset written for qwenkit), or ``rmtbench:PATH`` (RMTBench's
    files, :mod:`qwenkit.roleplay.rmtbench`)."""
    select: Selection = Field(default_factory=Selection)
    players: dict[str, BackendSpec] = Field(min_length=1)
    simulator: BackendSpec | None = None
    judges: dict[str, BackendSpec] = Field(min_length=1)
    dimensions: list[Dimension] | None = None
    """Score only these dimensions (where they apply); None: every applicable dimension."""
    seed: int = 0
    concurrency: int = Field(default=8, ge=1, le=512)
    judge_retries: int = Field(default=2, ge=0)
    context_rounds: int = Field(default=4, ge=0)
    """How many earlier rounds the judge sees before the reply it scores."""
    bootstrap_reps: int = Field(default=1000, ge=10)
    budget_usd: float | None = Field(default=None, gt=0)
    pairwise: bool = False
    """Also compare every pair of players reply by reply (scripted dialogues, LLM judges), in both orders."""

    @model_validator(mode="after")
    def _roles(self) -> RunConfig:
        for label, spec in self.players.items():
            if spec.kind == "rules":
                raise ValueError(f"players.{label}: kind 'rules' is a judge; a player needs openai, transformers "
                                 "or scripted")
        if self.simulator is not None and self.simulator.kind == "rules":
            raise ValueError("simulator: kind 'rules' is a judge; use openai, transformers or scripted")
        for role, spec in [*((f"players.{k}", v) for k, v in self.players.items()), ("simulator", self.simulator)]:
            if spec is not None and (spec.score_from != "text" or spec.calibrate):
                raise ValueError(f"{role}.score_from/calibrate: only judges read scores")
        for label, spec in self.judges.items():
            if spec.thinking_budget is not None:
                raise ValueError(f"judges.{label}.thinking_budget: only players take a thinking budget")
            if spec.calibrate and spec.score_from != "logprobs":
                raise ValueError(f"judges.{label}.calibrate: calibration needs score_from: logprobs")
            if spec.score_from == "logprobs" and spec.kind not in ("openai", "transformers", "scripted"):
                raise ValueError(f"judges.{label}.score_from: logprobs needs a model judge (openai, transformers "
                                 "or scripted)")
        if self.pairwise and len(self.players) < 2:
            raise ValueError("pairwise: needs at least two players to compare")
        return self


MAY_CHANGE = ("concurrency", "budget_usd")
"""Config fields a resumed run may change (they never change an answer)."""


class RunStopped(QwenkitError):
    """The run stopped cleanly before finishing (budget); what finished is cached. Exit code 3."""

    exit_code = 3


def dataset_of(config: RunConfig) -> Dataset:
    selection = config.select
    if config.data.startswith("rmtbench:"):
        from qwenkit.roleplay.rmtbench import load_rmtbench

        path = Path(config.data.removeprefix("rmtbench:"))
        loaded = load_rmtbench(path)
    else:
        path = shipped_dataset_path() if config.data == "shipped" else Path(config.data)
        loaded = load_dataset(path)
    dataset = loaded.select(langs=selection.langs, scenarios=selection.scenarios, ids=selection.ids,
                            limit=selection.limit)
    if selection.max_rounds is not None:
        dataset.dialogues = [_truncated(d, selection.max_rounds) for d in dataset.dialogues]
    if not dataset.dialogues:
        raise ValueError(f"select: no dialogue of {path} matches {selection.model_dump(exclude_none=True)}")
    simulated = [d.id for d in dataset.dialogues if d.simulate is not None]
    if simulated and config.simulator is None:
        raise ValueError(f"simulator: dialogues {simulated[:3]} are simulated; add a simulator backend spec")
    return dataset


def _truncated(script, rounds: int):
    if script.turns is not None:
        return script.model_copy(update={"turns": script.turns[:rounds]})
    limit = min(rounds, script.simulate.max_turns)
    return script.model_copy(update={"simulate": script.simulate.model_copy(update={"max_turns": limit})})


def _comparable(config: RunConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    for name in MAY_CHANGE:
        data.pop(name, None)
    for section in ("players", "judges"):
        for spec in data[section].values():
            for name in ("base_url", "timeout_s", "max_retries", "rate_limit", "price", "api_key_env"):
                spec.pop(name, None)
    return data


def prepare_run_dir(out: Path, config: RunConfig, *, resume: bool | str | None = None) -> None:
    """Create ``out``, or check that a resumed run's saved config matches (except harmless fields).

    ``resume``: None/False (a new run; a directory holding a run is refused), ``"auto"``/True (continue when there
    is a run, start one otherwise) or ``"must"`` (refuse when there is nothing to continue).
    """
    from qwenkit.core.errors import ResumeError
    from qwenkit.core.runs import normalize_resume

    mode = normalize_resume(resume)
    saved = out / "config.yaml"
    if not saved.exists() and mode == "must":
        raise ResumeError(f"--resume=must: {out} holds no run to continue (no config.yaml)")
    if saved.exists():
        if mode is None:
            raise ResumeError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        import yaml

        previous = RunConfig.model_validate(yaml.safe_load(saved.read_text(encoding="utf-8")))
        old, new = _comparable(previous), _comparable(config)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            raise ResumeError(f"--resume: fields {changed} differ from the run in {out}; only {list(MAY_CHANGE)}, "
                              "URLs, timeouts, retries, rate limits and prices may change")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(dump_config(config), encoding="utf-8")


def _channels(config: RunConfig, backends: dict[str, Any]) -> dict[str, RoleChannel]:
    shared: dict[str, Any] = {}
    roles: dict[str, Any] = {f"player:{k}": v for k, v in config.players.items()}
    if config.simulator is not None:
        roles["simulator"] = config.simulator
    roles.update({f"judge:{k}": v for k, v in config.judges.items() if v.kind != "rules"})
    channels = {}
    for role, spec in roles.items():
        backend = backends[role] if role in backends else build_backend(spec, shared=shared)
        channels[role] = RoleChannel(backend, {**spec.identity()}, config.concurrency, spec.rate_limit, spec.price,
                                     exclusive=isinstance(spec, TransformersSpec))
    return channels


def _parallel(pool: ThreadPoolExecutor, tasks: dict[Any, Any], description: str, quiet: bool | None) -> dict:
    """Run the tasks on ``pool``; on the first failure cancel what has not started, let running calls finish
    (their answers are cached) and raise it."""
    from qwenkit.core.progress import ProgressBar

    futures = {pool.submit(fn): key for key, fn in tasks.items()}
    with ProgressBar(len(futures), description, quiet=quiet) as bar:
        for future in as_completed(futures):
            if future.exception() is not None:
                for other in futures:
                    other.cancel()
                wait(futures)
                raise future.exception()
            bar.update()
    return {key: future.result() for future, key in futures.items()}


def execute_run(config: RunConfig, out: str | Path, *, resume: bool | str | None = None,
                backends: dict[str, Any] | None = None, quiet: bool | None = None) -> dict[str, Any]:
    """Run (or resume) a benchmark into ``out``; returns the summary. ``backends`` injects backends by role
    (``player:<label>``, ``simulator``, ``judge:<label>``), e.g. a failing one in tests."""
    from qwenkit.roleplay.calls import BudgetExhausted
    from qwenkit.roleplay.engine import run_dialogue
    from qwenkit.roleplay.judge import judge_reply

    out = Path(out)
    dataset = dataset_of(config)
    protocol = load_protocol()
    prepare_run_dir(out, config, resume=resume)
    cache = CallCache(out / "calls.sqlite")
    runner = CallRunner(cache, _channels(config, backends or {}), protocol_version=protocol.version,
                        budget_usd=config.budget_usd)
    scripts = {d.id: d for d in dataset.dialogues}
    try:
        with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            play = {(player, d.id): (lambda p=player, s=d, spec=spec: run_dialogue(
                        s, dataset.character(s), player=p, player_spec=spec, runner=runner, protocol=protocol,
                        seed=config.seed, simulator_spec=config.simulator))
                    for player, spec in config.players.items() for d in dataset.dialogues}
            transcripts = _parallel(pool, play, "roleplay: dialogues", quiet)
            work = {}
            for (player, dialogue_id), transcript in transcripts.items():
                script = scripts[dialogue_id]
                for index in range(len(transcript.rounds)):
                    for dimension in script.scored_dimensions:
                        if config.dimensions is not None and dimension not in config.dimensions:
                            continue
                        for judge, spec in config.judges.items():
                            work[(judge, player, dialogue_id, index, dimension)] = (
                                lambda j=judge, js=spec, t=transcript, i=index, dim=dimension, s=script: judge_reply(
                                    judge=j, judge_spec=js, runner=runner, protocol=protocol, transcript=t, index=i,
                                    dimension=dim, card=dataset.character(s), script=s, seed=config.seed,
                                    retries=config.judge_retries, context_rounds=config.context_rounds))
            judgments = _parallel(pool, work, "roleplay: judgments", quiet)
            pairs = _parallel(pool, _pairwise_tasks(config, transcripts, scripts, dataset, runner, protocol),
                              "roleplay: pairwise", quiet) if config.pairwise else {}
    except BudgetExhausted as exc:
        raise RunStopped(str(exc)) from None
    finally:
        _write_json(out / "usage.json", {role: vars(u) for role, u in sorted(runner.usage.items())})
        cache.close()
    transcript_rows = [transcripts[k].to_json() for k in sorted(transcripts)]
    judgment_rows = [judgments[k].to_json() for k in sorted(judgments)]
    _write_jsonl(out / "transcripts.jsonl", transcript_rows)
    _write_jsonl(out / "judgments.jsonl", judgment_rows)
    summary = summarise(judgment_rows, reps=config.bootstrap_reps, seed=config.seed)
    if config.pairwise:
        pair_rows = [pairs[k].to_json() for k in sorted(pairs)]
        _write_jsonl(out / "pairwise.jsonl", pair_rows)
        summary["pairwise"] = pairwise_summary(pair_rows)
    _write_json(out / "summary.json", summary)
    return summary


def _pairwise_tasks(config: RunConfig, transcripts, scripts, dataset, runner, protocol) -> dict:
    from qwenkit.roleplay.judge import judge_pair

    players = sorted(config.players)
    tasks = {}
    for judge, spec in config.judges.items():
        if spec.kind == "rules":
            continue
        for i, first in enumerate(players):
            for second in players[i + 1:]:
                for dialogue_id, script in scripts.items():
                    if script.turns is None:
                        continue
                    a, b = transcripts[(first, dialogue_id)], transcripts[(second, dialogue_id)]
                    for index in range(min(len(a.rounds), len(b.rounds))):
                        for dimension in script.scored_dimensions:
                            if config.dimensions is not None and dimension not in config.dimensions:
                                continue
                            tasks[(judge, first, second, dialogue_id, index, dimension)] = (
                                lambda j=judge, js=spec, x=a, y=b, i=index, d=dimension, s=script: judge_pair(
                                    judge=j, judge_spec=js, runner=runner, protocol=protocol, first=x, second=y,
                                    index=i, dimension=d, card=dataset.character(s), seed=config.seed,
                                    retries=config.judge_retries))
    return tasks


def pairwise_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per judge, player pair and dimension: wins of each side, ties, invalid, and how often the two orders
    disagreed (position bias; such pairs count as ties)."""
    from collections import defaultdict

    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(
        ("first", "second", "tie", "invalid", "orders_disagree"), 0))
    for row in rows:
        entry = counts[(row["judge"], row["first"], row["second"], row["dimension"])]
        entry[row["verdict"]] += 1
        mapped = [{"A": "first", "B": "second"}.get(row["orders"][0], row["orders"][0]),
                  {"A": "second", "B": "first"}.get(row["orders"][1], row["orders"][1])]
        entry["orders_disagree"] += int("invalid" not in mapped and mapped[0] != mapped[1])
    return [{"judge": k[0], "first": k[1], "second": k[2], "dimension": k[3], **v} for k, v in sorted(counts.items())]


def summarise(judgments: list[dict[str, Any]], *, reps: int, seed: int) -> dict[str, Any]:
    from qwenkit.roleplay.aggregate import aggregate

    return {
        "by_dimension": aggregate(judgments, ["judge", "player", "dimension"], reps=reps, seed=seed),
        "by_language": aggregate(judgments, ["judge", "player", "lang", "dimension"], reps=reps, seed=seed),
        "by_scenario": aggregate(judgments, ["judge", "player", "scenario", "dimension"], reps=reps, seed=seed),
        "by_cell": aggregate(judgments, ["judge", "player", "lang", "scenario", "dimension"], reps=reps, seed=seed),
        "by_round": aggregate(judgments, ["judge", "player", "round"], reps=reps, seed=seed),
        "judgments": len(judgments),
        "invalid": sum(1 for j in judgments if j["status"] == "invalid"),
        "rule_overrides": sum(1 for j in judgments if j["status"] == "rule"),
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from qwenkit.core.checkpoint import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def _write_json(path: Path, data: Any) -> None:
    from qwenkit.core.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
