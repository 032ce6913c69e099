"""Training and evaluation of the face model through ``qwenkit.core.loop``.

A batch is a dict of fixed-length crops drawn by ``FaceBatches(index)`` from a generator seeded by (seed, index), so
a resumed run sees exactly the batches it would have seen. Motion targets are ``(vertices - template) / scale`` with
one global scale (the std of the training motion): in metres the loss is ~1e-5 and barely trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import TrainConfig
from qwenkit.face import losses
from qwenkit.face.data import FaceSequence
from qwenkit.face.errors import FaceDataError
from qwenkit.face.model import FaceAnimator, FaceModelConfig


class LossWeights(StrictModel):
    """Weight of each loss term; 0 switches a term off (for ablations)."""

    vertex: float = Field(1.0, ge=0)
    velocity: float = Field(1.0, ge=0)
    trend: float = Field(0.1, ge=0)
    contrastive: float = Field(0.05, ge=0)
    diversity: float = Field(0.01, ge=0)


class FaceTrainerConfig(TrainConfig):
    """The core loop's settings with this domain's defaults (a partial ``trainer:`` section keeps them)."""

    max_steps: int = Field(1500, ge=1)
    lr: float = Field(2e-3, gt=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_steps: int = Field(50, ge=0)
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    checkpoint_every: int = Field(500, ge=0)
    log_every: int = Field(10, ge=1)


class FaceTrainConfig(StrictModel):
    data: str = Field("runs/face-synthetic", description="dataset root (FaceFormer-processed layout)")
    dataset: Literal["synthetic", "vocaset", "biwi"] = "synthetic"
    model: FaceModelConfig = FaceModelConfig()
    losses: LossWeights = LossWeights()
    trainer: FaceTrainerConfig = FaceTrainerConfig()
    batch_size: int = Field(8, ge=1)
    crop_frames: int = Field(32, ge=4)
    reference_frames: int = Field(32, ge=4)
    contrastive_window: int = Field(4, ge=1)
    contrastive_temperature: float = Field(0.1, gt=0)
    lip_region: str | None = Field(None, description="lip ids (CodeTalker lve.txt); default <data>/regions/lve.txt")
    upper_region: str | None = Field(None, description="upper-face ids (fdd.txt); default <data>/regions/fdd.txt")


@dataclass
class Prepared:
    """A sequence turned into model inputs: normalised motion (T, D), audio, speaker index."""

    sequence: FaceSequence
    motion: np.ndarray
    speaker: int


def motion_of(sequence: FaceSequence, scale: float) -> np.ndarray:
    return ((sequence.vertices - sequence.template[None]) / scale).reshape(len(sequence.vertices), -1)


def audio_window(audio: np.ndarray, start_frame: int, frames: int, fps: float, sample_rate: int) -> np.ndarray:
    """The samples of motion frames [start, start + frames) (zero-padded past the end)."""
    per_frame = sample_rate / fps
    begin, length = int(round(start_frame * per_frame)), int(round(frames * per_frame))
    window = np.zeros(length, np.float32)
    piece = audio[begin: begin + length]
    window[: len(piece)] = piece
    return window


def reference_clip(item: Prepared, frames: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` frames of a clip from ``start`` (wrapping around a shorter clip) and their audio."""
    seq = item.sequence
    index = np.arange(start, start + frames) % len(item.motion)
    per_frame = seq.sample_rate / seq.fps
    samples = np.arange(int(round(frames * per_frame)))
    frame_of_sample = np.minimum((samples / per_frame).astype(int), frames - 1)
    source = (index[frame_of_sample] * per_frame + samples - frame_of_sample * per_frame).astype(int)
    padded = np.concatenate([seq.audio, np.zeros(int(per_frame) + 1, np.float32)])
    return item.motion[index], padded[np.minimum(source, len(padded) - 1)]


