"""Errors a user of ``qwenkit reward`` can cause: bad pair files, bad dumps, bad model directories.

Both are :class:`~qwenkit.core.errors.QwenkitError` subclasses: the CLI prints the message and exits 2.
"""

from __future__ import annotations

from qwenkit.core.errors import DataError, QwenkitError


class RewardDataError(DataError):
    """A data file cannot be used; the message names the file, the line or record, the field and the fix."""


class RewardModelError(QwenkitError, ValueError):
    """A reward-model directory or tokenizer cannot be used as a reward model; the message says why and the fix."""
