import subprocess
import sys

from typer.testing import CliRunner

from qwenkit.cli import app
from qwenkit.core.plots import bar_plot, line_plot, scatter_plot
from qwenkit.core.report import Report
from qwenkit.core.repro import discover_repros
from qwenkit.core.runs import RunDir


def test_report_writes_markdown_and_html_with_relative_images(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in range(1, 4):
        run.log(step, {"loss": 1.0 / step})
    png = line_plot(run.plot_path("loss"), {"a": run.series("loss")}, bands={"a": ([0.1] * 3, [1.5] * 3)})
    bars = bar_plot(run.plot_path("bars"), ["x", "y"], {"ours": [2.0, 3.0], "peer": [1.0, 1.0]}, reference=1.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and bars.stat().st_size > 1000
    report = Report("T").text("**bold** and `code`\n- item one\n- item two").table(
        [{"name": "a|b", "value": 0.123456, "ok": True}]).image(png, "curve").code("x = 1")
    md, html = report.write(run.path)
    markdown = md.read_text()
    assert "| a\\|b | 0.1235 | yes |" in markdown and "![curve](plots/loss.png)" in markdown
    page = html.read_text()
    assert "<img src='plots/loss.png'" in page and "<b>bold</b>" in page and "<li>item two</li>" in page


def test_image_paths_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunDir("runs/demo/x")
    png = line_plot(run.plot_path("curve"), {"a": ([0, 1], [1, 0])})
    assert not png.is_absolute()
    md, _ = Report("T").image(png, "c").write(run.path)
    assert "![c](plots/curve.png)" in md.read_text()


def test_cli_version_help_and_doctor():
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).output.startswith("qwenkit ")
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0 and "torch" in result.output and "simd" in result.output
    assert runner.invoke(app, ["repro", "--list"]).output.count("smoke") == 1


def test_cli_help_starts_without_importing_torch():
    code = "import sys, qwenkit.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_unknown_reproduction_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--only", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown reproduction" in result.output


def test_repros_are_discovered_in_order():
    repros = discover_repros()
    assert next(iter(repros)) == "smoke"


def test_scatter_plot_writes_a_png(tmp_path):
    png = scatter_plot(tmp_path / "plots" / "tradeoff.png", {"dual": (23.0, 0.2), "vae": (25.5, 0.45)},
                       xlabel="consistency", ylabel="success")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_workers_run_reproductions_in_pinned_processes(tmp_path):
    from qwenkit.core.repro import run_repros_in_parallel

    started, done = [], []
    entries = run_repros_in_parallel(["smoke"], tmp_path, full=False, seed=0, threads=1, workers=2,
                                     on_start=started.append, on_done=done.append)
    assert started == ["smoke"] and [e["name"] for e in done] == ["smoke"]
    assert entries[0]["status"] == "ok" and entries[0]["summary"].startswith("copy-task exact match")
    assert (tmp_path / "smoke" / "report.md").is_file()


def test_a_reproduction_does_not_depend_on_the_generators_left_by_earlier_ones(tmp_path, monkeypatch):
    import random

    import numpy as np
    import torch

    from qwenkit.core import repro as repro_module
    from qwenkit.core.repro import Repro, run_repro

    def draw(ctx):
        return f"{random.random()} {np.random.rand()} {torch.rand(1).item()}"

    monkeypatch.setattr(repro_module, "discover_repros", lambda: {"draw": Repro(name="draw", title="draw", run=draw)})
    first = run_repro("draw", tmp_path, full=False, seed=3, threads=1)["summary"]
    random.random(), np.random.rand(), torch.rand(5)  # what an earlier reproduction in the same process leaves behind
    again = run_repro("draw", tmp_path, full=False, seed=3, threads=1)["summary"]
    assert again == first
    assert run_repro("draw", tmp_path, full=False, seed=4, threads=1)["summary"] != first
