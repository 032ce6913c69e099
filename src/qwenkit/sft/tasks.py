"""Toy tasks with controllable difficulty and programmatic gold rationales, so the paper's spectrum exists at toy scale.

- ``arithmetic``: multi-step word problems ("Ann has 7. She gets 5. She doubles it. How many now?"); difficulty is
  the number of steps and the operand size (``digits``). The rationale writes every intermediate result
  ("7+5=12. 12*2=24."), the kind of task where the paper finds rationales help most (math: +0.5-0.85 accuracy).
- ``sentiment``: a sentence of lexicon words; the label is the majority polarity. The rationale lists the polar
  words and compares their counts.
- ``topic``: a sentence with one keyword of a topic among filler words; the rationale names the keyword.
- ``paraphrase``: two short sentences; "yes" when the second only swaps words for synonyms, "no" when one word is
  replaced by a different meaning. The rationale compares the words pairwise.

The classification-like tasks are those where a rationale adds little (the paper: CR/SST2/TREC/AGNews near 0/0,
PAWS/QQP negative); here too the answer-only model can learn the decision directly. The forms are ours.
Every generator is seeded and deterministic: ``make_task(name, n, seed=..., **difficulty)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from qwenkit.core.errors import ConfigError
from qwenkit.sft.data import SFTRecord

NAMES = ("Ann", "Bob", "Cy", "Dee", "Eli", "Flo")


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(1 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def arithmetic(n: int, *, seed: int = 0, steps: int = 2, digits: int = 1, modulus: int = 0) -> list[SFTRecord]:
    """Word problems of ``steps`` operations on operands of ``digits`` digits; answers stay non-negative.

    ``modulus`` > 0 asks for the result modulo ``modulus`` and reduces every intermediate result ("7+5=2." with
    modulus 10), so the table of one step is small enough for a tiny model to learn in seconds while the answer of
    several steps still has to be composed (the quick reproduction uses 10).
    """
    if steps < 1 or digits < 1 or modulus < 0:
        raise ConfigError(f"arithmetic needs steps >= 1, digits >= 1 and modulus >= 0, got steps={steps}, "
                          f"digits={digits}, modulus={modulus}")
    rng = random.Random(f"arithmetic-{seed}-{steps}-{digits}-{modulus}")

    def reduce(v: int) -> int:
        return v % modulus if modulus else v

    records = []
    for _ in range(n):
        name = rng.choice(NAMES)
        value = reduce(_operand(rng, digits))
        sentences = [f"{name} has {value}."]
        work = []
        for _ in range(steps):
            operation = rng.choice(("add", "sub", "double") if value > 0 else ("add", "double"))
            if operation == "add":
                x = _operand(rng, digits)
                sentences.append(f"Gets {x}.")
                work.append(f"{value}+{x}={reduce(value + x)}.")
                value = reduce(value + x)
            elif operation == "sub":
                x = rng.randint(1, value)
                sentences.append(f"Loses {x}.")
                work.append(f"{value}-{x}={value - x}.")
                value -= x
            else:
                sentences.append("Doubles it.")
                work.append(f"{value}*2={reduce(value * 2)}.")
                value = reduce(value * 2)
        sentences.append(f"How many now, mod {modulus}?" if modulus else "How many now?")
        records.append(SFTRecord(" ".join(sentences), str(value), "number", rationale=" ".join(work),
                                 meta={"task": "arithmetic", "steps": steps, "digits": digits, "modulus": modulus}))
    return records


POSITIVE = ("good", "great", "fun", "nice", "warm", "calm")
NEGATIVE = ("bad", "dull", "sad", "cold", "rude", "slow")
NEUTRAL = ("the", "film", "day", "was", "and", "food", "it")
POLARITY = ("positive", "negative")


def sentiment(n: int, *, seed: int = 0, words: int = 5) -> list[SFTRecord]:
    """Sentences of ``words`` words with 1-3 polar words (never a tie); the label is the majority polarity."""
    rng = random.Random(f"sentiment-{seed}-{words}")
    records = []
    for _ in range(n):
        polar = rng.choice((1, 3)) if words >= 3 else 1
        positives = rng.randint(0, polar)
        chosen = [rng.choice(POSITIVE) for _ in range(positives)] + [rng.choice(NEGATIVE)
                                                                     for _ in range(polar - positives)]
        tokens = chosen + [rng.choice(NEUTRAL) for _ in range(max(0, words - polar))]
        rng.shuffle(tokens)
        pos = [t for t in tokens if t in POSITIVE]
        neg = [t for t in tokens if t in NEGATIVE]
        label = "positive" if len(pos) > len(neg) else "negative"
        rationale = f"Positive: {', '.join(pos) or 'none'}. Negative: {', '.join(neg) or 'none'}. " \
                    f"{len(pos)} vs {len(neg)}."
        records.append(SFTRecord(" ".join(tokens) + ".", label, "label", rationale=rationale, choices=POLARITY,
                                 meta={"task": "sentiment", "words": words}))
    return records


TOPICS = {
    "sport": ("ball", "goal", "team", "race"),
    "food": ("soup", "bread", "rice", "cake"),
    "tech": ("chip", "code", "disk", "wifi"),
}
FILLER = ("a", "new", "big", "old", "is", "on", "my", "this", "so")


def topic(n: int, *, seed: int = 0, words: int = 5) -> list[SFTRecord]:
    """Sentences of ``words`` words with exactly one topic keyword; the label is that keyword's topic."""
    rng = random.Random(f"topic-{seed}-{words}")
    labels = tuple(TOPICS)
    records = []
    for _ in range(n):
        label = rng.choice(labels)
        keyword = rng.choice(TOPICS[label])
        tokens = [keyword] + [rng.choice(FILLER) for _ in range(max(0, words - 1))]
        rng.shuffle(tokens)
        records.append(SFTRecord(" ".join(tokens) + ".", label, "label", rationale=f"'{keyword}' is a {label} word.",
                                 choices=labels, meta={"task": "topic", "words": words}))
    return records


