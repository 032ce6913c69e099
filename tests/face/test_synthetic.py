"""The synthetic corpus: espeak-ng timings, visemes, the written layout and the per-speaker styles."""

import json
import pickle

import numpy as np

from qwenkit.face import mesh, speech, synthetic
from qwenkit.face.data import load_split, read_region, split_name


def test_espeak_reports_ordered_phonemes_within_the_audio():
    utterance = speech.synthesize("a quiet blue moon", voice="en+f3", rate_wpm=160, pitch=60)
    assert utterance.sample_rate == 22050 and utterance.duration_s > 0.5
    starts = [t for t, _ in utterance.phonemes]
    assert len(starts) >= 8 and starts == sorted(starts) and starts[-1] <= utterance.duration_s
    names = [n for _, n in utterance.phonemes]
    assert "m" in names and "u:" in names  # the struct layout decodes real mnemonics
    faster = speech.synthesize("a quiet blue moon", voice="en+f3", rate_wpm=240, pitch=60)
    assert faster.duration_s < utterance.duration_s


def test_viseme_track_holds_each_phoneme_until_the_next():
    track = synthetic.viseme_track([(0.0, "_"), (0.1, "m"), (0.2, "a"), (0.3, "_:")], 0.4, fps=10)
    assert track.shape == (4, 4)
    np.testing.assert_allclose(track[0], 0)
    np.testing.assert_allclose(track[1], [0, 0, 0, 1])  # m: lips closed
    np.testing.assert_allclose(track[2], [0.8, 0, 0.2, 0])  # a: jaw open
    np.testing.assert_allclose(track[3], 0)


def test_face_regions_and_blendshapes():
    face = mesh.make_face(20)
    assert face.vertices.shape == (400, 3) and face.blendshapes.shape == (7, 400, 3)
    mouth_y = face.vertices[face.lip_idx, 1].mean()
    assert abs(mouth_y - mesh.MOUTH_Y_M) < 0.01 and face.vertices[face.upper_idx, 1].min() > 0.0
    jaw = face.blendshapes[mesh.BLENDSHAPES.index("jaw_open")]
    chin = np.argmin(face.vertices[:, 1] + np.abs(face.vertices[:, 0]))
    assert jaw[chin, 1] < -0.005 and np.abs(jaw[face.upper_idx]).max() < 1e-4  # the jaw moves the chin, not the brows
    posed = mesh.pose(face, np.eye(7)[:2])
    np.testing.assert_allclose(posed[0] - face.vertices, face.blendshapes[0], atol=1e-7)


def test_rate_dependent_gain():
    style = {"gains": [1, 1, 1, 1], "rate_slope": 1.0, "lag_frames": 0, "smoothing_frames": 0.5, "smile_bias": 0.0,
             "smile_asymmetry": 0.0, "brow_coupling": 0.0}
    visemes = np.zeros((20, 4), np.float32)
    visemes[8:12, 0] = 1
    slow = synthetic.styled_weights(visemes, np.zeros(20, np.float32), style, 125)
    fast = synthetic.styled_weights(visemes, np.zeros(20, np.float32), style, 225)
    np.testing.assert_allclose(fast[:, 0], slow[:, 0] * 1.5 / 0.5, rtol=1e-5)


def test_corpus_layout_and_splits(small_corpus):
    root, manifest = small_corpus
    names = sorted(p.stem for p in (root / "vertices_npy").glob("*.npy"))
    assert len(names) == 8 * 5 and all((root / "wav" / f"{n}.wav").is_file() for n in names)
    with open(root / "templates.pkl", "rb") as f:
        templates = pickle.load(f)
    assert sorted(templates) == [f"S{i:03d}" for i in range(8)] and templates["S000"].shape == (144, 3)
    assert not np.allclose(templates["S000"], templates["S001"])  # every speaker has its own face
    lips = read_region(root / "regions" / "lve.txt")
    assert 0 < len(lips) < 144
    splits = manifest["splits"]
    assert splits["test_unseen"]["subjects"] == ["S006", "S007"] and splits["train"]["sentences"] == [1, 2, 3, 4]
    train = load_split(root, splits["train"], fps=30)
    assert len(train) == 6 * 4 and {split_name(s.name)[2] for s in train} == {1, 2, 3, 4}
    first = train[0]
    assert abs(len(first.audio) / 16000 - len(first.vertices) / 30) < 0.05  # audio and motion cover the same time
    motion = first.vertices[:, lips] - first.template[lips]
    assert np.abs(motion).max() > 1e-3  # the lips move
    assert json.loads((root / "corpus.json").read_text())["styles"]["S000"]["voice"].startswith("en")
