"""A synthetic preference corpus whose three categories mirror WorldPM's (arXiv 2505.10527, section 3):

- ``adversarial``: a correct answer against one that is fluent but flawed (``irrelevant``: the correct answer to
  another question; ``incomplete``: the correct answer cut short; ``subtly-wrong``: one swapped pair in a sorted list
  or a wrong colour in a lookup). Spotting them needs the model to relate answer and question.
- ``objective``: sums of graded difficulty (``add-d1`` .. ``add-d3``: one- to three-digit operands) against a
  plausible mistake (one digit off by one): verifiable, and harder with more digits.
- ``subjective``: two equally correct answers that differ only in style (short or long, plain or Markdown bold,
  lists, headers); the label comes from an "annotator" drawn per pair from a pool of style preferences
  (``ANNOTATORS``), flipped with probability ``label_noise``. Preferences of a few people, confounded by style.

Questions are split by a hash of subset and prompt (``prompt_in_test``), so train and test never share a question
within a subset (a colour asked in a test subset is still seen, as a fact, in other subsets' training pairs).
Everything is a function of the seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence

from qwenkit.reward.data import PreferencePair

CATEGORIES = ("adversarial", "objective", "subjective")
SUBSETS = {
    "adversarial": ("irrelevant", "incomplete", "subtly-wrong"),
    "objective": ("add-d1", "add-d2", "add-d3"),
    "subjective": ("style",),
}
COLOURS = {
    "sky": "blue", "grass": "green", "snow": "white", "coal": "black", "blood": "red", "sun": "yellow",
    "plum": "purple", "lime": "green", "rose": "red", "ink": "black", "milk": "white", "sea": "blue",
    "gold": "yellow", "rust": "orange", "ash": "grey", "leaf": "green",
}
ALL_COLOURS = sorted(set(COLOURS.values()))
# Annotator pool of the subjective category: (name, weight). "long"/"short" prefer the longer/shorter answer,
# "markdown"/"plain" the one with/without Markdown: the longer answer wins 60 % of length pairs, Markdown 70 %.
ANNOTATORS: tuple[tuple[str, float], ...] = (("long", 0.4), ("markdown", 0.3), ("short", 0.2), ("plain", 0.1))


def prompt_in_test(subset: str, prompt: str, test_fraction: float) -> bool:
    """Whether a question of ``subset`` is a test question: sha256 of ``subset:prompt`` in [0, 1) below the fraction."""
    digest = hashlib.sha256(f"{subset}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _sum_question(rng: random.Random, digits: int) -> tuple[str, int, int]:
    low = 0 if digits == 1 else 10 ** (digits - 1)
    a, b = rng.randint(low, 10**digits - 1), rng.randint(low, 10**digits - 1)
    return f"What is {a}+{b}?", a, b


def _sum_answer(a: int, b: int, total: int) -> str:
    return f"{a}+{b}={total}."


def _sort_question(rng: random.Random) -> tuple[str, list[int]]:
    numbers = rng.sample(range(10), 4)
    return "Sort: " + " ".join(map(str, numbers)), sorted(numbers)


def _colour_question(rng: random.Random) -> tuple[str, str]:
    thing = rng.choice(sorted(COLOURS))
    return f"What colour is {thing}?", thing


def _adversarial(rng: random.Random, subset: str) -> tuple[str, str, str]:
    kind = rng.choice(("sum", "sort", "colour"))
    if kind == "sum":
        prompt, a, b = _sum_question(rng, 1)
        chosen = _sum_answer(a, b, a + b)
        if subset == "irrelevant":
            _, c, d = _sum_question(rng, 1)
            while (c, d) == (a, b):
                _, c, d = _sum_question(rng, 1)
            return prompt, chosen, _sum_answer(c, d, c + d)
        if subset == "incomplete":
            return prompt, chosen, f"{a}+{b}="
        return prompt, chosen, _sum_answer(a, b, a + b + rng.choice((-2, -1, 1, 2)))
    if kind == "sort":
        prompt, ordered = _sort_question(rng)
        chosen = " ".join(map(str, ordered))
        if subset == "irrelevant":
            _, other = _sort_question(rng)
            while other == ordered:
                _, other = _sort_question(rng)
            return prompt, chosen, " ".join(map(str, other))
        if subset == "incomplete":
            return prompt, chosen, " ".join(map(str, ordered[: rng.randint(1, 3)]))
        swapped = list(ordered)
        i = rng.randrange(3)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        return prompt, chosen, " ".join(map(str, swapped))
    prompt, thing = _colour_question(rng)
    chosen = f"The {thing} is {COLOURS[thing]}."
    if subset == "irrelevant":
        other = rng.choice([t for t in sorted(COLOURS) if t != thing])
        return prompt, chosen, f"The {other} is {COLOURS[other]}."
    if subset == "incomplete":
        return prompt, chosen, f"The {thing} is"
    wrong = rng.choice([c for c in ALL_COLOURS if c != COLOURS[thing]])
    return prompt, chosen, f"The {thing} is {wrong}."


def _objective(rng: random.Random, subset: str) -> tuple[str, str, str]:
    digits = int(subset.removeprefix("add-d"))
    prompt, a, b = _sum_question(rng, digits)
    total = a + b
    place = 10 ** rng.randrange(len(str(total)))
    wrong = total + rng.choice((-1, 1)) * place
    if wrong < 0:
        wrong = total + place
    return prompt, _sum_answer(a, b, total), _sum_answer(a, b, wrong)


def _styled_answers(rng: random.Random) -> tuple[str, str, str, str]:
    """A question and four correct answers: short, long, plain (no Markdown) and Markdown."""
    if rng.random() < 0.5:
        prompt, a, b = _sum_question(rng, 1)
        value, long_text = str(a + b), f"Adding {a} and {b} gives {a + b}, so the answer is {a + b}."
    else:
        prompt, thing = _colour_question(rng)
        value, long_text = COLOURS[thing], f"The {thing} is {COLOURS[thing]}, as anyone can see."
    markdown = rng.choice((f"**{value}**", f"- {value}", f"# Answer\n{value}"))
    return prompt, value, long_text, markdown


def _has_markdown(text: str) -> bool:
    return text.startswith(("**", "- ", "# "))


def _annotator_prefers(annotator: str, first: str, second: str, rng: random.Random) -> bool:
    """Whether ``annotator`` prefers ``second``: by length (long/short) or by Markdown (markdown/plain; a coin
    when neither answer has Markdown)."""
    if annotator in ("long", "short"):
        return (len(second) > len(first)) == (annotator == "long")
    if _has_markdown(first) == _has_markdown(second):
        return rng.random() < 0.5
    return _has_markdown(second) == (annotator == "markdown")


def _subjective(rng: random.Random, label_noise: float) -> tuple[str, str, str, str]:
    prompt, short, long_text, markdown = _styled_answers(rng)
    first, second = (short, long_text) if rng.random() < 0.5 else (short, markdown)
    names, weights = zip(*ANNOTATORS, strict=True)
    annotator = rng.choices(names, weights=weights)[0]
    prefers_second = _annotator_prefers(annotator, first, second, rng)
    if rng.random() < label_noise:
        prefers_second = not prefers_second
    chosen, rejected = (second, first) if prefers_second else (first, second)
    return prompt, chosen, rejected, annotator


def _generator(category: str, subset: str, label_noise: float) -> Callable[[random.Random], tuple[str, str, str, str]]:
    if category == "adversarial":
        return lambda rng: (*_adversarial(rng, subset), "rule")
    if category == "objective":
        return lambda rng: (*_objective(rng, subset), "rule")
    return lambda rng: _subjective(rng, label_noise)


def make_pairs(
    counts: Mapping[str, int],
    *,
    split: str = "train",
    test_fraction: float = 0.2,
    seed: int = 0,
    label_noise: float = 0.1,
) -> list[PreferencePair]:
    """``counts[category]`` pairs per category, spread evenly over its subsets, from one split's questions.

    ``split="train"`` draws only questions outside the test hash bucket and ``"test"`` only inside it.
    Pairs come in a seeded shuffled order.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    unknown = sorted(set(counts) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose from {list(CATEGORIES)}")
    rng = random.Random(f"{seed}:{split}")
    pairs: list[PreferencePair] = []
    for category in CATEGORIES:
        subsets: Sequence[str] = SUBSETS[category]
        for index in range(counts.get(category, 0)):
            subset = subsets[index % len(subsets)]
            generate = _generator(category, subset, label_noise)
            for _ in range(10_000):
                prompt, chosen, rejected, annotator = generate(rng)
                if prompt_in_test(subset, prompt, test_fraction) == (split == "test") and chosen != rejected:
                    break
            else:
                raise RuntimeError(f"could not draw a {split} question for {category}/{subset}; raise test_fraction")
            pairs.append(PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, category=category,
                                        subset=subset, source=f"synthetic/{annotator}"))
    rng.shuffle(pairs)
    return pairs
