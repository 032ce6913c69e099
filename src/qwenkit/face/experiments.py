"""The reproduction's experiment: ours vs the one-hot baseline vs zero motion, seen/unseen speakers, own vs another
speaker's reference clip, and ablations of the primitives, the style enhancement and both sync losses.

Each arm trains in its own worker process (one torch thread each, two at a time) on the same corpus, seed and
batches, and is scored on the same sequences with the same reference clips.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

ARMS: dict[str, list[str]] = {
    "ours": [],
    "one-hot": ["model.style=onehot"],
    "no-primitives": ["model.primitives=0"],
    "no-enhancement": ["model.enhance=false"],
    "no-sync-losses": ["losses.trend=0", "losses.contrastive=0"],
}


@dataclass
class Plan:
    corpus: Path
    work: Path
    steps: int
    seed: int = 0
    overrides: list[str] = field(default_factory=list)


def arm_config(plan: Plan, arm: str):
    from qwenkit.core.config import load_config
    from qwenkit.face.train import FaceTrainConfig

    overrides = [f"data={plan.corpus}", f"trainer.max_steps={plan.steps}", f"trainer.seed={plan.seed}",
                 f"trainer.checkpoint_every={plan.steps}", *plan.overrides, *ARMS[arm]]
    return load_config(FaceTrainConfig, None, overrides)


def run_arm(plan: Plan, arm: str) -> dict:
    """Train one arm and score it; returns metrics per evaluation, the loss curve and the CPU seconds."""
    import torch

    from qwenkit.core.runs import RunDir
    from qwenkit.face.pipeline import evaluate_split, train_run

    torch.set_num_threads(1)
    started_cpu, started = time.process_time(), time.perf_counter()
    config = arm_config(plan, arm)
    kit, view, run = train_run(config, plan.work / arm, quiet=True, run=RunDir(plan.work / arm))
    train_cpu_s = time.process_time() - started_cpu
    train = view.load("train")
    evaluations = {
        "seen": evaluate_split(kit, view, "test_seen", train=train),
        "unseen_own": evaluate_split(kit, view, "test_unseen", train=train),
        "unseen_other": evaluate_split(kit, view, "test_unseen", reference="other", train=train),
    }
    steps, losses = run.series("loss")
    return {"arm": arm, "evaluations": evaluations, "loss_curve": [steps, losses], "train_cpu_s": train_cpu_s,
            "wall_s": time.perf_counter() - started, "parameters": sum(p.numel() for p in kit.model.parameters()),
            "model": str(run.path / "model")}


def run_arms(plan: Plan, arms: list[str], *, threads: int = 1, workers: int | None = None) -> list[dict]:
    """Every arm in spawned worker processes of ``threads`` torch threads each (``workers`` defaults to as many as
    the usable cores allow), results in the order of ``arms``."""
    from qwenkit.core.parallel import run_in_processes

    return run_in_processes(run_arm, [(plan, arm) for arm in arms], workers=workers, threads=threads)


def render_comparison(corpus: Path, models: dict[str, str], out: Path, size: int = 192) -> tuple[Path, Path]:
    """An MP4 (ground truth | each model) of one held-out speaker's sentence, with audio, and a PNG strip of it."""
    import numpy as np
    from PIL import Image

    from qwenkit.face.pipeline import open_dataset, reference_table
    from qwenkit.face.render import decode_frames, render_video
    from qwenkit.face.train import load_kit

    view = open_dataset(corpus, "synthetic")
    unseen = view.load("test_unseen")
    subject = sorted({s.subject for s in unseen})[0]
    own = sorted((s for s in unseen if s.subject == subject), key=lambda s: s.name)
    sequence = own[1]
    panels = [sequence.vertices]
    for path in models.values():
        kit = load_kit(path)
        references = reference_table([own[0]], kit)
        panels.append(kit.predict(sequence.audio, len(sequence.vertices), sequence.template,
                                  reference_clip_frames=references.get(subject), speaker=0))
    video = render_video(panels, view.triangles(), sequence.template, out / "comparison.mp4", view.fps,
                         audio=sequence.audio, sample_rate=sequence.sample_rate, lip_idx=view.lip_idx, size=size,
                         quiet=True)
    frames = decode_frames(video)
    picks = np.linspace(0, len(frames) - 1, 4).astype(int)
    strip = np.concatenate([frames[i] for i in picks], axis=0)
    Image.fromarray(strip).save(out / "comparison.png")
    (out / "comparison.json").write_text(json.dumps({"sequence": sequence.name, "panels": ["ground truth",
                                                                                            *models]}) + "\n")
    return video, out / "comparison.png"
