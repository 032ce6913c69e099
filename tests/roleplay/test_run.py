import json

import httpx
import pytest
from roleplay_fixtures import base_config

from qwenkit.core.config import load_config
from qwenkit.core.errors import ResumeError
from qwenkit.roleplay.backends import ScriptedBackend
from qwenkit.roleplay.run import RunConfig, RunStopped, execute_run, read_jsonl

OUTPUTS = ("transcripts.jsonl", "judgments.jsonl", "summary.json")


def outputs(directory):
    return {name: (directory / name).read_bytes() for name in OUTPUTS}


class Recording(ScriptedBackend):
    """A scripted backend that records every request and can fail after a number of calls."""

    def __init__(self, name, fail_after=None, **kwargs):
        super().__init__(name, **kwargs)
        self.fail_after, self.requests = fail_after, []

    def complete(self, messages, **kwargs):
        if self.fail_after is not None and len(self.requests) >= self.fail_after:
            raise ConnectionError("backend went away")
        self.requests.append(json.dumps([messages, kwargs.get("seed")], sort_keys=True, ensure_ascii=False))
        return super().complete(messages, **kwargs)


def recording_backends(fail_after=None):
    return {"player:a": Recording("player-a", fail_after=fail_after), "player:b": Recording("player-b"),
            "simulator": Recording("sim"), "judge:llm": Recording("judge", invalid_every=5)}


def test_concurrency_one_and_eight_give_identical_bytes(small_dataset, tmp_path):
    one = load_config(RunConfig, base_config(small_dataset, concurrency=1))
    eight = load_config(RunConfig, base_config(small_dataset, concurrency=8))
    execute_run(one, tmp_path / "c1")
    execute_run(eight, tmp_path / "c8")
    assert outputs(tmp_path / "c1") == outputs(tmp_path / "c8")


def test_kill_and_resume_repeats_no_call_and_matches(small_dataset, tmp_path):
    config = load_config(RunConfig, base_config(small_dataset))
    straight = recording_backends()
    execute_run(config, tmp_path / "straight", backends=straight)

    first = recording_backends(fail_after=5)
    with pytest.raises(ConnectionError):
        execute_run(config, tmp_path / "resumed", backends=first)
    assert not (tmp_path / "resumed" / "judgments.jsonl").exists()
    second = recording_backends()
    execute_run(config, tmp_path / "resumed", resume=True, backends=second)

    for role in straight:
        made = first[role].requests + second[role].requests
        assert len(made) == len(set(made)), f"{role}: a finished call was repeated"
        assert sorted(made) == sorted(straight[role].requests)
    assert len(first["player:a"].requests) == 5
    assert outputs(tmp_path / "straight") == outputs(tmp_path / "resumed")


def test_resume_checks_the_config(small_dataset, tmp_path):
    config = load_config(RunConfig, base_config(small_dataset))
    execute_run(config, tmp_path / "run")
    with pytest.raises(ResumeError, match="--resume"):
        execute_run(config, tmp_path / "run")
    changed = load_config(RunConfig, base_config(small_dataset, seed=3, concurrency=2))
    with pytest.raises(ResumeError, match=r"fields \['seed'\] differ"):
        execute_run(changed, tmp_path / "run", resume=True)
    harmless = load_config(RunConfig, base_config(small_dataset, concurrency=2))
    before = outputs(tmp_path / "run")
    execute_run(harmless, tmp_path / "run", resume=True)
    assert outputs(tmp_path / "run") == before
    with pytest.raises(ResumeError, match="--resume=must"):
        execute_run(config, tmp_path / "fresh", resume="must")
    usage = json.loads((tmp_path / "run" / "usage.json").read_text())
    assert all(u["cached"] == u["calls"] for u in usage.values())


def test_player_prompts_never_contain_reasoning(small_dataset, tmp_path):
    config = load_config(RunConfig, base_config(small_dataset, players={"a": {"kind": "scripted", "think": True}}))
    backends = recording_backends()
    backends["player:a"] = Recording("player-a", think=True)
    execute_run(config, tmp_path / "run", backends=backends)
    transcripts = read_jsonl(tmp_path / "run" / "transcripts.jsonl")
    assert all(r["reasoning"].startswith("(private plan") for t in transcripts for r in t["rounds"])
    sent = "".join(backends["player:a"].requests)
    assert "private plan" not in sent
    # history holds the player's own replies: round 2's prompt carries round 1's reply
    en_cm = next(t for t in transcripts if t["dialogue_id"] == "en-cm")
    assert any(en_cm["rounds"][0]["reply"] in r and en_cm["rounds"][1]["user"] in r
               for r in backends["player:a"].requests)


