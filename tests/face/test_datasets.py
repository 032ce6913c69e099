"""VOCASET and BIWI loaders on fixtures written in exactly the release formats."""

import pickle

import numpy as np
import pytest
from scipy.io import wavfile

from qwenkit.face import datasets
from qwenkit.face.data import load_split, read_region
from qwenkit.face.errors import FaceDataError
from qwenkit.face.mesh import make_face

TRAIN, VAL, TEST = "FaceTalk_170728_03272_TA", "FaceTalk_170811_03275_TA", "FaceTalk_170809_00138_TA"


def _write_raw_vocaset(root, num_vertices=50, frames=12):
    rng = np.random.default_rng(0)
    seq_index, audio, templates, rows = {}, {}, {}, []
    for subject in (TRAIN, VAL, TEST, "FaceTalk_000000_00000_XX"):
        templates[subject] = rng.normal(size=(num_vertices, 3)).astype(np.float32) * 0.05
        seq_index[subject], audio[subject] = {}, {}
        for sentence in ("sentence01", "sentence21", "sentence40"):
            order = rng.permutation(frames)  # frame numbers stored out of order, as dict keys may be
            start = len(rows)
            rows.extend(templates[subject] + rng.normal(size=(frames, num_vertices, 3)).astype(np.float32) * 1e-3)
            seq_index[subject][sentence] = {int(f): start + int(f) for f in order}
            samples = (rng.normal(size=int(frames / 60 * 22000)) * 3000).astype(np.int16)
            audio[subject][sentence] = {"audio": samples, "sample_rate": 22000}
    np.save(root / "data_verts.npy", np.stack(rows).astype(np.float32))
    for name, table in (("subj_seq_to_idx.pkl", seq_index), ("raw_audio_fixed.pkl", audio),
                        ("templates.pkl", templates)):
        with open(root / name, "wb") as f:
            pickle.dump(table, f, protocol=2)
    return np.stack(rows)


def test_vocaset_raw_conversion_round_trip_and_splits(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "vocaset"
    raw.mkdir()
    rows = _write_raw_vocaset(raw)
    assert datasets.convert_vocaset_raw(raw, out) == 12
    saved = np.load(out / "vertices_npy" / f"{TRAIN}_sentence21.npy")
    np.testing.assert_array_equal(saved, rows[12:24].reshape(12, -1))  # frames back in frame order
    rate, samples = wavfile.read(out / "wav" / f"{TRAIN}_sentence21.wav")
    assert rate == 22000 and samples.dtype == np.int16
    splits, fps, stride = datasets.dataset_layout("vocaset")
    train = load_split(out, splits["train"], fps=fps, frame_stride=stride)
    assert [s.name for s in train] == [f"{TRAIN}_sentence01", f"{TRAIN}_sentence21", f"{TRAIN}_sentence40"]
    assert train[0].vertices.shape == (6, 50, 3) and train[0].fps == 30
    np.testing.assert_array_equal(train[1].vertices, rows[12:24:2])
    test = load_split(out, splits["test"], fps=fps, frame_stride=stride)
    assert [s.name for s in test] == [f"{TEST}_sentence21", f"{TEST}_sentence40"]  # sentences 21-40 only
    val = load_split(out, splits["val"], fps=fps, frame_stride=stride)
    assert {s.subject for s in val} == {VAL}
    assert len(datasets.VOCASET_SPLITS["train"]["subjects"]) == 8


def test_vocaset_conversion_names_the_missing_file(tmp_path):
    with pytest.raises(FaceDataError, match="data_verts.npy"):
        datasets.convert_vocaset_raw(tmp_path, tmp_path / "out")
    np.save(tmp_path / "data_verts.npy", np.zeros((2, 5, 3), np.float32))
    with pytest.raises(FaceDataError, match="subj_seq_to_idx.pkl"):
        datasets.convert_vocaset_raw(tmp_path, tmp_path / "out")


def test_vl_round_trip_and_corrupt_file(tmp_path):
    vertices = np.arange(12, dtype=np.float32).reshape(4, 3)
    datasets.write_vl(tmp_path / "frame.vl", vertices)
    assert (tmp_path / "frame.vl").stat().st_size == 4 + 4 * 12
    np.testing.assert_array_equal(datasets.read_vl(tmp_path / "frame.vl"), vertices)
    (tmp_path / "bad.vl").write_bytes((tmp_path / "frame.vl").read_bytes()[:-3])
    with pytest.raises(FaceDataError, match="header says 4 vertices"):
        datasets.read_vl(tmp_path / "bad.vl")


def _write_obj(path, vertices, triangles):
    lines = [f"v {x} {y} {z}" for x, y, z in vertices] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in triangles]
    path.write_text("\n".join(lines) + "\n")


