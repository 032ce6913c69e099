"""Rationale filtering keeps only matching answers; the call cache makes a killed run resume without repeat calls."""

import pytest

from qwenkit.lm.backends import Completion
from qwenkit.sft.data import SFTRecord
from qwenkit.sft.rationales import generate_rationales, rationale_body, teacher_messages

RECORDS = [
    SFTRecord("2+3?", "5", "number"),
    SFTRecord("Capital of France?", "B", "choice", choices=("Rome", "Paris")),
    SFTRecord("Good day.", "positive", "label", choices=("positive", "negative")),
]


class ScriptedTeacher:
    """A test double of the chat-backend protocol: answers from a script per (question, seed), counts calls."""

    name = "scripted"
    budget_field = None

    def __init__(self, script, fail_after=None):
        self.script, self.fail_after, self.calls = script, fail_after, 0

    def complete(self, messages, *, max_tokens=256, temperature=0.7, top_p=1.0, top_k=0, seed=None, stop=None,
                 extra=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        question = next(q for q in self.script if q in messages[-1]["content"])
        answers = self.script[question]
        return Completion(answers[min(seed, len(answers) - 1)])


SCRIPT = {
    "2+3?": ["2+3=6. The answer is 6.", "2 plus 3 is 5. The answer is 5."],
    "France": ["Paris is the capital. The answer is (B)."],
    "Good day": ["no idea", "It sounds bad. The answer is negative.", "Hmm."],
}


def test_keeps_only_matching_answers_and_records_the_yield(tmp_path):
    kept, stats = generate_rationales(RECORDS, ScriptedTeacher(SCRIPT), tmp_path / "cache", tries=3)
    assert [r.question for r in kept] == ["2+3?", "Capital of France?"]
    assert kept[0].rationale == "2 plus 3 is 5." and kept[0].meta["rationale_attempts"] == 2
    assert kept[1].rationale == "Paris is the capital."
    assert stats.as_dict() == {"questions": 3, "kept": 2, "yield": pytest.approx(2 / 3), "calls": 6, "cached": 0,
                               "attempts_used": {"1": 1, "2": 1}}


def test_tries_limit_the_attempts(tmp_path):
    kept, stats = generate_rationales(RECORDS[:1], ScriptedTeacher(SCRIPT), tmp_path / "cache", tries=1)
    assert kept == [] and stats.calls == 1


def test_killed_run_resumes_without_repeating_calls(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        generate_rationales(RECORDS, ScriptedTeacher(SCRIPT, fail_after=3), tmp_path / "cache", tries=3)
    teacher = ScriptedTeacher(SCRIPT)
    kept, stats = generate_rationales(RECORDS, teacher, tmp_path / "cache", tries=3)
    assert (stats.cached, stats.calls, teacher.calls) == (3, 3, 3)
    assert len(kept) == 2
    again = ScriptedTeacher(SCRIPT)
    generate_rationales(RECORDS, again, tmp_path / "cache", tries=3)
    assert again.calls == 0


def test_prompt_and_body():
    messages = teacher_messages(RECORDS[1])
    assert messages[0]["content"] == "You are a helpful assistant."
    assert "(B) Paris" in messages[1]["content"] and messages[1]["content"].endswith("Let's think step by step.")
    assert rationale_body("a. b. The answer is 3. Really, the answer is 3.") == "a. b. The answer is 3. Really,"
