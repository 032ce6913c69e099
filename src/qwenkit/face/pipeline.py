"""What the commands and the reproduction share: resolving a dataset, training with a report, scoring splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qwenkit.face.data import FaceSequence, load_split, read_corpus, read_region, split_name
from qwenkit.face.errors import FaceDataError
from qwenkit.face.evaluate import Clip, predict_all, score, speaker_references, zero_motion
from qwenkit.face.train import FaceKit, FaceTrainConfig

EVAL_SPLITS = {"synthetic": ("test_seen", "test_unseen"), "vocaset": ("val", "test"), "biwi": ("test_a", "test_b")}


@dataclass
class DatasetView:
    """A dataset root with its named splits, frame rate, stride and regions."""

    root: Path
    dataset: str
    splits: dict[str, dict]
    fps: float
    frame_stride: int
    lip_idx: np.ndarray
    upper_idx: np.ndarray

    def load(self, split: str) -> list[FaceSequence]:
        if split not in self.splits:
            raise FaceDataError(f"dataset {self.dataset} has no split {split!r}; it has {sorted(self.splits)}")
        return load_split(self.root, self.splits[split], fps=self.fps, frame_stride=self.frame_stride)

    def triangles(self) -> np.ndarray | None:
        path = self.root / "triangles.npy"
        return np.load(path) if path.is_file() else None


def open_dataset(root: str | Path, dataset: str, lip_region: str | None = None,
                 upper_region: str | None = None) -> DatasetView:
    from qwenkit.face.datasets import dataset_layout

    root = Path(root)
    if not root.is_dir():
        raise FaceDataError(f"dataset folder {str(root)!r} does not exist; make one with `qwenkit face "
                            "make-synthetic --out DIR` or point data at your VOCASET/BIWI folder")
    if dataset == "synthetic":
        corpus = read_corpus(root)
        splits, fps, stride = corpus["splits"], corpus["fps"], 1
    else:
        splits, fps, stride = dataset_layout(dataset)
    lips = read_region(lip_region or root / "regions" / "lve.txt")
    upper = read_region(upper_region or root / "regions" / "fdd.txt")
    return DatasetView(root, dataset, splits, fps, stride, lips, upper)


def train_run(config: FaceTrainConfig, out: str | Path, *, resume=False, quiet: bool | None = None,
              run=None) -> tuple[FaceKit, DatasetView, object]:
    """Train on the dataset's ``train`` split into run directory ``out``; saves ``out/model``. Returns (kit, view,
    run)."""
    from qwenkit.face.train import train_face

    view = open_dataset(config.data, config.dataset, config.lip_region, config.upper_region)
    if config.model.audio_encoder == "hf" and not (Path(config.model.audio_encoder_path) / "config.json").is_file():
        from qwenkit.face.errors import AudioEncoderError

        raise AudioEncoderError(f"model.audio_encoder_path {config.model.audio_encoder_path!r} is not a local Hugging "
                                "Face model directory (no config.json); nothing is downloaded from the hub")
    train = view.load("train")
    if run is None:
        from qwenkit.core.runs import start_run

        run = start_run(out, config, resume=resume)
    kit, _ = train_face(config, train, view.lip_idx, view.upper_idx, run=run, resume=resume, quiet=quiet)
    kit.save(run.path / "model")
    triangles = view.triangles()
    if triangles is not None:
        np.save(run.path / "model" / "triangles.npy", triangles)
    return kit, view, run


def reference_table(sequences: list[FaceSequence], kit: FaceKit) -> dict[str, Clip]:
    return speaker_references(sequences, kit.scale, kit.config.reference_frames)


def evaluate_split(kit: FaceKit, view: DatasetView, split: str, *, reference: str = "own",
                   train: list[FaceSequence] | None = None) -> dict[str, float]:
    """Metrics of ``kit`` on ``split`` (and of zero motion, prefixed ``zero_``).

    Reference clips (style-encoder models): a speaker seen in training uses its first training sentence; any other
    speaker its lowest-numbered sentence of ``split``, which is then not scored. ``reference="other"`` gives every
    speaker the clip of the next speaker of the split (sorted), with the weights unchanged. One-hot models use the
    speaker's id when it was trained, else training speaker 0 (FaceFormer's practice for unseen speakers).
    """
    sequences = view.load(split)
    train = train if train is not None else view.load("train")
    references = reference_table(train, kit)
    unseen_refs = reference_table([s for s in sequences if s.subject not in references], kit)
    reference_names = set()
    for subject in unseen_refs:
        first = min((s for s in sequences if s.subject == subject), key=lambda s: split_name(s.name)[2])
        reference_names.add(first.name)
    scored = [s for s in sequences if s.name not in reference_names] or sequences
    references = {**references, **unseen_refs}
    subjects = sorted({s.subject for s in scored})
    if reference == "other":
        if len(subjects) < 2:
            raise FaceDataError(f"split {split!r} has one speaker; 'other' references need two or more")
        chosen = {s: subjects[(i + 1) % len(subjects)] for i, s in enumerate(subjects)}
    elif reference == "own":
        chosen = {s: s for s in subjects}
    else:
        raise FaceDataError(f"reference must be 'own' or 'other', got {reference!r}")
    speaker_index = {s: i for i, s in enumerate(kit.speakers)}
    preds = predict_all(kit, scored, lambda s: references[chosen[s.subject]],
                        lambda s: speaker_index.get(chosen[s.subject], 0))
    result = score(preds, scored, view.lip_idx, view.upper_idx)
    result.update({f"zero_{k}": v for k, v in score(zero_motion(scored), scored, view.lip_idx,
                                                    view.upper_idx).items()})
    result["sequences"] = len(scored)
    return result
