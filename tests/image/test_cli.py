import json
from pathlib import Path

from typer.testing import CliRunner

from qwenkit.image.cli import app

TINY_SETS = [
    "width=16", "height=16", "batch_size=4", "codec_fit_samples=32", "model.layers=1", "model.heads=2",
    "model.head_dim=8", "model.axes_dims_rope=[2,2,4]", "model.codec_channels=8", "trainer.max_steps=2",
    "tasks={t2i: 1.0, ti2i: 1.0}",
]


def test_cli_synth_train_generate_edit_eval(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    result = runner.invoke(app, ["synth", "--out", str(data), "--set", "count=3", "--set", "languages=[en]",
                                 "--set", "stages=[word]", "--seed", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((data / "manifest.json").read_text())["kept"] == 3

    result = runner.invoke(app, ["eval-text", "--images", str(data), "--out", str(tmp_path / "scores.json")])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["n"] == 3 and 0.0 <= scores["ned"] <= 1.0

    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--eval-samples", "0", "--quiet", "--threads", "1"]
    result = runner.invoke(app, args + [x for s in TINY_SETS for x in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert (run / "model" / "qwenkit_image.json").is_file() and (run / "report.html").is_file()

    out = tmp_path / "gen"
    result = runner.invoke(app, ["generate", "--model", str(run / "model"), "--prompt", '"A" black on white',
                                 "--num", "2", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "grid.png").is_file() and (out / "0001.png").is_file()

    from PIL import Image

    wide = tmp_path / "wide"
    result = runner.invoke(app, ["generate", "--model", str(run / "model"), "--prompt", '"A" black on white',
                                 "--steps", "2", "--height", "16", "--width", "32", "--out", str(wide)])
    assert result.exit_code == 0, result.output
    assert Image.open(wide / "0000.png").size == (32, 16)
    result = runner.invoke(app, ["generate", "--model", str(run / "model"), "--prompt", "x", "--height", "18"])
    assert result.exit_code == 2 and "multiples" in result.output

    result = runner.invoke(app, ["edit", "--model", str(run / "model"), "--image", str(out / "0000.png"),
                                 "--instruction", "make text red", "--steps", "2", "--out", str(tmp_path / "ed")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ed" / "0001.png").is_file()
    result = runner.invoke(app, ["edit", "--model", str(run / "model"), "--image", str(wide / "0000.png"),
                                 "--instruction", "make text red", "--steps", "2", "--out", str(tmp_path / "ed2")])
    assert result.exit_code == 0, result.output
    # a 2:1 source at the kit's 16x16 area: 22.6x11.3 -> 24x12 (multiples of the 4 px codec patch)
    assert Image.open(tmp_path / "ed2" / "0001.png").size == (24, 12)

    fixtures = Path(__file__).parent / "fixtures"
    bench_out = tmp_path / "bench"
    result = runner.invoke(app, ["bench-text", "--benchmark", "cvtg-2k", "--prompts", str(fixtures / "cvtg"),
                                 "--model", str(run / "model"), "--limit", "2", "--steps", "2", "--out",
                                 str(bench_out)])
    assert result.exit_code == 0, result.output
    scores = json.loads((bench_out / "scores.json").read_text())
    assert scores["overall"]["n"] == 2 and 0.0 <= scores["overall"]["ned"] <= 1.0
    assert (bench_out / "report.html").is_file() and (bench_out / "images" / "CVTG_2-1.png").is_file()

    bad = runner.invoke(app, ["eval-text"])
    assert bad.exit_code != 0 and "exactly one" in bad.output
