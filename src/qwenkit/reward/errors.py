"""Errors a user of ``qwenkit reward`` can cause: bad pair files, bad dumps, bad model directories.

``RewardDataError`` names the file, the record (line) and the field. It subclasses ``ValueError`` so the CLI's error
handling (exit 2, no traceback) treats it like a config error.
"""

from __future__ import annotations


class RewardDataError(ValueError):
    """A data file cannot be used; the message names the file, the line or record, the field and the fix."""


class RewardModelError(ValueError):
    """A reward-model directory or tokenizer cannot be used as a reward model; the message says why and the fix."""
