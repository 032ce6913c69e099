"""Verifiable rewards: functions ``(prompt, completion, reference) -> float``.

Built-ins: exact match, numeric answer match (``\\boxed{}``, ``answer:``, last number), format checks (regular
expressions), and Python unit tests run in a subprocess with a timeout. Combine them with :func:`weighted_sum`.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

AnswerFormat = Literal["auto", "boxed", "answer_colon", "last_number"]

_NUMBER = r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class RewardFn(Protocol):
    def __call__(self, prompt: str, completion: str, reference: str) -> float: ...


def exact_match(prompt: str, completion: str, reference: str) -> float:
    """1.0 when the completion equals the reference after stripping surrounding whitespace, else 0.0."""
    return float(completion.strip() == reference.strip())


def _boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def extract_answer(text: str, how: AnswerFormat = "auto") -> str | None:
    """The final answer of a completion: the last ``\\boxed{...}`` (nested braces allowed), the text after the last
    ``answer:`` (case-insensitive, up to the end of the line), or the last number; ``"auto"`` tries them in this
    order. None when nothing matches."""
    if how in ("auto", "boxed"):
        boxed = _boxed(text)
        if boxed is not None or how == "boxed":
            return boxed
    if how in ("auto", "answer_colon"):
        found = re.findall(r"answer\s*[:：]\s*([^\n]*)", text, flags=re.IGNORECASE)
        if found and found[-1].strip():
            return found[-1].strip().rstrip(".")
        if how == "answer_colon":
            return None
    numbers = re.findall(_NUMBER, text)
    return numbers[-1] if numbers else None


def parse_number(text: str | None) -> float | None:
    """A float from ``"1,234.5"``, ``"-3"``, ``"\\frac{1}{2}"`` or ``"7/2"``; None when it is not a number."""
    if text is None:
        return None
    text = text.strip().strip("$").replace(",", "")
    fraction = re.fullmatch(r"\\[dt]?frac\{(" + _NUMBER + r")\}\{(" + _NUMBER + r")\}", text) or re.fullmatch(
        r"(" + _NUMBER + r")\s*/\s*(" + _NUMBER + r")", text
    )
    try:
        if fraction:
            return float(fraction.group(1)) / float(fraction.group(2))
        return float(text)
    except (ValueError, ZeroDivisionError):
        return None


def numeric_match(how: AnswerFormat = "auto", rel_tol: float = 1e-6) -> RewardFn:
    """A reward that extracts the completion's answer (see :func:`extract_answer`) and compares it numerically
    (``math.isclose`` with ``rel_tol``) with the reference; 0.0 when no number can be read."""

    def reward(prompt: str, completion: str, reference: str) -> float:
        got = parse_number(extract_answer(completion, how))
        want = parse_number(reference)
        if got is None or want is None:
            return 0.0
        return float(math.isclose(got, want, rel_tol=rel_tol, abs_tol=rel_tol))

    reward.__name__ = f"numeric_match_{how}"
    return reward


def format_match(pattern: str, *, flags: int = re.DOTALL) -> RewardFn:
    """1.0 when the whole completion matches the regular expression ``pattern`` (e.g. a think/answer layout)."""
    compiled = re.compile(pattern, flags)

    def reward(prompt: str, completion: str, reference: str) -> float:
        return float(compiled.fullmatch(completion.strip()) is not None)

    reward.__name__ = "format_match"
    return reward


THINK_ANSWER_FORMAT = r"<think>.*?</think>.*\S.*"
"""Qwen3 thinking layout: a closed ``<think>`` block followed by a non-empty answer."""

# Runs before the candidate: no sockets, no subprocesses from the candidate, bounded memory and CPU time.
_SANDBOX_PRELUDE = """
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
def _blocked(*args, **kwargs):
    raise PermissionError("network access is disabled in the reward sandbox")
socket.socket = _blocked
socket.create_connection = _blocked
import os, subprocess
os.system = _blocked
subprocess.Popen = _blocked
"""


def extract_code(completion: str) -> str:
    """The last fenced ```python (or ```) block of a completion, else the whole completion."""
    blocks = re.findall(r"```(?:python|py)?\s*\n(.*?)```", completion, flags=re.DOTALL)
    return blocks[-1] if blocks else completion


def python_unit_tests(timeout_s: float = 5.0, memory_bytes: int = 512 * 2**20) -> RewardFn:
    """A reward that runs the completion's code followed by the reference's test code (``assert`` statements) in a
    fresh ``python -I`` subprocess: 1.0 when it exits with status 0 within ``timeout_s``, else 0.0.

    Isolation is best effort, not a security boundary: isolated mode, an empty environment, a temporary working
    directory, address-space and CPU limits, and the socket and subprocess APIs replaced by functions that raise.
    Run untrusted code from real models inside a container as well.
    """

    def reward(prompt: str, completion: str, reference: str) -> float:
        prelude = _SANDBOX_PRELUDE.format(mem=int(memory_bytes), cpu=max(1, math.ceil(timeout_s)))
        program = prelude + "\n" + extract_code(completion) + "\n" + reference + "\n"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "candidate.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write(program)
            try:
                done = subprocess.run(
                    [sys.executable, "-I", path], cwd=tmp, env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                    timeout=timeout_s, check=False,
                )
            except subprocess.TimeoutExpired:
                return 0.0
        return float(done.returncode == 0)

    reward.__name__ = "python_unit_tests"
    return reward


def weighted_sum(rewards: Sequence[tuple[RewardFn, float]]) -> RewardFn:
    """``sum_k w_k * reward_k(prompt, completion, reference)``."""

    def reward(prompt: str, completion: str, reference: str) -> float:
        return sum(w * fn(prompt, completion, reference) for fn, w in rewards)

    reward.__name__ = "weighted_sum"
    return reward


BUILTIN_REWARDS: dict[str, Callable[[], RewardFn]] = {
    "exact_match": lambda: exact_match,
    "numeric": numeric_match,
    "boxed": lambda: numeric_match("boxed"),
    "think_format": lambda: format_match(THINK_ANSWER_FORMAT),
    "python_tests": python_unit_tests,
}


_INTEGER = re.compile(r"-?\d+")


def last_number_partial_credit(prompt: str, completion: str, reference: str) -> float:
    """Partial credit for short numeric answers (our form; the papers use binary rewards): 1.0 when the last integer
    of the completion equals the reference (``4 + 3 = 7``), 0.5 when the reference appears earlier as an integer,
    0.2 when the completion holds an integer at all, else 0.0. A small instruct model scores above zero from the
    start, so its group advantages are not all zero and RL has a signal."""
    found = _INTEGER.findall(completion)
    if not found:
        return 0.0
    want = reference.strip()
    if found[-1] == want:
        return 1.0
    return 0.5 if want in found else 0.2
