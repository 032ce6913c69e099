"""The errors a user can cause, one family: the CLI prints their message and exits 2, without a traceback.

Every domain raises a subclass of :class:`QwenkitError` for anything that bad input, a bad file, a wrong path or an
unreachable backend can cause, with a message that says what is wrong, where, and how to fix it. Programming errors
stay ordinary exceptions and keep their tracebacks. ``qwenkit --debug ...`` (or ``QWENKIT_DEBUG=1``) shows the
traceback of a user-facing error too.
"""

from __future__ import annotations


class QwenkitError(Exception):
    """Base of every user-facing qwenkit error; its message is all a user needs to see."""

    exit_code = 2


class ConfigError(QwenkitError, ValueError):
    """A config file, field or override is invalid; the message says which and how to fix it."""


class DataError(QwenkitError, ValueError):
    """An input data file or record is invalid; the message names the file, the record (or line) and the field."""


class ResumeError(QwenkitError):
    """``--resume`` cannot continue this run: no checkpoint where one is required, or a changed config."""