class FaceBatches:
    """``batches(index)`` -> a training batch; deterministic in (seed, index)."""

    def __init__(self, items: list[Prepared], config: FaceTrainConfig, seed: int):
        self.items, self.config, self.seed = items, config, seed
        self.long_enough = [i for i, item in enumerate(items) if len(item.motion) >= config.crop_frames]
        if not self.long_enough:
            raise FaceDataError(f"no training sequence has crop_frames={config.crop_frames} frames; lower "
                                "crop_frames (--set crop_frames=...)")
        self.by_speaker: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            self.by_speaker.setdefault(item.speaker, []).append(i)

    def __call__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        cfg = self.config
        fields: dict[str, list] = {k: [] for k in ("audio", "motion", "speaker", "reference_motion", "reference_audio")}
        for _ in range(cfg.batch_size):
            item = self.items[self.long_enough[rng.integers(len(self.long_enough))]]
            seq = item.sequence
            start = int(rng.integers(len(item.motion) - cfg.crop_frames + 1))
            fields["motion"].append(item.motion[start: start + cfg.crop_frames])
            fields["audio"].append(audio_window(seq.audio, start, cfg.crop_frames, seq.fps, seq.sample_rate))
            fields["speaker"].append(item.speaker)
            same = self.by_speaker[item.speaker]
            others = [i for i in same if self.items[i] is not item] or same
            reference = self.items[others[rng.integers(len(others))]]
            ref_start = int(rng.integers(max(1, len(reference.motion) - cfg.reference_frames + 1)))
            ref_motion, ref_audio = reference_clip(reference, cfg.reference_frames, ref_start)
            fields["reference_motion"].append(ref_motion)
            fields["reference_audio"].append(ref_audio)
        batch = {k: torch.from_numpy(np.stack(v).astype(np.float32)) for k, v in fields.items() if k != "speaker"}
        batch["speaker"] = torch.tensor(fields["speaker"], dtype=torch.long)
        return batch


def lip_coordinates(lip_idx: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((np.asarray(lip_idx)[:, None] * 3 + np.arange(3)[None]).reshape(-1))


def make_step(config: FaceTrainConfig, lip_idx: np.ndarray):
    """The step function handed to the core loop: weighted sum of the switchable losses."""
    weights = config.losses
    lips = lip_coordinates(lip_idx)

    def step(model: FaceAnimator, batch):
        frames = batch["motion"].shape[1]
        pred, content = model(batch["audio"], frames, reference_motion=batch["reference_motion"],
                              reference_audio=batch["reference_audio"], speaker=batch["speaker"], return_content=True)
        target = batch["motion"]
        terms = {"vertex": losses.vertex_loss(pred, target)}
        if weights.velocity:
            terms["velocity"] = losses.velocity_loss(pred, target)
        if weights.trend:
            terms["trend"] = losses.trend_loss(pred[..., lips], target[..., lips])
        if weights.contrastive:
            terms["contrastive"] = losses.local_contrastive_loss(
                model.sync_audio(content), model.sync_motion(target), config.contrastive_window,
                config.contrastive_temperature)
        if weights.diversity and model.config.primitives >= 2:
            terms["diversity"] = losses.primitive_diversity_loss(model.infusion.primitives)
        loss = sum(getattr(weights, name) * value for name, value in terms.items())
        return loss, {name: float(value.detach()) for name, value in terms.items()}

    return step


@dataclass
class FaceKit:
    """A trained (or untrained) model with what inference needs: speakers, scale, regions, fps, sample rate."""

    model: FaceAnimator
    config: FaceTrainConfig
    speakers: list[str]
    fps: float
    sample_rate: int
    lip_idx: np.ndarray
    upper_idx: np.ndarray
    num_vertices: int

    @property
    def scale(self) -> float:
        return float(self.model.motion_scale)

    @torch.no_grad()
    def predict(self, audio: np.ndarray, num_frames: int, template: np.ndarray, *,
                reference_clip_frames: tuple[np.ndarray, np.ndarray] | None = None, speaker: int = 0) -> np.ndarray:
        """Vertices (T, V, 3) for ``audio``, conditioned on a reference clip ``(normalised motion (R, D), audio)``
        (style-encoder models; see :func:`reference_clip`) or a training speaker index (one-hot models)."""
        self.model.eval()
        kwargs = {}
        if self.model.config.style == "encoder":
            if reference_clip_frames is None:
                raise ValueError("this model needs a reference motion clip of the speaker")
            ref_motion, ref_audio = reference_clip_frames
            kwargs = {"reference_motion": torch.from_numpy(ref_motion[None].astype(np.float32)),
                      "reference_audio": torch.from_numpy(ref_audio[None].astype(np.float32))}
        elif self.model.config.style == "onehot":
            kwargs = {"speaker": torch.tensor([speaker])}
        motion = self.model(torch.from_numpy(audio[None].astype(np.float32)), num_frames, **kwargs)[0].numpy()
        return template[None] + motion.reshape(num_frames, -1, 3) * self.scale

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"config": self.config.model_dump(mode="json"), "speakers": self.speakers, "fps": self.fps,
                "sample_rate": self.sample_rate, "lip_idx": self.lip_idx.tolist(),
                "upper_idx": self.upper_idx.tolist(), "num_vertices": self.num_vertices}
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, directory / "model.safetensors")
        (directory / "face_model.json").write_text(json.dumps(meta) + "\n")
        return directory