SYNONYMS = (("big", "large"), ("cat", "kit"), ("ran", "sped"), ("fast", "quick"), ("old", "aged"), ("dog", "pup"))
OTHERS = {"big": "tiny", "large": "tiny", "cat": "cow", "kit": "cow", "ran": "sat", "sped": "sat", "fast": "slow",
          "quick": "slow", "old": "new", "aged": "new", "dog": "fox", "pup": "fox"}
ANSWERS = ("yes", "no")


def paraphrase(n: int, *, seed: int = 0, words: int = 3) -> list[SFTRecord]:
    """Pairs of ``words``-word sentences; "yes" when every word of B is a synonym (or copy) of A's, else "no"."""
    rng = random.Random(f"paraphrase-{seed}-{words}")
    records = []
    for _ in range(n):
        pairs = [rng.choice(SYNONYMS) for _ in range(words)]
        first = [rng.choice(pair) for pair in pairs]
        second = [pair[1] if word == pair[0] else pair[0] for word, pair in zip(first, pairs, strict=True)]
        same = rng.random() < 0.5
        if not same:
            changed = rng.randrange(words)
            second[changed] = OTHERS[second[changed]]
        comparisons = [f"{a}={b}" if b in pair else f"{a}!={b}" for a, b, pair in zip(first, second, pairs,
                                                                                     strict=True)]
        records.append(SFTRecord(f"A: {' '.join(first)}. B: {' '.join(second)}. Same meaning?", "yes" if same else
                                 "no", "label", rationale=" ".join(comparisons) + ".", choices=ANSWERS,
                                 meta={"task": "paraphrase", "words": words}))
    return records


@dataclass(frozen=True)
class TaskSpec:
    make: Callable[..., list[SFTRecord]]
    difficulty: tuple[str, ...]
    """Keyword arguments of ``make`` that set the difficulty."""
    family: str
    """``math`` or ``classification`` (where the paper finds rationales help, and where they do not)."""


TASKS: dict[str, TaskSpec] = {
    "arithmetic": TaskSpec(arithmetic, ("steps", "digits", "modulus"), "math"),
    "sentiment": TaskSpec(sentiment, ("words",), "classification"),
    "topic": TaskSpec(topic, ("words",), "classification"),
    "paraphrase": TaskSpec(paraphrase, ("words",), "classification"),
}


def make_task(name: str, n: int, *, seed: int = 0, **difficulty: int) -> list[SFTRecord]:
    """``n`` records of task ``name`` at the given difficulty (see :data:`TASKS` for each task's knobs)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    spec = TASKS[name]
    unknown = sorted(set(difficulty) - set(spec.difficulty))
    if unknown:
        raise ConfigError(f"task {name!r} has no difficulty setting {unknown}; it takes {list(spec.difficulty)}")
    return spec.make(n, seed=seed, **difficulty)
