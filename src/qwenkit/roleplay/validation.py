"""Judge validation against human labels: the label file, and one row of statistics per dimension.

Label file (CSV with a header, or JSONL): one rating per line with ``item`` (any id), ``dimension`` (EE, EC, ...),
``rater`` and ``score`` (a number; empty or null = missing). The judge's ratings are the rows whose rater is the
judge's name; ratings named ``<judge>@<seed>`` are the same judge at other seeds (self-consistency); every other
rater is a human annotator. :func:`judge_labels_from_run` turns a run's ``judgments.jsonl`` into such rows.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from qwenkit.roleplay.agreement import (
    cohen_kappa,
    exact_agreement,
    fleiss_kappa,
    krippendorff_alpha,
    majority_agreement,
    majority_labels,
    spearman_rho,
)
from qwenkit.roleplay.data import RoleplayDataError

FIELDS = ("item", "dimension", "rater", "score")


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """Rows ``{item, dimension, rater, score}`` (score a float or None); errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise RoleplayDataError(f"{path}: no such label file; pass a CSV or JSONL file with columns {list(FIELDS)}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        raw = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise RoleplayDataError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
    else:
        reader = csv.DictReader(text.splitlines())
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise RoleplayDataError(f"{path}: the header lacks columns {missing}; it needs {list(FIELDS)}")
        raw = [(number, row) for number, row in enumerate(reader, 2)]
    rows = []
    for number, record in raw:
        if not isinstance(record, dict):
            raise RoleplayDataError(f"{path}: line {number}: must be an object with fields {list(FIELDS)}")
        for field in FIELDS[:3]:
            if not str(record.get(field) or "").strip():
                raise RoleplayDataError(f"{path}: line {number}: field {field!r} is missing or empty")
        score = record.get("score")
        if score in (None, ""):
            value = None
        else:
            try:
                value = float(score)
            except (TypeError, ValueError):
                raise RoleplayDataError(f"{path}: line {number}: field 'score' must be a number or empty, got "
                                        f"{score!r}") from None
        rows.append({"item": str(record["item"]), "dimension": str(record["dimension"]),
                     "rater": str(record["rater"]), "score": value})
    if not rows:
        raise RoleplayDataError(f"{path}: holds no ratings")
    return rows


def judge_labels_from_run(judgments: list[dict[str, Any]], judge: str, rater: str | None = None) -> list[dict]:
    """A run's judgments of ``judge`` as label rows (item = player/dialogue/round), score None when invalid."""
    return [{"item": f"{j['player']}/{j['dialogue_id']}/{j['round']}", "dimension": j["dimension"],
             "rater": rater or judge, "score": j["score"]} for j in judgments if j["judge"] == judge]


def _matrix(rows: list[dict[str, Any]], raters: list[str], items: list[str]) -> np.ndarray:
    table = np.full((len(raters), len(items)), np.nan)
    r_index, i_index = {r: k for k, r in enumerate(raters)}, {i: k for k, i in enumerate(items)}
    for row in rows:
        if row["rater"] in r_index and row["score"] is not None:
            table[r_index[row["rater"]], i_index[row["item"]]] = row["score"]
    return table


def agreement_table(rows: list[dict[str, Any]], judge: str) -> list[dict[str, Any]]:
    """Per dimension: items, RMTBench's raw agreement of the judge (and of each annotator) with the annotators'
    majority, Cohen's kappa judge vs majority, Fleiss' kappa and Krippendorff's alpha of the annotators, Spearman's
    rho judge vs annotator mean, and the judge's self-consistency over seeds (alpha, exact agreement)."""
    by_dimension: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_dimension[row["dimension"]].append(row)
    table = []
    for dimension in sorted(by_dimension):
        dim_rows = by_dimension[dimension]
        items = sorted({r["item"] for r in dim_rows})
        raters = sorted({r["rater"] for r in dim_rows})
        seeds = [r for r in raters if r.startswith(f"{judge}@")]
        humans = [r for r in raters if r != judge and r not in seeds]
        if not humans:
            raise RoleplayDataError(f"dimension {dimension}: no human annotator ratings (raters: {raters}); the "
                                    f"judge is {judge!r}")
        human = _matrix(dim_rows, humans, items)
        judge_row = _matrix(dim_rows, [judge], items)[0]
        majority = majority_labels(human)
        rated = (~np.isnan(human)).sum(axis=0)
        human_mean = np.where(rated > 0, np.nansum(human, axis=0) / np.maximum(rated, 1), np.nan)
        row: dict[str, Any] = {
            "dimension": dimension, "items": len(items), "annotators": len(humans),
            "judge_vs_majority": majority_agreement(judge_row, human),
            "annotators_vs_majority": ", ".join(f"{majority_agreement(h, human):.2f}" for h in human),
            "cohen_kappa": cohen_kappa(judge_row, majority),
            "fleiss_kappa": fleiss_kappa(human),
            "alpha_ordinal": krippendorff_alpha(human, "ordinal"),
            "alpha_nominal": krippendorff_alpha(human, "nominal"),
            "spearman": spearman_rho(judge_row, human_mean),
        }
        if seeds:
            runs = _matrix(dim_rows, [judge, *seeds], items)
            row["self_alpha_ordinal"] = krippendorff_alpha(runs, "ordinal")
            row["self_exact"] = exact_agreement(runs)
        table.append(row)
    return table
