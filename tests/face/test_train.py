"""Training through the core loop: exact resume, and the behaviours the method claims (on a small corpus)."""

import numpy as np
import pytest
import torch

from qwenkit.core.runs import RunDir
from qwenkit.face.evaluate import predict_all, score, speaker_references, zero_motion
from qwenkit.face.train import FaceBatches, FaceTrainConfig, load_kit, prepare, train_face


def _config(steps, **extra):
    return FaceTrainConfig.model_validate({
        "model": {"dim": 32, "primitives": 8, **extra.pop("model", {})},
        "trainer": {"max_steps": steps, "lr": 3e-3, "lr_schedule": "cosine", "warmup_steps": 20, "log_every": 10,
                    **extra.pop("trainer", {})},
        "batch_size": 8, "crop_frames": 24, "reference_frames": 24, **extra})


@pytest.fixture(scope="module")
def trained(corpus_splits):
    splits, lips, upper = corpus_splits
    kit, result = train_face(_config(150), splits["train"], lips, upper, quiet=True)
    return kit, result


def test_batches_are_deterministic_in_the_index(corpus_splits):
    splits, _, _ = corpus_splits
    items = prepare(splits["train"], sorted({s.subject for s in splits["train"]}), 0.003)
    batches = FaceBatches(items, _config(1), seed=5)
    first, again, other = batches(3), batches(3), batches(4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["motion"], other["motion"])
    assert first["audio"].shape == (8, round(24 / 30 * 16000)) and first["reference_audio"].shape[1] == 12800


def test_resume_is_bit_identical(corpus_splits, tmp_path):
    splits, lips, upper = corpus_splits
    straight, _ = train_face(_config(6, trainer={"checkpoint_every": 3}), splits["train"], lips, upper,
                             run=RunDir(tmp_path / "straight"), quiet=True)
    interrupted_config = _config(3, trainer={"checkpoint_every": 3})
    train_face(interrupted_config, splits["train"], lips, upper, run=RunDir(tmp_path / "resumed"), quiet=True)
    resumed, result = train_face(_config(6, trainer={"checkpoint_every": 3}), splits["train"], lips, upper,
                                 run=RunDir(tmp_path / "resumed"), resume=True, quiet=True)
    assert result.resumed_from == 3
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_training_beats_zero_motion_and_depends_on_the_audio(trained, corpus_splits):
    kit, result = trained
    splits, lips, upper = corpus_splits
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    test = splits["test_seen"]
    references = speaker_references(splits["train"], kit.scale, kit.config.reference_frames)
    preds = predict_all(kit, test, lambda s: references[s.subject])
    model_lve = score(preds, test, lips, upper)["lve"]
    assert model_lve < 0.7 * score(zero_motion(test), test, lips, upper)["lve"]
    # drive each face with another utterance's audio (cut or tiled to the same length): the lips no longer match
    swapped = []
    for i, seq in enumerate(test):
        other = test[(i + 1) % len(test)].audio
        audio = np.resize(other, len(seq.audio)).astype(np.float32)
        clip = references[seq.subject]
        swapped.append(kit.predict(audio, len(seq.vertices), seq.template, reference_clip_frames=clip))
    assert score(swapped, test, lips, upper)["lve"] > 1.2 * model_lve


def test_own_reference_beats_another_speakers_on_unseen_speakers(trained, corpus_splits):
    kit, _ = trained
    splits, lips, upper = corpus_splits
    unseen = splits["test_unseen"]
    references = speaker_references(unseen, kit.scale, kit.config.reference_frames)
    scored = [s for s in unseen if not s.sentence.endswith("01")]  # sentence 1 is the reference clip
    subjects = sorted(references)
    other = {s: subjects[(i + 1) % len(subjects)] for i, s in enumerate(subjects)}
    own = score(predict_all(kit, scored, lambda s: references[s.subject]), scored, lips, upper)["lve"]
    wrong = score(predict_all(kit, scored, lambda s: references[other[s.subject]]), scored, lips, upper)["lve"]
    assert own < wrong


def test_saved_model_reloads_identically(trained, corpus_splits, tmp_path):
    kit, _ = trained
    splits, _, _ = corpus_splits
    loaded = load_kit(kit.save(tmp_path / "model"))
    seq = splits["test_seen"][0]
    references = speaker_references(splits["train"], kit.scale, kit.config.reference_frames)
    clip = references[seq.subject]
    np.testing.assert_array_equal(kit.predict(seq.audio, 20, seq.template, reference_clip_frames=clip),
                                  loaded.predict(seq.audio, 20, seq.template, reference_clip_frames=clip))
