"""espeak-ng speech with phoneme timings, through the library's C API (``libespeak-ng.so.1``, Debian ``espeak-ng``).

The CLI's ``--pho`` output needs an audio device; the C API in synchronous mode does not, and reports every phoneme
with its audio position. ``espeak_EVENT`` below follows ``speak_lib.h`` of espeak-ng 1.51 (checked by a test).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

import numpy as np

from qwenkit.face.errors import SpeechError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_EVENT_PHONEME = 7
_PARAMETER_RATE, _PARAMETER_PITCH = 1, 3
_CHARS_AUTO = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Utterance:
    """Synthesised speech: mono float32 samples in [-1, 1] and (start_s, phoneme mnemonic) events in order."""

    audio: np.ndarray
    sample_rate: int
    phonemes: list[tuple[float, str]]

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


class _Espeak:
    """The process-wide espeak-ng engine (the library keeps global state, so one instance, behind a lock)."""

    _instance: _Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as exc:
            raise SpeechError(f"cannot load the espeak-ng library ({exc}); install it: apt-get install espeak-ng"
                              ) from exc
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500, None, _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise SpeechError("espeak_Initialize failed (is espeak-ng-data installed? apt-get install espeak-ng)")
        self._samples: list[np.ndarray] = []
        self._events: list[tuple[float, str]] = []
        self._callback = _CALLBACK(self._on_audio)
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]

    @classmethod
    def get(cls) -> _Espeak:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _on_audio(self, wav, count, events) -> int:
        if count > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        index = 0
        while events[index].type != 0:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                self._events.append((event.audio_position / 1000.0, event.id.string.decode("ascii", "replace")))
            index += 1
        return 0

    def synthesize(self, text: str, voice: str, rate_wpm: int, pitch: int) -> Utterance:
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SpeechError(f"espeak-ng has no voice {voice!r}; try 'en', 'en+f3' or 'en-us+m3'")
            self.lib.espeak_SetParameter(_PARAMETER_RATE, int(rate_wpm), 0)
            self.lib.espeak_SetParameter(_PARAMETER_PITCH, int(pitch), 0)
            self._samples, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            status = self.lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_AUTO, None, None)
            self.lib.espeak_Synchronize()
            if status != 0:
                raise SpeechError(f"espeak_Synth failed with status {status} on {text!r}")
            samples = np.concatenate(self._samples) if self._samples else np.zeros(0, np.int16)
            return Utterance((samples.astype(np.float32) / 32768.0), self.sample_rate, list(self._events))


def synthesize(text: str, *, voice: str = "en", rate_wpm: int = 175, pitch: int = 50) -> Utterance:
    """Speak ``text`` with espeak-ng: audio at its native rate (22,050 Hz) and the phoneme start times."""
    return _Espeak.get().synthesize(text, voice, rate_wpm, pitch)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy) from ``source_rate`` to ``target_rate``."""
    from math import gcd

    from scipy.signal import resample_poly

    if source_rate == target_rate:
        return audio.astype(np.float32)
    divisor = gcd(source_rate, target_rate)
    return resample_poly(audio, target_rate // divisor, source_rate // divisor).astype(np.float32)
