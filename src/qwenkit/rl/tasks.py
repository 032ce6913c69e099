"""Toy RLVR tasks generated on the fly, sized for a character-level tokenizer and a tiny model on a CPU.

Each task draws ``Example(prompt, reference, target)`` from a ``random.Random``: ``reference`` is what the reward
checks against, ``target`` a correct completion (for the SFT warm start). Prompts are short strings such as
``"S4172="`` (sort), ``"R4172="`` (reverse), ``"A37+85="`` (add) and ``"C3,5,7>22="`` (countdown).
"""

from __future__ import annotations

import ast
import operator
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from qwenkit.core.errors import ConfigError
from qwenkit.rl.rewards import RewardFn, exact_match, last_number_partial_credit


@dataclass(frozen=True)
class Example:
    prompt: str
    reference: str
    target: str


@dataclass(frozen=True)
class Task:
    name: str
    draw: Callable[[random.Random], Example]
    reward: RewardFn
    max_new_tokens: int
    description: str


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def sort_digits(n: int = 3) -> Task:
    def draw(rng: random.Random) -> Example:
        digits = _digits(rng, n)
        answer = "".join(sorted(digits))
        return Example(f"S{digits}=", answer, answer)

    return Task(f"sort{n}", draw, exact_match, n + 2, f"sort {n} digits ascending, e.g. S312= -> 123")


def reverse_digits(n: int = 4) -> Task:
    def draw(rng: random.Random) -> Example:
        digits = _digits(rng, n)
        return Example(f"R{digits}=", digits[::-1], digits[::-1])

    return Task(f"reverse{n}", draw, exact_match, n + 2, f"reverse {n} digits, e.g. R1234= -> 4321")


def addition(n: int = 2) -> Task:
    def draw(rng: random.Random) -> Example:
        a, b = rng.randrange(10**n), rng.randrange(10**n)
        return Example(f"A{a}+{b}=", str(a + b), str(a + b))

    return Task(f"add{n}", draw, exact_match, n + 3, f"add two {n}-digit numbers, e.g. A37+85= -> 122")


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def evaluate_expression(text: str) -> tuple[int, list[int]] | None:
    """Value and the integer literals of an expression built from integers, ``+ - *`` and parentheses; None for
    anything else (names, calls, division, syntax errors)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    numbers: list[int] = []

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            numbers.append(node.value)
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("unsupported expression")

    try:
        return walk(tree.body), numbers
    except ValueError:
        return None


def countdown_reward(prompt: str, completion: str, reference: str) -> float:
    """1.0 when the completion is an expression (``+ - *``, parentheses) over the prompt's numbers, each used at
    most once, whose value is the target ``reference``; else 0.0."""
    allowed = Counter(int(x) for x in prompt[1:].split(">")[0].split(","))
    evaluated = evaluate_expression(completion)
    if evaluated is None:
        return 0.0
    value, used = evaluated
    return float(value == int(reference) and not Counter(used) - allowed)


def countdown(n: int = 3) -> Task:
    def draw(rng: random.Random) -> Example:
        numbers = [rng.randrange(1, 10) for _ in range(n)]
        a, b, c = numbers[0], numbers[1], numbers[2]
        op1, op2 = rng.choice("+-*"), rng.choice("+*")
        expression = f"{a}{op1}{b}{op2}{c}"
        target = evaluate_expression(expression)[0]  # type: ignore[index]
        shown = list(numbers)
        rng.shuffle(shown)
        return Example(f"C{','.join(map(str, shown))}>{target}=", str(target), expression)

    if n != 3:
        raise ValueError(f"countdown is implemented for 3 numbers, got n={n}")
    return Task("countdown3", draw, countdown_reward, 8, "reach the target with + - * over 3 numbers")


def chat_arithmetic(max_operand: int = 20) -> Task:
    """A question a small instruct model can read: ``What is 7 + 12? Reply with the number only.``, scored with
    :func:`~qwenkit.rl.rewards.last_number_partial_credit`. Meant for real chat models with ``chat_format: true``."""

    def draw(rng: random.Random) -> Example:
        a, b = rng.randrange(1, max_operand + 1), rng.randrange(1, max_operand + 1)
        if rng.random() < 0.5:
            question, answer = f"What is {a} + {b}?", a + b
        else:
            a, b = max(a, b), min(a, b)
            question, answer = f"What is {a} - {b}?", a - b
        return Example(f"{question} Reply with the number only.", str(answer), str(answer))

    return Task("arith_chat", draw, last_number_partial_credit, 10,
                f"add or subtract two numbers up to {max_operand} in words, partial credit for a number")


def chat_formatted(task: Task, render: Callable[[str], str]) -> Task:
    """``task`` with every prompt rendered by ``render`` (the tokenizer's chat template as one user turn); the reward
    still sees the rendered prompt, the completion and the reference."""

    def draw(rng: random.Random) -> Example:
        example = task.draw(rng)
        return Example(render(example.prompt), example.reference, example.target)

    return Task(task.name, draw, task.reward, task.max_new_tokens, task.description + " (chat format)")


TASKS: dict[str, Callable[[], Task]] = {
    "sort3": lambda: sort_digits(3),
    "sort4": lambda: sort_digits(4),
    "reverse4": lambda: reverse_digits(4),
    "add2": lambda: addition(2),
    "countdown3": lambda: countdown(3),
    "arith_chat": lambda: chat_arithmetic(20),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]()


def draw_examples(task: Task, count: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    return [task.draw(rng) for _ in range(count)]


