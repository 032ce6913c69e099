import httpx
import pytest
from roleplay_fixtures import base_config

from qwenkit.core.config import load_config
from qwenkit.core.serving import serve_in_background
from qwenkit.roleplay.backends import ScriptedBackend
from qwenkit.roleplay.run import RunConfig, execute_run, read_jsonl
from qwenkit.roleplay.serving import chat_app


@pytest.fixture(scope="module")
def server():
    with serve_in_background(chat_app(ScriptedBackend("judge"), model_name="judge", exclusive=False)) as url:
        yield url


GOOD = {"model": "judge", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


@pytest.mark.parametrize(
    ("body", "status", "pattern"),
    [
        ({**GOOD, "stream": True}, 400, "streaming is not supported"),
        ({**GOOD, "logprobs": True}, 400, "logprobs: unsupported field"),
        ({**GOOD, "messages": []}, 400, "messages"),
        ({**GOOD, "max_tokens": 0}, 400, "max_tokens"),
        ({**GOOD, "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ({**GOOD, "model": "other"}, 404, "not served here"),
        ({"messages": GOOD["messages"]}, 400, "model"),
    ],
)
def test_bad_requests_get_openai_shaped_4xx(server, body, status, pattern):
    response = httpx.post(f"{server}/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert pattern in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_not_json_is_400(server):
    response = httpx.post(f"{server}/v1/chat/completions", content=b"{nope",
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()


def test_a_run_judged_over_http_matches_the_in_process_judge(server, small_dataset, tmp_path):
    served = load_config(RunConfig, base_config(
        small_dataset, judges={"llm": {"kind": "openai", "base_url": f"{server}/v1", "model": "judge"}}))
    execute_run(served, tmp_path / "http")
    local = load_config(RunConfig, base_config(small_dataset, judges={"llm": {"kind": "scripted", "name": "judge"}}))
    execute_run(local, tmp_path / "local")
    http_scores = [j["score"] for j in read_jsonl(tmp_path / "http" / "judgments.jsonl")]
    local_scores = [j["score"] for j in read_jsonl(tmp_path / "local" / "judgments.jsonl")]
    assert http_scores == local_scores and len(http_scores) > 20
