"""The logprob judge: score distributions, calibration, the local and served paths, and runs that use it."""

import json
import math
import sqlite3

import pytest
from roleplay_fixtures import base_config

from qwenkit.core.config import load_config
from qwenkit.roleplay.logprob_judge import (
    argmax_score,
    calibrate,
    expected_score,
    first_scored_position,
    score_distribution,
    top_logprobs_once,
)
from qwenkit.roleplay.run import RunConfig, execute_run, read_jsonl


def test_score_distribution_by_hand():
    top = [("1", math.log(0.4)), ("The", math.log(0.2)), (" 3", math.log(0.2)), ("3", math.log(0.1)),
           ("7", math.log(0.05)), ("0", math.log(0.05))]
    p, mass = score_distribution(top, (1, 5))
    assert mass == pytest.approx(0.7)
    assert p == pytest.approx({1: 0.4 / 0.7, 3: 0.3 / 0.7})
    pass_fail, mass01 = score_distribution(top, (0, 1))
    assert mass01 == pytest.approx(0.45) and pass_fail == pytest.approx({0: 0.05 / 0.45, 1: 0.4 / 0.45})
    assert score_distribution([("The", -0.1), ("12", -3.0)], (1, 5)) == ({}, 0.0)


def test_calibration_expected_and_argmax_by_hand():
    p = {1: 0.6, 3: 0.3, 5: 0.1}
    prior = {1: 0.5, 3: 0.25, 5: 0.25}
    # weights 1.2, 1.2, 0.4 over a total of 2.8
    q = calibrate(p, prior)
    assert q == pytest.approx({1: 3 / 7, 3: 3 / 7, 5: 1 / 7})
    assert argmax_score(q) == 1  # a tie goes to the lower score
    assert expected_score(q) == pytest.approx(17 / 7)
    assert argmax_score({1: 0.2, 4: 0.5, 5: 0.3}) == 4
    assert calibrate({2: 1.0}, {1: 1.0}) == {}
    assert calibrate({1: 0.5, 2: 0.5}, {1: 0.5}) == {1: 1.0}


def test_the_score_position_skips_leading_whitespace():
    content = [{"token": " ", "logprob": -0.1, "top_logprobs": [{"token": " ", "logprob": -0.1}]},
               {"token": "4", "logprob": -0.5, "top_logprobs": [{"token": "4", "logprob": -0.5},
                                                               {"token": "2", "logprob": -1.5}]}]
    assert first_scored_position(content) == [("4", -0.5), ("2", -1.5)]
    assert first_scored_position([{"token": "", "top_logprobs": []}]) == []


def test_local_and_served_paths_give_the_same_distribution():
    """The same tiny model read directly (one forward pass) and through qwenkit.infer's server (logprobs)."""
    from qwenkit.core.serving import serve_in_background
    from qwenkit.infer import create_app
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for
    from qwenkit.lm.backends import OpenAIChatBackend, TransformersBackend

    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, size="nano", moe=False).eval()
    params = {"top_logprobs": 5, "seed": 1}
    local_backend = TransformersBackend(model, tokenizer)
    with serve_in_background(create_app(model, tokenizer, model_name="tiny")) as url:
        remote = OpenAIChatBackend(f"{url}/v1", "tiny", max_retries=0)
        # this random model answers the first prefill with whitespace only (no score position within the steps),
        # the second at once
        for prefill, found in (('{"score": ', False), ("Score", True)):
            messages = [{"role": "system", "content": "judge"}, {"role": "user", "content": "Rate: hello there 3"},
                        {"role": "assistant", "content": prefill}]
            local = top_logprobs_once(local_backend, messages, params)
            served = top_logprobs_once(remote, messages, params)
            assert bool(local["top"]) == bool(served["top"]) == found
            assert [t for t, _ in local["top"]][:3] == [t for t, _ in served["top"]][:3]
            assert dict(local["top"]) == pytest.approx(dict(served["top"]), abs=5e-3)
            assert local["usage"]["prompt_tokens"] == served["usage"]["prompt_tokens"]


def test_a_server_without_logprobs_is_a_clear_error():
    from qwenkit.lm.backends import BackendError, Completion

    class NoLogprobs:
        name = "plain"

        def complete(self, messages, **kwargs):
            return Completion("3", raw={"choices": [{"message": {"content": "3"}}]})

    with pytest.raises(BackendError, match="score_from: text"):
        top_logprobs_once(NoLogprobs(), [{"role": "user", "content": "x"}], {"top_logprobs": 5, "seed": 0})