def test_biwi_raw_conversion_normalises_like_codetalker(tmp_path):
    face = make_face(8)
    raw = tmp_path / "BIWI"
    rng = np.random.default_rng(1)
    (raw / "rigid_scans").mkdir(parents=True)
    for subject in ("F2", "F1"):
        _write_obj(raw / "rigid_scans" / f"{subject}.obj", face.vertices * 100, face.triangles)
        for sentence in ("01", "37"):
            folder = raw / "faces" / subject / sentence
            folder.mkdir(parents=True)
            for i in range(5):
                datasets.write_vl(folder / f"frame_{i:03d}.vl", face.vertices * 100 + rng.normal(size=(64, 3)) * 0.1)
    out = tmp_path / "processed"
    assert datasets.convert_biwi_raw(raw / "faces", raw / "rigid_scans", out) == 4
    frames = np.load(out / "vertices_npy" / "F2_e37.npy").reshape(5, 64, 3)
    for frame in frames:
        assert datasets.surface_area(frame, face.triangles) == pytest.approx(1.0, rel=1e-5)
        np.testing.assert_allclose(frame.mean(axis=0), 0, atol=1e-6)
    with open(out / "templates.pkl", "rb") as f:
        template = pickle.load(f)["F2"]
    # rotated by pi about x: y and z flip sign
    expected = face.vertices * np.array([1, -1, -1])
    expected = (expected - expected.mean(0)) / np.sqrt(datasets.surface_area(expected - expected.mean(0),
                                                                              face.triangles))
    np.testing.assert_allclose(template, expected, atol=1e-6)
    (out / "wav").mkdir()
    for name in ("F2_e01", "F2_e37", "F1_e01", "F1_e37"):
        wavfile.write(out / "wav" / f"{name}.wav", 44100, np.zeros(8820, np.int16))
    splits, fps, stride = datasets.dataset_layout("biwi")
    assert [s.name for s in load_split(out, splits["test_a"], fps=fps)] == ["F2_e37"]
    assert [s.name for s in load_split(out, splits["test_b"], fps=fps)] == ["F1_e37"]
    assert [s.name for s in load_split(out, splits["train"], fps=fps)] == ["F2_e01"]
    assert load_split(out, splits["train"], fps=fps)[0].audio.shape == (3200,)  # 0.2 s resampled to 16 kHz


def test_region_files_in_codetalker_and_pickle_format(tmp_path):
    (tmp_path / "lve.txt").write_text("3, 5, 8,\n13 21\n")
    np.testing.assert_array_equal(read_region(tmp_path / "lve.txt"), [3, 5, 8, 13, 21])
    with open(tmp_path / "masks.pkl", "wb") as f:
        pickle.dump({"lips": np.array([1, 2]), "forehead": np.array([7])}, f)
    np.testing.assert_array_equal(read_region(tmp_path / "masks.pkl", key="lips"), [1, 2])
    with pytest.raises(FaceDataError, match="no key 'mouth'"):
        read_region(tmp_path / "masks.pkl", key="mouth")
    (tmp_path / "bad.txt").write_text("1, two, 3")
    with pytest.raises(FaceDataError, match="bad.txt"):
        read_region(tmp_path / "bad.txt")


def test_extract_audio_from_a_video(tmp_path):
    from qwenkit.face.render import write_mp4

    tone = (np.sin(np.linspace(0, 3000, 44100)) * 8000).astype(np.int16)
    wavfile.write(tmp_path / "tone.wav", 44100, tone)
    frames = [np.full((16, 16, 3), 100 + i, np.uint8) for i in range(25)]
    video = write_mp4(frames, tmp_path / "clip.mp4", 25, tmp_path / "tone.wav")
    wav = datasets.extract_audio(video, tmp_path / "out" / "clip.wav")
    rate, samples = wavfile.read(wav)
    assert rate == 16000 and samples.ndim == 1 and abs(len(samples) - 16000) < 1600 and samples.std() > 1000
    with pytest.raises(FaceDataError, match="missing.flv"):
        datasets.extract_audio(tmp_path / "missing.flv", tmp_path / "x.wav")