def build_model(config: FaceTrainConfig, num_vertices: int, num_speakers: int) -> FaceAnimator:
    return FaceAnimator(config.model, num_vertices, max(1, num_speakers))


def load_kit(directory: str | Path) -> FaceKit:
    """A model folder written by ``FaceKit.save`` (``qwenkit face train`` writes ``<run>/model``)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path = directory / "face_model.json"
    if not meta_path.is_file():
        raise FaceDataError(f"{str(directory)!r} is not a face model folder (no face_model.json); pass the <run>/model "
                            "folder written by `qwenkit face train`")
    meta = json.loads(meta_path.read_text())
    config = FaceTrainConfig.model_validate(meta["config"])
    model = build_model(config, meta["num_vertices"], len(meta["speakers"]))
    model.load_state_dict(load_file(directory / "model.safetensors"))
    model.eval()
    return FaceKit(model, config, meta["speakers"], meta["fps"], meta["sample_rate"], np.asarray(meta["lip_idx"]),
                   np.asarray(meta["upper_idx"]), meta["num_vertices"])


def prepare(sequences: list[FaceSequence], speakers: list[str], scale: float) -> list[Prepared]:
    index = {s: i for i, s in enumerate(speakers)}
    return [Prepared(s, motion_of(s, scale), index.get(s.subject, -1)) for s in sequences]


def motion_scale(sequences: list[FaceSequence]) -> float:
    """Global std of the training motion (vertices minus template)."""
    values = np.concatenate([(s.vertices - s.template[None]).reshape(-1) for s in sequences])
    return float(max(values.std(), 1e-8))


def train_face(config: FaceTrainConfig, train_sequences: list[FaceSequence], lip_idx, upper_idx, *, run=None,
               resume=False, eval_fn=None, quiet=None):
    """Train on ``train_sequences`` through the core loop; returns (kit, loop result)."""
    from qwenkit.core.loop import train_loop
    from qwenkit.core.seeding import seed_everything

    speakers = sorted({s.subject for s in train_sequences})
    scale = motion_scale(train_sequences)
    items = prepare(train_sequences, speakers, scale)
    seed_everything(config.trainer.seed)
    num_vertices = train_sequences[0].vertices.shape[1]
    model = build_model(config, num_vertices, len(speakers))
    model.motion_scale.fill_(scale)
    kit = FaceKit(model, config, speakers, train_sequences[0].fps, train_sequences[0].sample_rate,
                  np.asarray(lip_idx), np.asarray(upper_idx), num_vertices)
    result = train_loop(model, make_step(config, lip_idx), FaceBatches(items, config, config.trainer.seed),
                        config.trainer, run=run, resume=resume, eval_fn=eval_fn, description="face training",
                        quiet=quiet)
    model.eval()
    return kit, result