def test_judgments_rules_invalid_and_chinese(small_dataset, tmp_path):
    config = load_config(RunConfig, base_config(small_dataset))
    backends = recording_backends()
    summary = execute_run(config, tmp_path / "run", backends=backends)
    judgments = read_jsonl(tmp_path / "run" / "judgments.jsonl")
    llm = [j for j in judgments if j["judge"] == "llm"]
    statuses = {j["status"] for j in llm}
    assert {"judge", "invalid"} <= statuses
    assert all(j["score"] is None and j["normalised"] is None for j in llm if j["status"] == "invalid")
    assert all(j["attempts"] == 3 for j in llm if j["status"] == "invalid")
    assert any(j["attempts"] > 1 for j in llm if j["status"] == "judge")  # a retry fixed a garbage answer
    assert {j["status"] for j in judgments if j["judge"] == "rules"} == {"rules"}
    # applicability: CM only in character_maintenance, SEC only in sensitive_behaviour, UPA only in preference
    for j in judgments:
        if j["dimension"] in {"CM", "SEC", "UPA"}:
            assert {"CM": "character_maintenance", "SEC": "sensitive_behaviour",
                    "UPA": "preference_awareness"}[j["dimension"]] == j["scenario"]
    # invalid answers are counted, never averaged
    rows = [r for r in summary["by_dimension"] if r["judge"] == "llm"]
    assert sum(r["invalid"] for r in rows) == summary["invalid"] > 0
    assert sum(r["n"] + r["invalid"] for r in rows) == len(llm)
    # Chinese dialogues: Chinese judge prompts, Chinese replies
    zh_prompts = [r for r in backends["judge:llm"].requests if "维度" in r]
    assert zh_prompts and all("Dimension:" not in r for r in zh_prompts)
    zh = [t for t in read_jsonl(tmp_path / "run" / "transcripts.jsonl") if t["lang"] == "zh"]
    assert zh and all(any("\u4e00" <= c <= "\u9fff" for c in r["reply"]) for t in zh for r in t["rounds"])
    simulated = next(t for t in read_jsonl(tmp_path / "run" / "transcripts.jsonl") if t["dialogue_id"] == "en-sim")
    assert simulated["mode"] == "simulated" and simulated["ended_by"] == "simulator"
    assert 3 <= len(simulated["rounds"]) <= 5


def test_budget_stop_then_resume(small_dataset, tmp_path):
    priced = {"kind": "scripted", "name": "player-a", "price": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}}
    config = load_config(RunConfig, base_config(small_dataset, players={"a": priced}, budget_usd=0.05,
                                                concurrency=1))
    with pytest.raises(RunStopped, match="budget"):
        execute_run(config, tmp_path / "run")
    bigger = load_config(RunConfig, base_config(small_dataset, players={"a": priced}, budget_usd=100.0))
    execute_run(bigger, tmp_path / "run", resume=True)
    execute_run(bigger, tmp_path / "straight")
    assert outputs(tmp_path / "run") == outputs(tmp_path / "straight")


