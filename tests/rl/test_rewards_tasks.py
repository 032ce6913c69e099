"""Verifiable rewards and toy tasks."""

from __future__ import annotations

import random

import pytest

from qwenkit.core.errors import ConfigError
from qwenkit.rl.rewards import (
    THINK_ANSWER_FORMAT,
    exact_match,
    extract_answer,
    format_match,
    numeric_match,
    parse_number,
    python_unit_tests,
    weighted_sum,
)
from qwenkit.rl.tasks import TASKS, countdown_reward, evaluate_expression, get_task


def test_exact_match_strips_whitespace():
    assert exact_match("p", " 123\n", "123") == 1.0
    assert exact_match("p", "1234", "123") == 0.0


@pytest.mark.parametrize(
    ("text", "how", "expected"),
    [
        ("so \\boxed{\\frac{1}{2}} and \\boxed{42}", "auto", "42"),
        ("x \\boxed{a{b}c} y", "boxed", "a{b}c"),
        ("no box here", "boxed", None),
        ("Answer: 17.\nmore", "auto", "17"),
        ("first 3 then -4.5 done", "auto", "-4.5"),
        ("1,234 apples", "last_number", "1,234"),
        ("nothing", "auto", None),
    ],
)
def test_extract_answer(text, how, expected):
    assert extract_answer(text, how) == expected


def test_numeric_match_and_parse_number():
    reward = numeric_match()
    assert reward("q", "the answer is \\boxed{\\frac{1}{2}}", "0.5") == 1.0
    assert reward("q", "answer: 1,000", "1000") == 1.0
    assert reward("q", "I think 7", "8") == 0.0
    assert reward("q", "no idea", "8") == 0.0
    assert parse_number("7/2") == 3.5 and parse_number("abc") is None and parse_number("1/0") is None


def test_format_match_think_layout():
    reward = format_match(THINK_ANSWER_FORMAT)
    assert reward("q", "<think>hmm</think> 42", "") == 1.0
    assert reward("q", "<think>hmm 42", "") == 0.0
    assert reward("q", "<think>x</think>", "") == 0.0


def test_python_unit_tests_reward_passes_fails_and_times_out():
    reward = python_unit_tests(timeout_s=3)
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    assert reward("q", good, "assert add(2, 3) == 5") == 1.0
    assert reward("q", good.replace("a + b", "a - b"), "assert add(2, 3) == 5") == 0.0
    assert reward("q", "while True:\n    pass", "") == 0.0
    network = "import socket\nsocket.create_connection(('127.0.0.1', 9))"
    assert reward("q", network, "") == 0.0
    spawn = "import subprocess\nsubprocess.Popen(['true'])"
    assert reward("q", spawn, "") == 0.0


def test_weighted_sum():
    reward = weighted_sum([(exact_match, 0.5), (format_match(r"\d+"), 0.25)])
    assert reward("q", "12", "12") == 0.75


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_target_earns_full_reward(name):
    task = get_task(name)
    rng = random.Random(0)
    for _ in range(50):
        example = task.draw(rng)
        assert task.reward(example.prompt, example.target, example.reference) == 1.0
        assert len(example.target) + 1 <= task.max_new_tokens


def test_countdown_rules():
    assert evaluate_expression("2*(3+4)") == (14, [2, 3, 4])
    assert evaluate_expression("2/1") is None and evaluate_expression("__import__('os')") is None
    assert countdown_reward("C3,5,7>22=", "3*5+7", "22") == 1.0
    assert countdown_reward("C3,5,7>22=", "7*3+1", "22") == 0.0  # 1 is not offered
    assert countdown_reward("C3,5,7>22=", "5*5-3", "22") == 0.0  # 5 used twice
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("chess")


def test_last_number_partial_credit():
    from qwenkit.rl.rewards import last_number_partial_credit as reward

    assert reward("", "4 + 3 = 7", "7") == 1.0
    assert reward("", "7, or maybe 8", "7") == 0.5
    assert reward("", "The answer is 12", "7") == 0.2
    assert reward("", "seven", "7") == 0.0
    assert reward("", "5 - 9 = -4", "-4") == 1.0


def test_chat_formatted_task_renders_prompts_and_keeps_the_reward():
    from qwenkit.rl.tasks import chat_formatted

    task = chat_formatted(get_task("arith_chat"), lambda text: f"<user>{text}</user>")
    example = task.draw(random.Random(0))
    assert example.prompt.startswith("<user>What is ") and example.prompt.endswith("number only.</user>")
    assert task.reward(example.prompt, f"= {example.reference}", example.reference) == 1.0
