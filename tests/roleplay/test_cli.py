import csv

import yaml
from roleplay_fixtures import base_config
from typer.testing import CliRunner

from qwenkit.cli import app
from qwenkit.roleplay.data import load_shipped_dataset


def test_shipped_dataset_meets_the_spec():
    dataset = load_shipped_dataset()
    cards = list(dataset.characters.values())
    assert len(cards) >= 24
    assert sum(c.kind == "abstract" for c in cards) * 2 == len(cards)
    assert sum(c.lang == "zh" for c in cards) * 2 == len(cards)
    scripted = [d for d in dataset.dialogues if d.turns is not None]
    assert len(scripted) >= 40 and min(len(d.turns) for d in scripted) >= 6
    cells = {(d.lang, d.scenario) for d in scripted}
    assert len(cells) == 10
    assert any(d.simulate is not None for d in dataset.dialogues)


def test_run_report_agreement_end_to_end(tmp_path):
    config = base_config("shipped", select={"ids": ["en-cm-01", "zh-sec-01", "zh-sim-01"]})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["roleplay", "run", "--config", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["roleplay", "report", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    for section in ("Scores by dimension", "By language", "Agreement between judges", "Worst transcripts"):
        assert section in markdown
    assert (tmp_path / "run" / "plots" / "radar-llm.png").is_file()
    assert list((tmp_path / "run" / "transcripts").glob("*.md"))
    # human labels for three items; the judge's labels come from the run
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "dimension", "rater", "score"])
        for rnd in range(3):
            for rater, score in (("ann1", 3), ("ann2", 3), ("ann3", 5)):
                writer.writerow([f"a/en-cm-01/{rnd}", "PA", rater, score])
    result = runner.invoke(app, ["roleplay", "agreement", str(labels), "--run", str(tmp_path / "run"),
                                 "--run-judge", "llm"])
    assert result.exit_code == 0, result.output
    assert "judge_vs_majority" in result.output and "| PA | 3 | 3 |" in result.output
