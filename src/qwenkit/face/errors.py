"""The face domain's user-facing errors (the CLI prints the message and exits 2)."""

from __future__ import annotations

from qwenkit.core.errors import DataError, QwenkitError


class FaceDataError(DataError):
    """A dataset file is missing or malformed; the message names the file and the field."""


class SpeechError(QwenkitError):
    """espeak-ng is missing or failed; the message says what to install or change."""


class RenderError(QwenkitError):
    """Rendering or encoding failed (a blank frame, no ffmpeg, an encoder error); the message says what to fix."""


class AudioEncoderError(QwenkitError):
    """The Hugging Face speech model cannot be loaded from the given local path."""
