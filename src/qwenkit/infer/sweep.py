"""The budget curve (Qwen3 paper, section 4.3): answer accuracy on a verifiable task against the thinking budget.

Tasks, each with a checkable answer:

- ``digits``: the user gives ``L`` digits below ``m`` (the modulus), the answer is their sum mod ``m``. Thinking
  copies each digit and writes the running sum mod ``m`` after it (``m = 10``: ``3729`` -> ``33700229``, answer
  ``9``), so every step is a local operation a tiny model learns in a few hundred steps, a budget of ``b`` tokens
  leaves about ``L - b/2`` additions to do without thinking, and guessing scores ``1/m``. ``L`` is drawn per
  question from ``min_length..length``, so questions need different amounts of thinking and accuracy rises with
  the budget as more of them fit (with one fixed ``L`` the curve is a single step at ``b = 2L``).
  :func:`train_digits_model` trains a tiny Qwen3 on it in a minute or two (thinking-mode data plus, as in
  thinking-mode fusion, replies whose thinking was cut at a random point and closed with the stop text, followed by
  the right answer), so the curve can be measured on CPU.
- ``addition``: "What is a + b?" for any instruction model (e.g. SmolLM2); the answer is the last integer of the reply.

:func:`budget_sweep` runs :func:`qwenkit.infer.generate_chat` at every budget on the same questions, batched.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import TrainConfig

TOY_STOP_TEXT = "\nTime is up.\n</think>\n\n"
"""The stop text of the toy model (short, so that its sequences stay short); any model takes any stop text."""
STOP_TEXT_NOTE = ("The toy model uses the short stop text `\\nTime is up.\\n</think>\\n\\n` (one token per character "
                  "keeps sequences short); real models default to Qwen's documented text.")


@dataclass(frozen=True)
class Question:
    prompt: str
    answer: str
    thoughts: str = ""


def digits_question(rng: random.Random, length: int, modulus: int = 10) -> Question:
    digits = [rng.randrange(modulus) for _ in range(length)]
    running, total = [], 0
    for d in digits:
        total = (total + d) % modulus
        running.append(f"{d}{total}")
    return Question(prompt="".join(map(str, digits)), answer=str(total), thoughts="".join(running))


def addition_question(rng: random.Random, digits: int) -> Question:
    a, b = rng.randrange(10 ** (digits - 1), 10**digits), rng.randrange(10 ** (digits - 1), 10**digits)
    return Question(prompt=f"What is {a} + {b}? Reply with the number only.", answer=str(a + b))


def make_questions(task: str, count: int, *, length: int, seed: int, modulus: int = 10,
                   min_length: int | None = None) -> list[Question]:
    """``count`` questions; ``digits`` questions have a length drawn uniformly from ``min_length..length``."""
    rng = random.Random(seed)
    if task == "digits":
        shortest = length if min_length is None else min_length
        return [digits_question(rng, rng.randint(shortest, length), modulus) for _ in range(count)]
    if task == "addition":
        return [addition_question(rng, length) for _ in range(count)]
    raise ValueError(f"unknown task {task!r}; choose 'digits' or 'addition'")


def is_correct(task: str, content: str, answer: str) -> bool:
    """``digits``: the reply (stripped) is the answer; ``addition``: the last integer in the reply is the answer."""
    if task == "digits":
        return content.strip() == answer
    numbers = re.findall(r"-?\d+", content.replace(",", ""))
    return bool(numbers) and numbers[-1] == answer


class SweepConfig(StrictModel):
    task: Literal["digits", "addition"] = "digits"
    length: int = Field(5, ge=1, le=32, description="digits per question (digits: the longest) or per operand "
                                                    "(addition)")
    min_length: int = Field(2, ge=1, le=32, description="digits task: the shortest question")
    modulus: int = Field(10, ge=2, le=10, description="digits task: digits below it, answer = sum mod it")
    budgets: list[int | None] = Field(default_factory=lambda: [0, 2, 4, 6, 8, 10, None],
                                      description="thinking budgets to measure; null = unlimited")
    questions: int = Field(200, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    stop_text: str = TOY_STOP_TEXT
    strategy: Literal["logits", "two_pass"] = "logits"
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy (the toy model); Qwen3 recommends 0.6")
    batch_size: int = Field(100, ge=1)
    seed: int = 0


class ToyTrainConfig(StrictModel):
    size: Literal["nano", "tiny", "small", "base"] = "tiny"
    length: int = Field(5, ge=1, le=32, description="the longest question")
    min_length: int = Field(2, ge=1, le=32, description="the shortest question (lengths are drawn uniformly)")
    modulus: int = Field(10, ge=2, le=10)
    batch_size: int = Field(64, ge=1)
    cut_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of examples whose thinking is cut short")
    stop_text: str = TOY_STOP_TEXT
    trainer: TrainConfig = Field(default_factory=lambda: TrainConfig(max_steps=800, lr=3e-3, lr_schedule="cosine",
                                                                     warmup_steps=20, min_lr_ratio=0.05))


def _toy_texts(question: Question, cut: int | None, stop_text: str) -> tuple[str, str]:
    """(prompt, completion) of one training example: full thinking, or thinking cut after ``cut`` tokens."""
    from qwenkit.lm.chat import generation_prompt

    prompt, _ = generation_prompt([{"role": "user", "content": question.prompt}])
    thinking = question.thoughts + "\n</think>\n\n" if cut is None else question.thoughts[:cut] + stop_text
    return prompt, thinking + question.answer + "<|im_end|>"


def toy_batch(tokenizer, config: ToyTrainConfig, step: int, seed: int) -> dict[str, Any]:
    """Micro-batch ``step`` (a pure function of ``step`` and ``seed``, so resume re-creates it exactly)."""
    import torch

    rng = random.Random(seed * 1_000_003 + step)
    rows, labels = [], []
    for _ in range(config.batch_size):
        question = digits_question(rng, rng.randint(min(config.min_length, config.length), config.length),
                                   config.modulus)
        cut = rng.randrange(len(question.thoughts) + 1) if rng.random() < config.cut_fraction else None
        prompt, completion = _toy_texts(question, cut, config.stop_text)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        rows.append(prompt_ids + completion_ids)
        labels.append([-100] * len(prompt_ids) + completion_ids)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    label_ids = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": mask, "labels": label_ids}


def train_digits_model(config: ToyTrainConfig, *, run=None, seed: int = 0, quiet: bool | None = None):
    """A tiny Qwen3 trained on the ``digits`` task with the shared loop; returns (model, tokenizer, loop result)."""
    from qwenkit.core.loop import train_loop
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, size=config.size, seed=seed)

    def step_fn(model, batch):
        out = model(**batch)
        return out.loss, {}

    trainer = config.trainer.model_copy(update={"seed": seed})
    result = train_loop(model, step_fn, lambda i: toy_batch(tokenizer, config, i, seed), trainer, run=run,
                        description="training the digits model", quiet=quiet)
    model.eval()
    return model, tokenizer, result


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (Wilson 1927; z = 1.96: 95 %).

    With ``p = successes / n``: ``(p + z^2 / 2n -+ z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n)``. Unlike the
    normal approximation it stays inside [0, 1] and is not degenerate at p = 0 or 1.
    """
    if trials < 1:
        raise ValueError("the Wilson interval needs at least one trial")
    p = successes / trials
    scale = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / scale
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


