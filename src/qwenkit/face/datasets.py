"""Real datasets: VOCASET in the FaceFormer-processed layout (with conversion from the raw release) and BIWI in
CodeTalker's layout (with the ``.vl`` reader and CodeTalker's per-frame normalisation). Splits are data.

VOCASET raw release (TimoBolkart/voca): ``data_verts.npy`` (N, 5023, 3) float32 metres, ``subj_seq_to_idx.pkl``
``{subject: {sequence: {frame: row}}}``, ``raw_audio_fixed.pkl`` ``{subject: {sequence: {"audio": int16,
"sample_rate": int}}}``, ``templates.pkl`` ``{subject: (5023, 3)}``; processed meshes are at 60 fps and the loaders
keep every second frame (30 fps), as FaceFormer's do.

BIWI (CodeTalker ``BIWI/``): ``vertices_npy/F2_e01.npy`` (T, 70110) at 25 fps, ``wav/F2_e01.wav``, ``templates.pkl``,
``regions/lve.txt`` and ``fdd.txt``. A raw ``.vl`` frame is a uint32 vertex count then float32 xyz triples.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from qwenkit.face.errors import FaceDataError

VOCASET_TRAIN_SUBJECTS = ("FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
                          "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
                          "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA")
VOCASET_SPLITS = {
    "train": {"subjects": list(VOCASET_TRAIN_SUBJECTS), "sentences": list(range(1, 41))},
    "val": {"subjects": ["FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"], "sentences": list(range(21, 41))},
    "test": {"subjects": ["FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"], "sentences": list(range(21, 41))},
}
"""FaceFormer's ``main.py`` defaults; every VOCASET test speaker is unseen in training."""
VOCASET_FPS, VOCASET_FRAME_STRIDE = 60, 2

BIWI_TRAIN_SUBJECTS = ("F2", "F3", "F4", "M3", "M4", "M5")
BIWI_SPLITS = {
    "train": {"subjects": list(BIWI_TRAIN_SUBJECTS), "sentences": list(range(1, 33))},
    "val": {"subjects": list(BIWI_TRAIN_SUBJECTS), "sentences": list(range(33, 37))},
    "test_a": {"subjects": list(BIWI_TRAIN_SUBJECTS), "sentences": list(range(37, 41))},
    "test_b": {"subjects": ["F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6"], "sentences": list(range(37, 41))},
}
"""FaceFormer/CodeTalker: Test-A is the training speakers on e37-e40 (scored by cal_metric.py), Test-B the others."""
BIWI_FPS = 25


def _load_pickle(path: Path, what: str):
    if not path.is_file():
        raise FaceDataError(f"{str(path)!r} does not exist; the raw VOCASET folder needs {what}")
    with path.open("rb") as f:
        return pickle.load(f, encoding="latin1")


def convert_vocaset_raw(raw: str | Path, out: str | Path) -> int:
    """FaceFormer's ``process_voca_data.py``: raw release -> ``vertices_npy/``, ``wav/``, ``templates.pkl``.

    Returns the number of sequences written. Frames are ordered by their frame number.
    """
    from scipy.io import wavfile

    raw, out = Path(raw), Path(out)
    verts_path = raw / "data_verts.npy"
    if not verts_path.is_file():
        raise FaceDataError(f"{str(verts_path)!r} does not exist; pass the folder of the VOCASET training data")
    data_verts = np.load(verts_path, mmap_mode="r")
    seq_index = _load_pickle(raw / "subj_seq_to_idx.pkl", "subj_seq_to_idx.pkl")
    audio = _load_pickle(raw / "raw_audio_fixed.pkl", "raw_audio_fixed.pkl")
    templates = _load_pickle(raw / "templates.pkl", "templates.pkl")
    (out / "vertices_npy").mkdir(parents=True, exist_ok=True)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    count = 0
    for subject, sequences in seq_index.items():
        for sequence, frames in sequences.items():
            rows = [frames[k] for k in sorted(frames)]
            if max(rows) >= len(data_verts):
                raise FaceDataError(f"subj_seq_to_idx.pkl: {subject}/{sequence} points at row {max(rows)}, but "
                                    f"data_verts.npy has {len(data_verts)} rows")
            try:
                clip = audio[subject][sequence]
                samples, rate = np.asarray(clip["audio"]), int(clip["sample_rate"])
            except (KeyError, TypeError):
                raise FaceDataError(f"raw_audio_fixed.pkl has no audio/sample_rate for {subject}/{sequence}") from None
            name = f"{subject}_{sequence}"
            np.save(out / "vertices_npy" / f"{name}.npy", np.asarray(data_verts[rows]).reshape(len(rows), -1))
            wavfile.write(out / "wav" / f"{name}.wav", rate, samples)
            count += 1
    with open(out / "templates.pkl", "wb") as f:
        pickle.dump({k: np.asarray(v, dtype=np.float32) for k, v in templates.items()}, f)
    return count


