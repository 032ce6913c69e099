"""The report of one or more run directories: Markdown + HTML with tables, a degradation plot and radar charts."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from qwenkit.roleplay.agreement import cohen_kappa, krippendorff_alpha, spearman_rho
from qwenkit.roleplay.data import DIMENSIONS
from qwenkit.roleplay.run import pairwise_summary, read_jsonl, summarise


def _interval(row: dict[str, Any]) -> str:
    if row["n"] == 0:
        return "-"
    return f"{row['mean']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}]"


def radar_plot(path: Path, labels: list[str], series: dict[str, list[float]], title: str) -> Path:
    """One polygon per series over ``labels`` (0-100 scale); NaN points are drawn at 0 and named in the legend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    angles = np.linspace(0, 2 * math.pi, len(labels), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(5.2, 5.2), dpi=110, subplot_kw={"polar": True})
    for name, values in series.items():
        clean = [0.0 if math.isnan(v) else v for v in values]
        ax.plot(angles + angles[:1], clean + clean[:1], linewidth=1.5, label=name)
        ax.fill(angles + angles[:1], clean + clean[:1], alpha=0.12)
    ax.set_xticks(angles, labels)
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize="medium")
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def judge_agreement(judgments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pair of judges and dimension, on the replies both scored validly: the count, exact agreement, Cohen's
    kappa and Krippendorff's alpha (ordinal) of the labels, and Spearman's rho of the scores, where a
    ``score_from: logprobs`` judge contributes its expected score (finer than its label).

    Rule overrides are left out: both judges apply the same rules, so counting them would show agreement that no
    judge produced."""
    scores: dict[str, dict[tuple, float]] = defaultdict(dict)
    graded: dict[str, dict[tuple, float]] = defaultdict(dict)
    for j in judgments:
        if j["score"] is not None and j["status"] != "rule":
            key = (j["player"], j["dialogue_id"], j["round"], j["dimension"])
            scores[j["judge"]][key] = j["score"]
            graded[j["judge"]][key] = j["expected"] if j.get("expected") is not None else j["score"]
    judges = sorted(scores)
    rows = []
    for a_index, first in enumerate(judges):
        for second in judges[a_index + 1:]:
            for dimension in DIMENSIONS:
                keys = sorted(k for k in scores[first] if k[3] == dimension and k in scores[second])
                if not keys:
                    continue
                a = [scores[first][k] for k in keys]
                b = [scores[second][k] for k in keys]
                rows.append({"judges": f"{first} vs {second}", "dimension": dimension, "items": len(keys),
                             "exact": float(np.mean(np.equal(a, b))), "cohen_kappa": cohen_kappa(a, b),
                             "alpha_ordinal": krippendorff_alpha(np.array([a, b], dtype=float), level="ordinal"),
                             "spearman_rho": spearman_rho([graded[first][k] for k in keys],
                                                          [graded[second][k] for k in keys])})
    return rows


def label_spread(judgments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model judge and dimension: how often each label was given (a judge that gives one label to everything
    has kappa 0 with anyone, however good its other numbers look)."""
    counts: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for j in judgments:
        if j["status"] in {"judge", "rules"} and j["score"] is not None:
            counts[(j["judge"], j["dimension"])][j["score"]] += 1
    return [{"judge": k[0], "dimension": k[1], "labels": ", ".join(f"{s}: {n}" for s, n in sorted(v.items()))}
            for k, v in sorted(counts.items())]


def _write_transcript(path: Path, transcript: dict[str, Any], judgments: list[dict[str, Any]]) -> None:
    lines = [f"# {transcript['player']} / {transcript['dialogue_id']} ({transcript['lang']}, {transcript['scenario']})",
             ""]
    for r in transcript["rounds"]:
        marks = ", ".join(f"{j['judge']}:{j['dimension']}={j['score'] if j['score'] is not None else 'invalid'}"
                          for j in judgments if j["round"] == r["index"])
        lines += [f"**User {r['index'] + 1}:** {r['user']}", "", f"**Character:** {r['reply']}", "",
                  f"_scores: {marks}_", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def build_report(run_dirs: list[Path], out: Path, *, title: str = "Role-play benchmark", intro: str = "",
                 worst: int = 5, reps: int = 1000) -> tuple[Path, Path]:
    """Write ``report.md``/``report.html`` into ``out`` from the runs' judgments and transcripts."""
    from qwenkit.core.plots import line_plot
    from qwenkit.core.report import Report

    judgments, transcripts, pairs = [], [], []
    for run in run_dirs:
        if (run / "pairwise.jsonl").is_file():
            pairs += read_jsonl(run / "pairwise.jsonl")
        for name in ("judgments.jsonl", "transcripts.jsonl"):
            if not (run / name).is_file():
                raise FileNotFoundError(f"{run}: no {name}; is it a finished `qwenkit roleplay run` directory?")
        judgments += read_jsonl(run / "judgments.jsonl")
        transcripts += read_jsonl(run / "transcripts.jsonl")
    summary = summarise(judgments, reps=reps, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(title)
    if intro:
        report.text(intro)
    total = summary["judgments"]
    report.text(f"{len(transcripts)} dialogues, {total} judgments ({summary['invalid']} invalid, "
                f"{summary['rule_overrides']} fixed by a rule override). Scores are normalised to 0-100 "
                "(score / highest score of the dimension x 100); brackets are percentile cluster-bootstrap 95 % "
                "intervals that resample dialogues (the replies of one dialogue are correlated). Invalid judgments "
                "are counted, never averaged.")
    report.heading("Scores by dimension")
    pivot: dict[tuple[str, str], dict[str, Any]] = {}
    for row in summary["by_dimension"]:
        entry = pivot.setdefault((row["judge"], row["player"]), {"judge": row["judge"], "player": row["player"]})
        entry[row["dimension"]] = _interval(row)
    dims = [d for d in DIMENSIONS if any(r["dimension"] == d for r in summary["by_dimension"])]
    report.table(list(pivot.values()), ["judge", "player", *dims])
    report.heading("By language")
    rows = [{"judge": r["judge"], "player": r["player"], "lang": r["lang"], "dimension": r["dimension"],
             "score": _interval(r), "n": r["n"], "invalid": r["invalid"]} for r in summary["by_language"]]
    report.table(rows, ["judge", "player", "lang", "dimension", "score", "n", "invalid"])
    report.heading("By scenario")
    rows = [{"judge": r["judge"], "player": r["player"], "scenario": r["scenario"], "dimension": r["dimension"],
             "score": _interval(r), "n": r["n"], "invalid": r["invalid"]} for r in summary["by_scenario"]]
    report.table(rows, ["judge", "player", "scenario", "dimension", "score", "n", "invalid"])
    report.heading("Invalid-answer rate per judge")
    per_judge: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    masses: dict[str, list[float]] = defaultdict(list)
    for j in judgments:
        if j["status"] in {"judge", "invalid"}:
            per_judge[j["judge"]][0] += j["status"] == "invalid"
            per_judge[j["judge"]][1] += 1
        if j.get("score_mass") is not None:
            masses[j["judge"]].append(j["score_mass"])
    report.text("Model judges only (the rules judge and rule overrides never need an answer). A text judge's "
                "answer is invalid when no attempt, retries included, held a readable score; a logprob judge's "
                "when its probability on the scale's score tokens is below `min_score_mass` (the mean of that "
                "probability is shown).")
    report.table([{"judge": k, "judged replies": v[1], "invalid": v[0], "invalid rate": v[0] / v[1],
                   "mean score-token mass": float(np.mean(masses[k])) if masses[k] else "-"}
                  for k, v in sorted(per_judge.items())])
    agreement = judge_agreement(judgments)
    report.heading("Agreement between judges")
    if not agreement:
        report.text("No reply was scored validly by two judges without a rule override, so there is nothing to "
                    "compare.")
    else:
        report.text("On the replies both judges scored validly: exact agreement, Cohen's kappa and Krippendorff's "
                    "alpha (ordinal) of the labels, and Spearman's rho of the scores (a logprob judge's expected "
                    "score). Replies whose score a rule override fixed (EE not in first person, CM admits being an "
                    "AI) are left out, since both judges apply the same rules. NaN: undefined (one label only).")
        report.table(agreement)
        report.text("Labels given per judge and dimension (the spread behind the kappas):")
        report.table(label_spread(judgments))
    if pairs:
        report.heading("Pairwise (position swap)")
        report.text("Each pair of replies to the same user turn was judged in both orders; a side wins only when "
                    "both orders name it, and `orders_disagree` counts the pairs whose orders disagreed (position "
                    "bias; counted as ties).")
        report.table(pairwise_summary(pairs))
    report.heading("Degradation over rounds")
    series = {}
    for row in summary["by_round"]:
        x, y = series.setdefault(f"{row['judge']} / {row['player']}", ([], []))
        x.append(row["round"] + 1)
        y.append(row["mean"])
    plot = line_plot(out / "plots" / "rounds.png", series, title="Mean score (all dimensions) by round",
                     xlabel="round", ylabel="score (0-100)")
    report.image(plot, "Mean normalised score over all scored dimensions at each round, per judge and player; "
                       "later rounds have fewer replies (dialogues end at different lengths).")
    report.heading("Radar per player")
    for judge in sorted({r["judge"] for r in summary["by_dimension"]}):
        radar = {r["player"]: [] for r in summary["by_dimension"] if r["judge"] == judge}
        for player in radar:
            lookup = {r["dimension"]: r["mean"] for r in summary["by_dimension"]
                      if r["judge"] == judge and r["player"] == player}
            radar[player] = [lookup.get(d, float("nan")) for d in dims]
        path = radar_plot(out / "plots" / f"radar-{judge}.png", dims, radar, f"judge: {judge}")
        report.image(path, f"Mean score per dimension by judge {judge} (0-100); a dimension with no valid "
                           "score is drawn at 0.")
    report.heading("Worst transcripts")
    means: dict[tuple[str, str], list[float]] = defaultdict(list)
    for j in judgments:
        if j["normalised"] is not None:
            means[(j["player"], j["dialogue_id"])].append(j["normalised"])
    ranked = sorted(means, key=lambda k: (float(np.mean(means[k])), k))[:worst]
    by_key = {(t["player"], t["dialogue_id"]): t for t in transcripts}
    lines = []
    for key in ranked:
        path = out / "transcripts" / f"{key[0]}-{key[1]}.md"
        _write_transcript(path, by_key[key], [j for j in judgments if (j["player"], j["dialogue_id"]) == key])
        lines.append(f"- [{key[0]} / {key[1]}](transcripts/{path.name}): mean {np.mean(means[key]):.1f} over all "
                     "judges and dimensions")
    report.text("\n".join(lines) or "No scored dialogues.")
    return report.write(out)