def _logprob_config(data, **judge):
    return base_config(data, judges={"lp": {"kind": "scripted", "name": "judge", "score_from": "logprobs",
                                            "calibrate": True, **judge}, "rules": {"kind": "rules"}})


def test_a_run_with_a_calibrated_logprob_judge(small_dataset, tmp_path):
    from qwenkit.roleplay.backends import ScriptedBackend

    judge = ScriptedBackend("judge", invalid_every=6)
    config = load_config(RunConfig, {**_logprob_config(small_dataset, invalid_every=6), "concurrency": 8})
    execute_run(config, tmp_path / "run", backends={"judge:lp": judge})
    rows = [j for j in read_jsonl(tmp_path / "run" / "judgments.jsonl") if j["judge"] == "lp"]
    judged = [j for j in rows if j["status"] == "judge"]
    invalid = [j for j in rows if j["status"] == "invalid"]
    assert judged and invalid and all(j["score"] is None and j["normalised"] is None for j in invalid)
    for j in judged:
        dist = {int(k): v for k, v in j["distribution"].items()}
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-5)
        assert j["score"] == argmax_score(dist) and j["expected"] == pytest.approx(expected_score(dist), abs=1e-5)
        assert j["score_mass"] >= 0.5 and j["attempts"] == 2
    # every call went to the backend once: the shared content-free prompts are not repeated by concurrent rounds
    usage = json.loads((tmp_path / "run" / "usage.json").read_text())["judge:lp"]
    stored = sqlite3.connect(tmp_path / "run" / "calls.sqlite").execute(
        "SELECT COUNT(*) FROM calls WHERE role = 'judge:lp'").fetchone()[0]
    assert judge.calls == stored == usage["calls"] - usage["cached"] and usage["cached"] > 0


def test_logprob_judging_is_identical_at_concurrency_one_and_eight(small_dataset, tmp_path):
    for concurrency in (1, 8):
        config = load_config(RunConfig, {**_logprob_config(small_dataset), "concurrency": concurrency})
        execute_run(config, tmp_path / str(concurrency))
    for name in ("judgments.jsonl", "summary.json"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "8" / name).read_bytes()


def test_logprob_options_are_checked(small_dataset):
    from qwenkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="calibrate"):
        load_config(RunConfig, base_config(small_dataset, judges={"x": {"kind": "scripted", "calibrate": True}}))
    with pytest.raises(ConfigError, match="only judges read scores"):
        load_config(RunConfig, base_config(small_dataset, players={"p": {"kind": "scripted",
                                                                          "score_from": "logprobs"}}))


def test_judge_agreement_uses_labels_for_kappa_and_expected_scores_for_rho():
    from qwenkit.roleplay.agreement import cohen_kappa, krippendorff_alpha
    from qwenkit.roleplay.report import judge_agreement, label_spread

    lp_scores, expected = [1, 1, 3, 5, 3], [1.4, 1.2, 2.9, 4.1, 3.3]
    rules_scores = [1, 3, 3, 5, 5]

    def row(judge, i, score, status, value=None):
        return {"judge": judge, "player": "p", "dialogue_id": f"d{i}", "round": 0, "dimension": "EC",
                "score": score, "status": status, "expected": value}

    judgments = [row("lp", i, s, "judge", e) for i, (s, e) in enumerate(zip(lp_scores, expected, strict=True))]
    judgments += [row("rules", i, s, "rules") for i, s in enumerate(rules_scores)]
    judgments += [row("lp", 9, 1, "rule"), row("rules", 9, 1, "rule")]  # a rule override both share: left out
    result, = judge_agreement(judgments)
    assert result["items"] == 5 and result["exact"] == pytest.approx(0.6)
    assert result["cohen_kappa"] == pytest.approx(cohen_kappa(lp_scores, rules_scores))
    assert result["alpha_ordinal"] == pytest.approx(krippendorff_alpha([lp_scores, rules_scores], level="ordinal"))
    # expected ranks 1.2 < 1.4 < 2.9 < 3.3 < 4.1 against rules 3, 1, 3, 5, 5 (average ranks): scipy by hand
    from scipy.stats import spearmanr

    assert result["spearman_rho"] == pytest.approx(spearmanr(expected, rules_scores).statistic)
    assert {r["judge"]: r["labels"] for r in label_spread(judgments)} == {"lp": "1: 2, 3: 2, 5: 1",
                                                                          "rules": "1: 1, 3: 2, 5: 2"}
