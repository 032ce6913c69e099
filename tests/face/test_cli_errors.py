"""Bad input to every face command: exit code 2, a message naming the field or file, no traceback."""

import numpy as np
import pytest

from cli_checks import assert_clean_cli_error as _fails


def test_make_synthetic_bad_config(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("speakers: [1,\n")
    _fails(capsys, ["face", "make-synthetic", "--out", str(tmp_path / "o"), "--config", str(bad)], "bad.yaml")
    _fails(capsys, ["face", "make-synthetic", "--out", str(tmp_path / "o"), "--set", "speakerz=3"], "speakerz")
    _fails(capsys, ["face", "make-synthetic", "--out", str(tmp_path / "o"), "--set", "speakers=many"], "speakers")
    _fails(capsys, ["face", "make-synthetic", "--out", str(tmp_path / "o"), "--set", "speakers=4", "--set",
                    "unseen_speakers=4"], "unseen_speakers")
    _fails(capsys, ["face", "make-synthetic", "--config", str(tmp_path / "missing.yaml")], "missing.yaml")


def test_train_bad_inputs(capsys, tmp_path, small_corpus):
    root, _ = small_corpus
    _fails(capsys, ["face", "train", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "nowhere")], "nowhere")
    _fails(capsys, ["face", "train", "--out", str(tmp_path / "r"), "--data", str(root), "--set",
                    "model.audio_encoder=hf"], "audio_encoder_path")
    _fails(capsys, ["face", "train", "--out", str(tmp_path / "r"), "--data", str(root), "--set",
                    "model.audio_encoder=hf", "--set", f"model.audio_encoder_path={tmp_path / 'no-model'}"],
           "no-model")
    _fails(capsys, ["face", "train", "--out", str(tmp_path / "r"), "--data", str(root), "--set", "model.style=big"],
           "model.style")
    _fails(capsys, ["face", "train", "--out", str(tmp_path / "r"), "--data", str(root), "--set",
                    "lip_region=/no/lve.txt"], "/no/lve.txt")
    _fails(capsys, ["face", "train", "--out", str(tmp_path / "r2"), "--data", str(root), "--resume=must"],
           "no checkpoint")


def test_train_corrupt_vertex_file(capsys, tmp_path, small_corpus):
    import shutil

    root, _ = small_corpus
    copy = tmp_path / "corpus"
    shutil.copytree(root, copy)
    np.save(copy / "vertices_npy" / "S000_sentence01.npy", np.zeros((5, 7), np.float32))
    _fails(capsys, ["face", "train", "--out", str(tmp_path / "r"), "--data", str(copy)], "S000_sentence01.npy",
           "(5, 7)")


@pytest.mark.parametrize("argv, fragment", [
    (["face", "eval", "--model", "/no/model"], "/no/model"),
    (["face", "animate", "--model", "/no/model", "--audio", "x.wav"], "/no/model"),
])
def test_eval_and_animate_missing_model(capsys, argv, fragment):
    _fails(capsys, argv, fragment)


def test_animate_unknown_renderer(capsys, tmp_path):
    _fails(capsys, ["face", "animate", "--model", str(tmp_path), "--audio", "x.wav", "--renderer", "vulkan"],
           "--renderer 'vulkan'", "pil, egl, osmesa")
