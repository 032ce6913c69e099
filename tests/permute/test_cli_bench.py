"""The CLI commands and the benchmark/report machinery, on tiny cases (the real benchmark is not a test)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from qwenkit.permute.bench import Case, run_benchmark, summary_rows, write_report
from qwenkit.permute.check import run_check
from qwenkit.permute.cli import app


def test_check_command_passes():
    result = CliRunner().invoke(app, ["check", "--cases", "12", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "all equal to NumPy" in result.output


def test_explain_command_prints_the_plan():
    result = CliRunner().invoke(app, ["explain", "16,32,15,32,15,15", "0,3,2,5,4,1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "kind=tile" in result.output and "block 225 x 32" in result.output


def test_explain_tune_measures_the_variants():
    result = CliRunner().invoke(app, ["explain", "19,16,14,11,12,8", "4,1,2,0,3,5", "--threads", "1", "--tune"])
    assert result.exit_code == 0, result.output
    assert "kind=strided" in result.output and "tuned: fastest of 3 measured variants" in result.output


def test_run_check_reports_no_failures():
    report = run_check(cases=20, seed=11, threads=(1,))
    assert report.ok and report.cases == 20


def test_benchmark_writes_json_markdown_and_charts(tmp_path):
    cases = [Case("tiny 2-D", (96, 80), "float32", (1, 0), "2-D"),
             Case("tiny 3-D", (8, 16, 12), "uint8", (2, 0, 1), "3-D")]
    record = run_benchmark(cases, threads_list=(1,), repeats=2, with_numba=False, progress=lambda _: None)
    assert len(record["results"]) == 2 and all(r["correct"] for r in record["results"])
    assert "load_average_before" in record and record["environment"]["isa"]
    rows = summary_rows(record)
    assert rows[0]["x NumPy"] > 0 and rows[0]["% of copy"] > 0
    json_path, md_path, chart = write_report(record, tmp_path, title="test")
    assert json.loads(json_path.read_text())["repeats"] == 2
    text = md_path.read_text()
    assert "tiny 2-D" in text and "x NumPy" in text and chart.exists()
    assert (tmp_path / "permute_copy_bandwidth.png").exists()
