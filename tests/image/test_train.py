import numpy as np
import pytest
import torch

from qwenkit.core.config import ConfigError, load_config
from qwenkit.core.runs import RunDir
from qwenkit.image.data import make_edit_pair
from qwenkit.image.metrics import edit_region_mask
from qwenkit.image.sample import generate, image_grid
from qwenkit.image.train import ImageTrainConfig, batch_maker, build_kit, load_kit, make_step_fn, save_kit, train

TINY = {
    "width": 16, "height": 16, "batch_size": 4, "codec_fit_samples": 32,
    "model": {"layers": 1, "heads": 2, "head_dim": 8, "axes_dims_rope": [2, 2, 4], "codec_channels": 8},
    "trainer": {"max_steps": 3, "lr": 1e-3},
}


def _config(**overrides) -> ImageTrainConfig:
    return load_config(ImageTrainConfig, {**TINY, **overrides})


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="target_stage"):
        _config(target_stage="sentence")
    with pytest.raises(ConfigError, match="i2i"):
        _config(tasks={"i2i": 1.0}, edit_conditioning="vae")
    with pytest.raises(ConfigError, match="codec_patch"):
        _config(width=18)


def test_batches_are_deterministic_and_follow_tasks_and_curriculum():
    config = _config(tasks={"t2i": 1.0, "ti2i": 1.0, "i2i": 1.0}, trainer={"max_steps": 10})
    maker = batch_maker(config)
    a, b = maker(3), maker(3)
    assert a["task"] == b["task"] and a["prompts"] == b["prompts"] and torch.equal(a["target"], b["target"])
    tasks = {maker(i)["task"] for i in range(30)}
    assert tasks == {"t2i", "ti2i", "i2i"}
    t2i = batch_maker(_config(trainer={"max_steps": 10}))
    assert set(t2i(0)["stages"]) == {"non_text"} and set(t2i(9)["stages"]) <= {"glyph", "non_text"}
    assert "glyph" in t2i(9)["stages"]
    edit = next(maker(i) for i in range(30) if maker(i)["task"] == "ti2i")
    assert edit["source"].shape == edit["target"].shape == (4, 3, 16, 16)


def test_edit_pairs_change_only_what_the_instruction_says():
    for kind in ("word", "color", "position"):
        pair = make_edit_pair(0, 1, width=32, height=32, kinds=(kind,))
        assert pair.kind == kind
        source, target = pair.source.image(), pair.target.image()
        assert edit_region_mask(source, target).any()
        if kind == "word":
            assert pair.expected_text != pair.source.text and pair.expected_text in pair.instruction
        else:
            assert pair.expected_text == pair.source.text


@pytest.mark.parametrize("conditioning", ["dual", "semantic", "vae"])
def test_step_fn_runs_every_task_and_backpropagates(conditioning):
    tasks = {"t2i": 1.0, "ti2i": 1.0} | ({"i2i": 1.0} if conditioning != "vae" else {})
    config = _config(tasks=tasks, edit_conditioning=conditioning)
    kit = build_kit(config)
    assert (kit.denoiser.semantic_encoder is None) == (conditioning == "vae")
    step = make_step_fn(kit)
    maker = batch_maker(config)
    seen = set()
    for i in range(20):
        batch = maker(i)
        if batch["task"] in seen:
            continue
        seen.add(batch["task"])
        kit.denoiser.zero_grad()
        loss, metrics = step(kit.denoiser, batch)
        loss.backward()
        assert torch.isfinite(loss) and f"loss/{batch['task']}" in metrics
        assert kit.denoiser.transformer.proj_out.weight.grad.abs().sum() > 0
        if batch["task"] != "t2i" and kit.denoiser.semantic_encoder is not None:
            assert kit.denoiser.semantic_encoder.pos.grad.abs().sum() > 0
    assert seen == set(tasks)


def test_train_resume_save_reload_and_sample(tmp_path):
    config = _config(tasks={"t2i": 1.0, "ti2i": 1.0}, trainer={"max_steps": 4, "checkpoint_every": 2})
    kit, result = train(config, run=RunDir(tmp_path / "run"), quiet=True)
    assert len(result.history) == 4 and all(np.isfinite(h["loss"]) for h in result.history)
    # a second run interrupted at step 2 and resumed reaches the same EMA weights
    first = _config(tasks={"t2i": 1.0, "ti2i": 1.0}, trainer={"max_steps": 2, "checkpoint_every": 2})
    train(first, run=RunDir(tmp_path / "resumed"), quiet=True)
    resumed, res2 = train(config, run=RunDir(tmp_path / "resumed"), resume=True, quiet=True)
    assert res2.resumed_from == 2
    for (name, a), b in zip(kit.denoiser.state_dict().items(), resumed.denoiser.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name

    save_kit(kit, tmp_path / "model")
    assert (tmp_path / "model" / "transformer" / "config.json").is_file()  # loadable by diffusers itself
    reloaded = load_kit(tmp_path / "model")
    prompts = ['"A" black on white', '"7" red on white']
    images = generate(kit, prompts, steps=3, seed=1)
    again = generate(reloaded, prompts, steps=3, seed=1)
    assert len(images) == 2 and images[0].size == (16, 16)
    for x, y in zip(images, again, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    other_seed = generate(kit, prompts, steps=3, seed=2)
    assert not np.array_equal(np.asarray(images[0]), np.asarray(other_seed[0]))
    edited = generate(kit, ["make text red"], steps=2, source_images=[images[0]])
    assert edited[0].size == (16, 16)
    assert image_grid(images + edited, columns=2).size == (2 * 18 + 2, 2 * 18 + 2)
    with pytest.raises(ValueError, match="one each"):
        generate(kit, ["a", "b"], steps=2, source_images=[images[0]])
