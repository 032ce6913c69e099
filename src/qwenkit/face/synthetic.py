"""The offline synthetic talking-face corpus: espeak-ng speech -> phoneme visemes -> per-speaker styled blendshape
weights -> vertices of a procedural face, written in the FaceFormer-processed layout (see :mod:`qwenkit.face.data`).

A speaker's style: per-viseme gains, a speaking-rate-dependent gain slope (``gain * (1 + slope * (rate - 175) / 100)``,
the stand-in for StyleSpeaker's "style biases across speech conditions"), a timing lag, a smoothing width, a smile
bias with left/right asymmetry, brow coupling to loudness; its own face shape, espeak voice and pitch.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.face.mesh import BLENDSHAPES, FaceMesh, make_face, pose

# viseme targets (jaw_open, lip_round, lip_spread, lip_close) of espeak-ng's English phoneme mnemonics
_VISEMES: dict[str, tuple[float, float, float, float]] = {}
for _names, _target in [
    ("p b m", (0.0, 0.0, 0.0, 1.0)),
    ("f v", (0.1, 0.0, 0.1, 0.6)),
    ("w u: U U@ uu", (0.2, 1.0, 0.0, 0.0)),
    ("O: O@ 0 oU OI O", (0.6, 0.7, 0.0, 0.0)),
    ("S Z tS dZ r", (0.2, 0.5, 0.0, 0.0)),
    ("i: i I I2 i@ j eI", (0.25, 0.0, 1.0, 0.0)),
    ("e E e@ E2", (0.45, 0.0, 0.6, 0.0)),
    ("a a# A: A@ aa aI aU V 3: @ @L @2 @5 a2", (0.8, 0.0, 0.2, 0.0)),
    ("s z T D t d n l k g N h", (0.2, 0.0, 0.3, 0.0)),
]:
    for _name in _names.split():
        _VISEMES[_name] = _target
_NEUTRAL = (0.15, 0.0, 0.1, 0.0)
_SILENT = (0.0, 0.0, 0.0, 0.0)

_WORDS = ("the", "a", "we", "you", "they", "people", "open", "window", "morning", "river", "yellow", "bubble",
          "happy", "quiet", "moon", "blue", "music", "paper", "mouth", "water", "over", "under", "after", "before",
          "tomorrow", "beautiful", "simple", "voice", "little", "really", "maybe", "cheese", "zoo", "boat", "ship",
          "fish", "map", "book", "cool", "shoe", "pool", "peach", "beach", "purple", "mobile", "umbrella",
          "wonderful", "freedom", "garden")
_VOICES = ("en", "en-us", "en-gb-scotland", "en-029")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "david",
             "john", "linda", "max", "paul", "edward")


class SyntheticConfig(StrictModel):
    """Sizes of the synthetic corpus (defaults: the quick reproduction's)."""

    speakers: int = Field(24, ge=2, description="number of synthetic speakers")
    unseen_speakers: int = Field(6, ge=1, description="speakers held out of training (the last ones)")
    sentences: int = Field(10, ge=2, description="sentences per speaker")
    train_sentences: int = Field(8, ge=1, description="sentences 0..N-1 of each seen speaker are for training")
    words: tuple[int, int] = (5, 8)
    grid: int = Field(20, ge=6, description="face grid side (vertices = grid^2)")
    fps: int = Field(30, ge=10, le=120)
    sample_rate: int = Field(16000, ge=8000)
    seed: int = 0

    @model_validator(mode="after")
    def _check_splits(self) -> SyntheticConfig:
        if self.unseen_speakers >= self.speakers:
            raise ValueError(f"unseen_speakers ({self.unseen_speakers}) must be fewer than speakers ({self.speakers})")
        if self.train_sentences >= self.sentences:
            raise ValueError(f"train_sentences ({self.train_sentences}) must be fewer than sentences "
                             f"({self.sentences}) so that seen speakers keep test sentences")
        if self.words[0] < 1 or self.words[1] < self.words[0]:
            raise ValueError(f"words {self.words} must be (min >= 1, max >= min)")
        return self


def viseme_track(phonemes: list[tuple[float, str]], duration_s: float, fps: int) -> np.ndarray:
    """(T, 4) viseme targets held from each phoneme's start to the next (silence ``_`` and before speech: zero)."""
    frames = max(2, int(round(duration_s * fps)))
    track = np.zeros((frames, 4), np.float32)
    for i, (start_s, name) in enumerate(phonemes):
        end_s = phonemes[i + 1][0] if i + 1 < len(phonemes) else duration_s
        first, last = int(round(start_s * fps)), int(round(end_s * fps))
        target = _SILENT if name.startswith("_") else _VISEMES.get(name.strip("',"), _NEUTRAL)
        track[first:max(first + 1, last)] = target
    return track


def frame_energy(audio: np.ndarray, sample_rate: int, frames: int) -> np.ndarray:
    """Per motion frame log RMS energy, scaled to [0, 1] over the utterance."""
    edges = np.linspace(0, len(audio), frames + 1).astype(int)
    rms = np.array([np.sqrt(np.mean(audio[a:b] ** 2) + 1e-10) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    log = np.log(rms + 1e-5)
    return ((log - log.min()) / (np.ptp(log) + 1e-8)).astype(np.float32)


def sample_style(rng: np.random.Generator) -> dict:
    """One speaker's style parameters (see the module docstring)."""
    return {
        "gains": rng.uniform(0.5, 1.5, 4).round(3).tolist(),
        "rate_slope": float(round(rng.uniform(-1.2, 1.2), 3)),
        "lag_frames": int(rng.integers(-2, 3)),
        "smoothing_frames": float(round(rng.uniform(0.8, 2.5), 3)),
        "smile_bias": float(round(rng.uniform(0.0, 0.6), 3)),
        "smile_asymmetry": float(round(rng.uniform(-0.6, 0.6), 3)),
        "brow_coupling": float(round(rng.uniform(0.0, 1.2), 3)),
        "voice": f"{_VOICES[rng.integers(len(_VOICES))]}+{_VARIANTS[rng.integers(len(_VARIANTS))]}",
        "pitch": int(rng.integers(15, 86)),
        "base_rate_wpm": int(rng.integers(140, 211)),
        "width_scale": float(round(rng.uniform(0.9, 1.1), 3)),
        "height_scale": float(round(rng.uniform(0.9, 1.1), 3)),
    }


def styled_weights(visemes: np.ndarray, energy: np.ndarray, style: dict, rate_wpm: float) -> np.ndarray:
    """Blendshape weights (T, 7) of one utterance: the speaker's gains, rate bias, lag, smoothing, smile, brows."""
    from scipy.ndimage import gaussian_filter1d

    rate_gain = 1.0 + style["rate_slope"] * (rate_wpm - 175.0) / 100.0
    mouth = visemes * np.asarray(style["gains"], np.float32) * rate_gain
    mouth = np.roll(mouth, style["lag_frames"], axis=0)
    if style["lag_frames"] > 0:
        mouth[: style["lag_frames"]] = 0
    elif style["lag_frames"] < 0:
        mouth[style["lag_frames"]:] = 0
    mouth = gaussian_filter1d(mouth, style["smoothing_frames"], axis=0, mode="nearest")
    smile = style["smile_bias"] + 0.6 * mouth[:, 2]
    brow = style["brow_coupling"] * gaussian_filter1d(energy, 1.5, mode="nearest")
    weights = np.column_stack([mouth, smile * (1 + style["smile_asymmetry"]), smile * (1 - style["smile_asymmetry"]),
                               brow])
    return weights.astype(np.float32)


def speaker_face(style: dict, seed: int, grid: int) -> FaceMesh:
    rng = np.random.default_rng(seed)
    bumps = rng.normal(0, 0.0015, grid * grid)
    return make_face(grid, width_scale=style["width_scale"], height_scale=style["height_scale"], bumps=bumps)


def speaker_name(index: int) -> str:
    return f"S{index:03d}"


def make_synthetic(config: SyntheticConfig, out: str | Path, *, quiet: bool | None = None) -> dict:
    """Write the corpus under ``out`` (FaceFormer-processed layout plus ``corpus.json``); returns the manifest."""
    from scipy.io import wavfile

    from qwenkit.core.progress import track
    from qwenkit.face.speech import resample, synthesize

    out = Path(out)
    for sub in ("vertices_npy", "wav", "regions"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    speakers = [speaker_name(i) for i in range(config.speakers)]
    templates, styles = {}, {}
    jobs = []
    for speaker in speakers:
        styles[speaker] = sample_style(rng)
        for sentence in range(config.sentences):
            count = int(rng.integers(config.words[0], config.words[1] + 1))
            text = " ".join(rng.choice(_WORDS, count))
            rate = int(np.clip(styles[speaker]["base_rate_wpm"] + rng.integers(-40, 41), 110, 250))
            jobs.append((speaker, sentence, text, rate))
    faces = {s: speaker_face(styles[s], config.seed * 1000 + i, config.grid) for i, s in enumerate(speakers)}
    texts = {}
    for speaker, sentence, text, rate in track(jobs, "synthesising speech and motion", quiet=quiet):
        style = styles[speaker]
        utterance = synthesize(text, voice=style["voice"], rate_wpm=rate, pitch=style["pitch"])
        audio = resample(utterance.audio, utterance.sample_rate, config.sample_rate)
        visemes = viseme_track(utterance.phonemes, len(audio) / config.sample_rate, config.fps)
        energy = frame_energy(audio, config.sample_rate, len(visemes))
        vertices = pose(faces[speaker], styled_weights(visemes, energy, style, rate))
        name = f"{speaker}_sentence{sentence + 1:02d}"
        np.save(out / "vertices_npy" / f"{name}.npy", vertices.reshape(len(vertices), -1).astype(np.float32))
        wavfile.write(out / "wav" / f"{name}.wav", config.sample_rate, (np.clip(audio, -1, 1) * 32767).astype(np.int16))
        texts[name] = {"text": text, "rate_wpm": rate}
    for speaker in speakers:
        templates[speaker] = faces[speaker].vertices.astype(np.float32)
    with open(out / "templates.pkl", "wb") as f:
        pickle.dump(templates, f)
    reference = faces[speakers[0]]
    (out / "regions" / "lve.txt").write_text(", ".join(map(str, reference.lip_idx.tolist())) + "\n")
    (out / "regions" / "fdd.txt").write_text(", ".join(map(str, reference.upper_idx.tolist())) + "\n")
    np.save(out / "triangles.npy", reference.triangles)
    seen = speakers[: config.speakers - config.unseen_speakers]
    manifest = {
        "format": "qwenkit-face-synthetic/1",
        "fps": config.fps,
        "sample_rate": config.sample_rate,
        "blendshapes": list(BLENDSHAPES),
        "config": config.model_dump(mode="json"),
        "splits": {
            "train": {"subjects": seen, "sentences": list(range(1, config.train_sentences + 1))},
            "test_seen": {"subjects": seen, "sentences": list(range(config.train_sentences + 1, config.sentences + 1))},
            "test_unseen": {"subjects": speakers[len(seen):], "sentences": list(range(1, config.sentences + 1))},
        },
        "styles": styles,
        "utterances": texts,
    }
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