def fit_reference(thinking_lengths: Sequence[int], budget: int | None, modulus: int) -> float:
    """Accuracy of a model that solves exactly the questions whose full thinking fits the budget and guesses the
    rest: ``fits + (1 - fits) / m`` with ``fits`` the share of questions with thinking length <= budget (ours)."""
    fits = sum(budget is None or length <= budget for length in thinking_lengths) / len(thinking_lengths)
    return fits + (1 - fits) / modulus


@dataclass
class SweepPoint:
    budget: int | None
    accuracy: float
    correct: int
    questions: int
    interval: tuple[float, float]
    """The 95 % Wilson interval of the accuracy."""
    reference: float | None
    """``digits``: :func:`fit_reference` (solve what fits, guess the rest); None for other tasks."""
    mean_thinking_tokens: float
    max_thinking_tokens: int
    budget_hit_rate: float
    exact: bool
    """Every row that hit the budget thought exactly ``budget`` tokens (and no row thought more)."""
    by_length: dict[int, float] = field(default_factory=dict)
    """``digits``: accuracy per question length (digits); empty for other tasks."""


def budget_sweep(model, tokenizer, config: SweepConfig, *, quiet: bool | None = None) -> list[SweepPoint]:
    """Accuracy and thinking statistics of ``model`` at every budget of ``config`` on the same questions."""
    from qwenkit.core.progress import track
    from qwenkit.infer.generate import generate_chat

    questions = make_questions(config.task, config.questions, length=config.length, seed=config.seed + 1,
                               modulus=config.modulus, min_length=min(config.min_length, config.length))
    lengths = [len(tokenizer(q.thoughts, add_special_tokens=False)["input_ids"]) for q in questions]
    points = []
    for budget in track(config.budgets, "budget sweep", quiet=quiet):
        results = []
        for start in range(0, len(questions), config.batch_size):
            chunk = questions[start : start + config.batch_size]
            results += generate_chat(
                model, tokenizer, [[{"role": "user", "content": q.prompt}] for q in chunk],
                max_new_tokens=config.max_new_tokens, thinking_budget=budget, strategy=config.strategy,
                stop_text=config.stop_text, temperature=config.temperature, seed=config.seed + start,
            )
        correct = [is_correct(config.task, r.content, q.answer) for r, q in zip(results, questions, strict=True)]
        tokens = [r.thinking_tokens or 0 for r in results]
        exact = budget is None or (all(t <= budget for t in tokens)
                                   and all(r.thinking_tokens == budget for r in results if r.budget_hit))
        points.append(SweepPoint(
            budget=budget, accuracy=sum(correct) / len(correct), correct=sum(correct), questions=len(correct),
            interval=wilson_interval(sum(correct), len(correct)),
            reference=fit_reference(lengths, budget, config.modulus) if config.task == "digits" else None,
            mean_thinking_tokens=sum(tokens) / len(tokens),
            max_thinking_tokens=max(tokens), budget_hit_rate=sum(r.budget_hit for r in results) / len(results),
            exact=exact, by_length=_accuracy_by_length(questions, correct) if config.task == "digits" else {},
        ))
    return points