def read_vl(path: str | Path) -> np.ndarray:
    """A BIWI ``.vl`` frame: uint32 vertex count, then float32 xyz -> (V, 3)."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise FaceDataError(f"{str(path)!r} is too short for a .vl frame (no vertex count)")
    (count,) = struct.unpack("<I", data[:4])
    if len(data) != 4 + 12 * count:
        raise FaceDataError(f"{str(path)!r}: header says {count} vertices ({4 + 12 * count} bytes), the file has "
                            f"{len(data)} bytes")
    return np.frombuffer(data, dtype="<f4", offset=4).reshape(count, 3).copy()


def write_vl(path: str | Path, vertices: np.ndarray) -> None:
    vertices = np.asarray(vertices, dtype="<f4").reshape(-1, 3)
    Path(path).write_bytes(struct.pack("<I", len(vertices)) + vertices.tobytes())


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and triangles (F, 3) of a Wavefront ``.obj`` (polygons are fanned; 1-based ids)."""
    vertices, triangles = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "v":
                vertices.append([float(v) for v in parts[1:4]])
            elif parts[0] == "f":
                ids = [int(p.split("/")[0]) - 1 for p in parts[1:]]
                triangles.extend([ids[0], ids[i], ids[i + 1]] for i in range(1, len(ids) - 1))
        except ValueError:
            raise FaceDataError(f"{str(path)!r} line {number}: cannot parse {line!r}") from None
    return np.asarray(vertices, np.float32), np.asarray(triangles, np.int64).reshape(-1, 3)


def surface_area(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Total triangle area ``sum_f |(b - a) x (c - a)| / 2`` (equals the sum of mixed-Voronoi areas)."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def normalize_biwi_frame(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """CodeTalker's BIWI preprocessing of one frame: rotate pi about x, subtract the mean, divide by sqrt(area)."""
    rotated = vertices.astype(np.float64) * np.array([1.0, -1.0, -1.0])
    centred = rotated - rotated.mean(axis=0)
    return (centred / np.sqrt(surface_area(centred, triangles))).astype(np.float32)


def convert_biwi_raw(faces_dir: str | Path, rigid_scans: str | Path, out: str | Path) -> int:
    """Raw BIWI meshes -> CodeTalker's layout: ``faces/<subject>/<NN>/*.vl`` -> ``vertices_npy/<subject>_eNN.npy``
    and ``rigid_scans/<subject>.obj`` -> ``templates.pkl`` (same normalisation, the template's triangles).

    The folder naming of the raw release is taken from CodeTalker's README; audio is extracted separately
    (:func:`extract_audio`). Returns the number of sequences written.
    """
    faces_dir, rigid_scans, out = Path(faces_dir), Path(rigid_scans), Path(out)
    (out / "vertices_npy").mkdir(parents=True, exist_ok=True)
    templates, count = {}, 0
    for subject_dir in sorted(p for p in faces_dir.iterdir() if p.is_dir()):
        subject = subject_dir.name
        obj = rigid_scans / f"{subject}.obj"
        if not obj.is_file():
            raise FaceDataError(f"no template {str(obj)!r} for the BIWI subject {subject}")
        template, triangles = read_obj(obj)
        templates[subject] = normalize_biwi_frame(template, triangles)
        for sentence_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            frames = sorted(sentence_dir.glob("*.vl"))
            if not frames:
                continue
            stack = np.stack([normalize_biwi_frame(read_vl(f), triangles) for f in frames])
            if stack.shape[1] != len(template):
                raise FaceDataError(f"{sentence_dir}: frames have {stack.shape[1]} vertices, the template "
                                    f"{len(template)}")
            name = f"{subject}_e{int(sentence_dir.name):02d}"
            np.save(out / "vertices_npy" / f"{name}.npy", stack.reshape(len(stack), -1))
            count += 1
    with open(out / "templates.pkl", "wb") as f:
        pickle.dump(templates, f)
    return count


def extract_audio(video: str | Path, wav: str | Path, sample_rate: int = 16000) -> Path:
    """The audio track of a video as mono ``sample_rate`` wav, through ffmpeg (Debian ``ffmpeg``)."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        raise FaceDataError("ffmpeg is not installed; apt-get install ffmpeg")
    wav = Path(wav)
    wav.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(video), "-vn", "-ac", "1", "-ar",
                             str(sample_rate), str(wav)], capture_output=True, text=True)
    if result.returncode != 0:
        raise FaceDataError(f"ffmpeg could not extract audio from {str(video)!r}: {result.stderr.strip()}")
    return wav


def dataset_layout(dataset: str) -> tuple[dict, float, int]:
    """(splits, stored fps, frame stride) of a named dataset."""
    if dataset == "vocaset":
        return VOCASET_SPLITS, VOCASET_FPS, VOCASET_FRAME_STRIDE
    if dataset == "biwi":
        return BIWI_SPLITS, BIWI_FPS, 1
    raise FaceDataError(f"unknown dataset {dataset!r}; use synthetic, vocaset or biwi")
