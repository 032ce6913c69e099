import json

import pytest

from qwenkit.cli import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward-cli")
    assert run_cli(["reward", "data", "synthetic", "--out", str(root / "data"), "--train-pairs", "40",
                    "--test-pairs", "12", "--seed", "1"]) == 0
    config = root / "rm.yaml"
    config.write_text(
        "model: {size: nano, max_length: 64}\n"
        f"data: {{train: {root / 'data' / 'train.jsonl'}, eval: {root / 'data' / 'test.jsonl'}}}\n"
        "batch_size: 8\n"
        "trainer: {lr: 0.003, max_steps: 4}\n"
    )
    assert run_cli(["reward", "train", "--config", str(config), "--out", str(root / "run"), "--quiet"]) == 0
    return root


def test_train_then_resume_then_eval_with_style_control(trained, capsys):
    root = trained
    assert run_cli(["reward", "train", "--config", str(root / "rm.yaml"), "--out", str(root / "run"),
                    "--set", "trainer.max_steps=6", "--resume", "--quiet"]) == 0
    steps = [json.loads(line)["step"] for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 6
    assert run_cli(["reward", "eval", "--model", str(root / "run" / "model"), "--data",
                    str(root / "data" / "test.jsonl"), "--held-out", str(root / "data" / "held_out.jsonl"),
                    "--out", str(root / "eval")]) == 0
    record = json.loads((root / "eval" / "eval.json").read_text())
    assert record["overall"]["pairs"] == 36
    assert record["style_control"]["held_out_pairs"] == 36
    assert (root / "eval" / "report.md").is_file()


def test_scorer_is_a_reward_function_for_rl(trained):
    from qwenkit.reward import reward_function

    scorer = reward_function(trained / "run" / "model")
    batch = scorer.score(["What is 2+3?", "What is 2+3?"], ["2+3=5.", "2+3=6."])
    assert len(batch) == 2
    assert scorer("What is 2+3?", "2+3=5.", "5") == pytest.approx(batch[0], abs=1e-5)


def test_stackexchange_command_writes_splits(tmp_path):
    from pathlib import Path

    posts = Path(__file__).parent / "fixtures" / "Posts.xml"
    assert run_cli(["reward", "data", "stackexchange", "--posts", str(posts), "--site", "stats",
                    "--pairs-per-question", "3", "--test-fraction", "0", "--out", str(tmp_path)]) == 0
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 5
    assert json.loads((tmp_path / "stats.json").read_text())["duplicate_questions"] == 1


def test_scaling_list_prints_the_cells(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("model_sizes: [nano, tiny]\ndata_sizes: [16, 32]\nseeds: [0]\n")
    assert run_cli(["reward", "scaling", "--config", str(grid), "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["0\t000-nano-D16-s0", "1\t001-nano-D32-s0", "2\t002-tiny-D16-s0", "3\t003-tiny-D32-s0"]


def test_the_quick_reproduction_is_discovered():
    from qwenkit.core.repro import discover_repros

    repro = discover_repros()["reward-worldpm"]
    assert repro.quick_minutes <= 2