def test_429_with_retry_after_is_retried(small_dataset, tmp_path):
    from qwenkit.lm.backends import OpenAIChatBackend

    seen, slept = [], []

    def handler(request):
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow down"}})
        return httpx.Response(200, json={"choices": [{"message": {"content": '{"score": 3}'},
                                                      "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 9, "completion_tokens": 4}})

    judge = OpenAIChatBackend("http://judge.invalid/v1", "judge-model", transport=httpx.MockTransport(handler),
                              sleep=slept.append)
    config = load_config(RunConfig, base_config(
        small_dataset, select={"ids": ["en-upa"]}, players={"a": {"kind": "scripted"}},
        judges={"llm": {"kind": "openai", "base_url": "http://judge.invalid/v1", "model": "judge-model"}}))
    execute_run(config, tmp_path / "run", backends={"judge:llm": judge})
    assert slept[0] == 7.0
    judgments = read_jsonl(tmp_path / "run" / "judgments.jsonl")
    assert {j["score"] for j in judgments if j["status"] == "judge"} == {3}


def test_max_rounds_and_dimensions_narrow_the_run(small_dataset, tmp_path):
    config = load_config(RunConfig, base_config(small_dataset, select={"max_rounds": 2}, dimensions=["CM", "EC"]))
    execute_run(config, tmp_path / "run")
    transcripts = read_jsonl(tmp_path / "run" / "transcripts.jsonl")
    assert max(len(t["rounds"]) for t in transcripts) == 2
    judgments = read_jsonl(tmp_path / "run" / "judgments.jsonl")
    assert {j["dimension"] for j in judgments} == {"CM", "EC"}
    assert {j["scenario"] for j in judgments if j["dimension"] == "CM"} == {"character_maintenance"}


def test_quick_reproduction_config_is_valid():
    from qwenkit.roleplay.repro import QUICK_IDS, run_config

    for full in (False, True):
        config = load_config(RunConfig, run_config("http://127.0.0.1:1", full=full, seed=0))
        assert config.judges["smollm2"].kind == "openai" and config.judges["rules"].kind == "rules"
    assert load_config(RunConfig, run_config("http://x", full=False, seed=0)).select.ids == QUICK_IDS


class PositionBiased(ScriptedBackend):
    """Answers pairwise prompts with "A" whatever the replies (pure position bias)."""

    def complete(self, messages, **kwargs):
        if '"winner"' in messages[-1]["content"]:
            from qwenkit.lm.backends import Completion

            return Completion('{"winner": "A"}', "", {"prompt_tokens": 1, "completion_tokens": 1})
        return super().complete(messages, **kwargs)


def test_pairwise_with_position_swap(small_dataset, tmp_path):
    config = load_config(RunConfig, base_config(small_dataset, pairwise=True, dimensions=["EC"]))
    summary = execute_run(config, tmp_path / "run")
    rows = read_jsonl(tmp_path / "run" / "pairwise.jsonl")
    scripted_rounds = 3 + 3 + 3 + 2  # the fixture's scripted dialogues; simulated ones are not compared
    assert len(rows) == scripted_rounds and {r["judge"] for r in rows} == {"llm"}
    for row in rows:
        if "invalid" in row["orders"]:
            continue
        first_view = {"A": "first", "B": "second", "tie": "tie"}[row["orders"][0]]
        swapped_view = {"A": "second", "B": "first", "tie": "tie"}[row["orders"][1]]
        assert row["verdict"] == (first_view if first_view == swapped_view else "tie")
    from qwenkit.roleplay.report import build_report

    markdown, _ = build_report([tmp_path / "run"], tmp_path / "run")
    assert "Pairwise (position swap)" in markdown.read_text(encoding="utf-8")
    total = summary["pairwise"][0]
    assert sum(total[k] for k in ("first", "second", "tie", "invalid")) == scripted_rounds

    biased = load_config(RunConfig, base_config(small_dataset, pairwise=True, dimensions=["EC"]))
    summary = execute_run(biased, tmp_path / "biased", backends={"judge:llm": PositionBiased("judge")})
    (row,) = summary["pairwise"]
    assert row["tie"] == row["orders_disagree"] == scripted_rounds and row["first"] == row["second"] == 0


class ThinkingPlayer:
    """Thinks past any budget: pass 1 returns only reasoning cut at max_tokens; the continuation answers."""

    name, budget_field = "thinker", None

    def __init__(self):
        self.requests = []

    def complete(self, messages, *, max_tokens=256, extra=None, **kwargs):
        from qwenkit.lm.backends import Completion

        self.requests.append({"messages": messages, "max_tokens": max_tokens, "extra": dict(extra or {})})
        turn = sum(1 for m in messages if m["role"] == "user")
        if (extra or {}).get("continue_final_message"):
            return Completion(f"I answer turn {turn}.", "", {"prompt_tokens": 5, "completion_tokens": 4})
        return Completion("", f"secret-thought-{turn} " * 50, {"prompt_tokens": 5, "completion_tokens": max_tokens},
                          finish_reason="length")


def test_thinking_player_gets_the_budget_and_history_drops_reasoning(small_dataset, tmp_path):
    player = {"kind": "openai", "base_url": "http://unused/v1", "model": "thinker", "thinking_budget": 8,
              "max_tokens": 64}
    config = load_config(RunConfig, base_config(small_dataset, players={"t": player}, select={"ids": ["en-cm"]}))
    backend = ThinkingPlayer()
    execute_run(config, tmp_path / "run", backends={"player:t": backend})
    first_passes = [r for r in backend.requests if not r["extra"].get("continue_final_message")]
    assert first_passes and all(r["max_tokens"] == 8 for r in first_passes)
    (transcript,) = read_jsonl(tmp_path / "run" / "transcripts.jsonl")
    assert [r["reply"] for r in transcript["rounds"]] == ["I answer turn 1.", "I answer turn 2.", "I answer turn 3."]
    assert all(f"secret-thought-{r['index'] + 1}" in r["reasoning"] for r in transcript["rounds"])
    for request in backend.requests:
        turn = sum(1 for m in request["messages"] if m["role"] == "user")
        text = json.dumps(request["messages"])
        assert all(f"secret-thought-{earlier}" not in text for earlier in range(1, turn))


def test_a_local_transformers_player_through_resolve_model(small_dataset, tmp_path):
    player = {"kind": "transformers", "model": "tiny-qwen3", "enable_thinking": False, "max_tokens": 4}
    config = load_config(RunConfig, base_config(small_dataset, players={"tiny": player}, select={
        "ids": ["en-cm", "zh-cu"], "max_rounds": 1}, dimensions=["EC"]))
    execute_run(config, tmp_path / "run")
    transcripts = read_jsonl(tmp_path / "run" / "transcripts.jsonl")
    assert [len(t["rounds"]) for t in transcripts] == [1, 1]
    usage = json.loads((tmp_path / "run" / "usage.json").read_text())
    assert usage["player:tiny"]["calls"] == 2 and usage["player:tiny"]["completion_tokens"] <= 8
