"""The reproduction's arm runner and rendered comparison, at toy size (the numbers come from benchmarks/)."""

from qwenkit.face.experiments import ARMS, Plan, arm_config, render_comparison, run_arms
from qwenkit.face.render import probe

TOY = ["model.dim=16", "model.primitives=4", "crop_frames=16", "reference_frames=16", "batch_size=2"]


def test_arms_differ_only_in_their_switches(tmp_path, small_corpus):
    root, _ = small_corpus
    plan = Plan(root, tmp_path, steps=3, overrides=TOY)
    ours, ablated = arm_config(plan, "ours"), arm_config(plan, "no-sync-losses")
    assert ours.losses.trend > 0 and ablated.losses.trend == 0 and ablated.losses.contrastive == 0
    assert ours.model == ablated.model and ours.trainer == ablated.trainer
    assert set(ARMS) == {"ours", "one-hot", "no-primitives", "no-enhancement", "no-sync-losses"}


def test_run_arms_and_render(tmp_path, small_corpus):
    root, _ = small_corpus
    results = run_arms(Plan(root, tmp_path / "arms", steps=3, overrides=TOY), ["one-hot"], workers=1)
    assert [r["arm"] for r in results] == ["one-hot"]
    onehot = results[0]["evaluations"]
    assert onehot["unseen_own"]["lve"] == onehot["unseen_other"]["lve"]  # a one-hot model cannot read a clip
    assert onehot["unseen_own"]["sequences"] == 2 * 4  # sentence 1 of each unseen speaker is the reference
    video, strip = render_comparison(root, {"one-hot": results[0]["model"]}, tmp_path, size=64)
    info = probe(video)
    assert info["width"] == 2 * 64 and info["audio_streams"] == 1 and strip.is_file()
