from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

from qwenkit.core.config import ConfigError, load_config
from qwenkit.embed.cli import app
from qwenkit.embed.embedder import Embedder
from qwenkit.embed.pipeline import PipelineConfig

TINY = {"model": "tiny-qwen3", "batch_size": 4, "max_length": 24, "query_max_length": 16, "eval_max_queries": 10,
        "eval_dims": [16], "mining": {"method": "none"}, "trainer": {"max_steps": 2, "lr": 1e-3}}


def test_default_pipeline_is_weak_then_filtered_supervised_then_merge(tmp_path):
    config = load_config(PipelineConfig, {"kind": "pipeline"})
    assert [s.name for s in config.stages] == ["weak", "supervised"]
    supervised = config.stage_config(1, tmp_path)
    assert supervised.cosine_filter == 0.7 and supervised.model == str(tmp_path / "weak" / "model")
    assert [(m.task, m.pairs) for m in supervised.mixture] == [("stdlib", "labelled"), ("stdlib", "weak")]
    assert config.merge is not None and config.merge.models == ["weak", "supervised"] and config.merge.t == 0.5
    with pytest.raises(ConfigError, match="not an earlier stage"):
        load_config(PipelineConfig, {"stages": [{"name": "a", "init": "b"}, {"name": "b"}]})
    with pytest.raises(ConfigError, match="merge.models"):
        load_config(PipelineConfig, {"stages": [{"name": "a"}], "merge": {"models": ["a", "zzz"]}})
    bad = load_config(PipelineConfig, {"stages": [{"name": "a", "set": {"batch_size": 1}}], "merge": None})
    with pytest.raises(ConfigError, match="(?s)stage 'a'.*stages.0.set.*batch_size"):
        bad.stage_config(0, tmp_path)


def test_pipeline_command_trains_stages_merges_and_resumes(tmp_path, stdlib_cache):
    pipeline = {"kind": "pipeline", "base": {**TINY, "cache_dir": str(stdlib_cache)},
                "stages": [{"name": "weak", "set": {"mixture": [{"task": "stdlib", "pairs": "weak", "max_pairs": 64}]}},
                           {"name": "sup", "set": {"cosine_filter": -1.0, "trainer": {"checkpoint_every": 1},
                                                   "mixture": [{"task": "stdlib", "max_pairs": 64},
                                                               {"task": "stdlib", "pairs": "weak", "max_pairs": 64}]}}],
                "merge": {"models": ["sup@1", "sup"], "t": 0.5}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    for stage in ("weak", "sup", "merged"):
        assert (run / stage / "model" / "qwenkit_embed.json").is_file()
    sup_config = yaml.safe_load((run / "sup" / "config.yaml").read_text())
    assert sup_config["model"] == str(run / "weak" / "model")  # the stage started from the weak stage's model
    report = (run / "report.md").read_text()
    assert "weak" in report and "slerp(sup@1, sup, t=0.5)" in report
    # slerp at t=0.5 of two different states lies strictly between them
    final = Embedder.from_pretrained(run / "sup" / "model").model.state_dict()
    merged = Embedder.from_pretrained(run / "merged" / "model").model.state_dict()
    assert any(not torch.equal(final[k], merged[k]) for k in final)
    again = runner.invoke(app, ["train", "--config", str(path), "--out", str(run), "--quiet"])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, ["train", "--config", str(path), "--out", str(run), "--quiet", "--resume=auto"])
    assert resumed.exit_code == 0, resumed.output


def test_reranker_command_trains_and_evaluates(tmp_path, stdlib_cache, tiny_lm):
    model, tokenizer = tiny_lm
    embedder_dir = Embedder(model, tokenizer, max_length=24).save_pretrained(tmp_path / "embedder")
    runner = CliRunner()
    args = ["train-reranker", "--out", str(tmp_path / "rr"), "--quiet", "--set", f"cache_dir={stdlib_cache}",
            "--set", "max_pairs=16", "--set", "batch_size=4", "--set", "trainer.max_steps=2",
            "--set", f"eval_embedder={embedder_dir}", "--set", "eval_max_queries=3", "--set", "eval_top_k=2",
            "--set", "max_length=300"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "rr" / "report.md").read_text()
    assert "embedder+reranker" in report
    assert (tmp_path / "rr" / "model" / "config.json").is_file()
    bad = runner.invoke(app, ["train", "--set", "kind=ranker"])
    assert bad.exit_code == 2 and "kind" in bad.output
