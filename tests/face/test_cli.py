"""The four commands end to end on a tiny corpus: make-synthetic, train (+ resume), eval, animate."""

import json
import pickle

import numpy as np

from qwenkit.cli import run_cli
from qwenkit.face.render import probe

TINY = ["--set", "model.dim=16", "--set", "model.primitives=4", "--set", "crop_frames=16", "--set",
        "reference_frames=16", "--set", "batch_size=2", "--quiet", "--threads", "1"]


def test_commands_end_to_end(small_corpus, tmp_path):
    root, _ = small_corpus
    run = tmp_path / "run"
    first = ["face", "train", "--out", str(run), "--data", str(root), "--set", "trainer.max_steps=4", *TINY]
    assert run_cli(first) == 0
    assert run_cli(["face", "train", "--out", str(run), "--data", str(root), "--set", "trainer.max_steps=6", *TINY,
                    "--resume"]) == 0
    assert [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())][-1] == 6
    assert (run / "report.html").is_file() and (run / "model" / "triangles.npy").is_file()
    out = tmp_path / "eval.json"
    assert run_cli(["face", "eval", "--model", str(run / "model"), "--split", "test_unseen", "--out", str(out),
                    "--threads", "1"]) == 0
    metrics = json.loads(out.read_text())["test_unseen"]
    assert {"lve", "fdd", "ffe", "lve_sqrt_mm", "mve_mm", "zero_lve"} <= set(metrics)
    np.save(tmp_path / "ref.npy", np.load(root / "vertices_npy" / "S006_sentence01.npy"))
    with open(root / "templates.pkl", "rb") as f:
        np.save(tmp_path / "template.npy", pickle.load(f)["S006"])
    video = tmp_path / "out.mp4"
    assert run_cli(["face", "animate", "--model", str(run / "model"), "--audio", str(root / "wav" /
                    "S006_sentence02.wav"), "--reference", str(tmp_path / "ref.npy"), "--reference-audio",
                    str(root / "wav" / "S006_sentence01.wav"), "--template", str(tmp_path / "template.npy"),
                    "-o", str(video), "--size", "64", "--quiet", "--threads", "1"]) == 0
    expected = len(np.load(root / "vertices_npy" / "S006_sentence02.npy"))
    info = probe(video)
    assert abs(info["video_frames"] - expected) <= 1 and info["audio_streams"] == 1