def _accuracy_by_length(questions: Sequence[Question], correct: Sequence[bool]) -> dict[int, float]:
    totals: dict[int, list[int]] = {}
    for question, ok in zip(questions, correct, strict=True):
        totals.setdefault(len(question.prompt), []).append(int(ok))
    return {length: sum(v) / len(v) for length, v in sorted(totals.items())}


def sweep_report(points: Sequence[SweepPoint], run, *, title: str, intro: str) -> str:
    """Write the curve (PNG), the table and the report into ``run``; return a one-line summary."""
    from qwenkit.core.plots import line_plot
    from qwenkit.core.report import Report

    finite = [p for p in points if p.budget is not None]
    unlimited = [p for p in points if p.budget is None]
    budgets = [p.budget for p in finite]
    series = {"accuracy (95 % Wilson band)": (budgets, [p.accuracy for p in finite])}
    bands = {"accuracy (95 % Wilson band)": ([p.interval[0] for p in finite], [p.interval[1] for p in finite])}
    if all(p.reference is not None for p in finite):
        series["solve the questions that fit, guess the rest"] = (budgets, [p.reference for p in finite])
    plot = line_plot(run.plot_path("budget_curve"), series, title="accuracy against thinking budget",
                     xlabel="thinking budget (tokens)", ylabel="accuracy", bands=bands,
                     styles={"solve the questions that fit, guess the rest": "--"})
    rows = []
    for p in points:
        row = {"budget": "unlimited" if p.budget is None else p.budget, "accuracy": p.accuracy,
               "95 % interval": f"{p.interval[0]:.3f}-{p.interval[1]:.3f}", "correct": f"{p.correct}/{p.questions}"}
        if p.reference is not None:
            row["fits-or-guess reference"] = round(p.reference, 3)
        row.update({"mean thinking tokens": p.mean_thinking_tokens, "max thinking tokens": p.max_thinking_tokens,
                    "budget hit rate": p.budget_hit_rate, "exact budget": p.exact})
        rows.append(row)
    for p in points:
        run.log(-1 if p.budget is None else p.budget,
                {"accuracy": p.accuracy, "accuracy_low": p.interval[0], "accuracy_high": p.interval[1],
                 "mean_thinking_tokens": p.mean_thinking_tokens})
    report = Report(title).text(intro)
    if unlimited:
        report.text(f"Unlimited thinking: accuracy **{unlimited[0].accuracy:.3f}**.")
    report.table(rows, caption="budget sweep (same questions at every budget)")
    if all(p.by_length for p in points):
        lengths = sorted(points[0].by_length)
        report.table([{"budget": "unlimited" if p.budget is None else p.budget,
                       **{f"{n} digits ({2 * n} thinking tokens)": p.by_length[n] for n in lengths}} for p in points],
                     caption="accuracy by question length (a question of n digits writes 2n thinking tokens)")
    explanation = ("The curve is the accuracy at each budget; the shaded band is its 95 % Wilson interval over the "
                   f"{points[0].questions} questions.")
    if all(p.reference is not None for p in finite):
        explanation += (" The dashed line is what a model would score that solves exactly the questions whose whole "
                        "thinking fits the budget and guesses the others (1 in m): accuracy above it means the model "
                        "also answers some cut-off questions right, finishing the missing sums after the stop text "
                        "without writing them out.")
    report.text(explanation).image(plot, "accuracy against thinking budget, 95 % Wilson band, fits-or-guess line")
    report.write(run.path)
    first, last = points[0], points[-1]
    label = "unlimited" if last.budget is None else f"budget {last.budget}"
    exact = "exact at every budget" if all(p.exact for p in points) else "NOT exact at some budget"
    return f"accuracy {first.accuracy:.2f} at budget {first.budget} -> {last.accuracy:.2f} {label}; {exact}"
