from __future__ import annotations

import torch
from typer.testing import CliRunner

from qwenkit.embed.cli import app
from qwenkit.embed.embedder import Embedder


def test_data_and_merge_commands(tiny_lm, stdlib_cache, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "stdlib", "--cache-dir", str(stdlib_cache)])
    assert result.exit_code == 0, result.output
    assert "600 test queries" in result.output and "sha256" in result.output

    from qwenkit.lm import tiny_qwen3_for

    model, tokenizer = tiny_lm
    Embedder(model, tokenizer).save_pretrained(tmp_path / "a")
    Embedder(tiny_qwen3_for(tokenizer, "nano", seed=5), tokenizer).save_pretrained(tmp_path / "b")
    for t, expected in (("0.0", "a"), ("1.0", "b")):
        result = runner.invoke(app, ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--t", t,
                                     "--out", str(tmp_path / f"m{t}")])
        assert result.exit_code == 0, result.output
        merged = Embedder.from_pretrained(tmp_path / f"m{t}").model.state_dict()
        source = Embedder.from_pretrained(tmp_path / expected).model.state_dict()
        assert all(torch.equal(merged[k], source[k]) for k in source)
    bad = runner.invoke(app, ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--t", "2"])
    assert bad.exit_code != 0
