"""Real-checkpoint loading (tiny configs saved in the diffusers layout: no downloads) and the VAE codec in training."""

import json

import numpy as np
import pytest
import torch
from tiny_qwen_image import save_pipeline_dir as _save_pipeline_dir
from tiny_qwen_image import tiny_vae as _vae

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def t2i_dir(tmp_path_factory):
    return _save_pipeline_dir(tmp_path_factory.mktemp("qwen_image"), edit=False)


def test_load_pretrained_matches_diffusers_pipeline(t2i_dir):
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline
    from diffusers import QwenImageTransformer2DModel as Transformer
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from qwenkit.image.model import DiffusersVAECodec
    from qwenkit.image.pretrained import QWEN_IMAGE_DROP, load_pretrained
    from qwenkit.image.sample import generate

    kit = load_pretrained(t2i_dir, width=32, height=32)
    from qwenkit.image.train import load_kit

    assert load_kit(t2i_dir).grid == (128, 128)  # the CLI's --model path: 1024x1024, 8 px per token
    assert isinstance(kit.codec, DiffusersVAECodec) and kit.grid == (4, 4)
    assert kit.text_encoder.drop_idx == QWEN_IMAGE_DROP
    pipe = QwenImagePipeline(
        transformer=Transformer.from_pretrained(t2i_dir / "transformer"),
        vae=AutoencoderKLQwenImage.from_pretrained(t2i_dir / "vae"),
        text_encoder=Qwen2_5_VLForConditionalGeneration.from_pretrained(t2i_dir / "text_encoder"),
        tokenizer=AutoTokenizer.from_pretrained(t2i_dir / "tokenizer"),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(t2i_dir / "scheduler"))
    prompts = ['"QWEN" red on white', "a longer prompt: 'QWEN' written in red on white"]
    ours, mask = kit.text_encoder.encode(prompts)
    theirs, their_mask = pipe._get_qwen_prompt_embeds(prompts, device=torch.device("cpu"))
    assert torch.equal(mask.long(), their_mask.long())
    assert torch.allclose(ours, theirs.float(), atol=1e-6)
    # the whole sampler against QwenImagePipeline: the same seed (noise drawn in diffusers' (B, 1, C, h, w) layout),
    # true CFG against the empty prompt, square and not square
    steps = 3
    for seed, (height, width) in ((3, (32, 32)), (4, (32, 64))):
        sized = load_pretrained(t2i_dir, width=width, height=height)
        mine = np.asarray(generate(sized, prompts[:1], steps=steps, cfg_scale=4.0, seed=seed)[0], dtype=np.int16)
        reference = pipe(prompt=prompts[0], negative_prompt="", true_cfg_scale=4.0, height=height, width=width,
                         num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                         output_type="np").images[0]
        reference = np.round(reference * 255).astype(np.int16)
        assert mine.shape == reference.shape == (height, width, 3)
        assert np.ptp(reference) > 10  # not a flat image: the comparison has content
        assert np.abs(mine - reference).max() <= 1


def test_load_pretrained_edit_runs_dual_encoding(tmp_path):
    from PIL import Image

    from qwenkit.image.pretrained import QWEN_IMAGE_EDIT_DROP, load_pretrained
    from qwenkit.image.sample import generate

    kit = load_pretrained(_save_pipeline_dir(tmp_path, edit=True), width=32, height=32)
    assert kit.text_encoder.wants_image and kit.text_encoder.drop_idx == QWEN_IMAGE_EDIT_DROP
    red, blue = Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (30, 30, 200))
    embeds, mask = kit.text_encoder.encode(["make it blue", "make it red"], images=[red, blue])
    # the image's merged vision tokens are part of the kept sequence: the two rows differ by image, too
    same_text, _ = kit.text_encoder.encode(["make it blue", "make it blue"], images=[red, blue])
    assert not torch.allclose(same_text[0], same_text[1])
    assert embeds.shape[0] == 2 and mask.shape == embeds.shape[:2]
    out = generate(kit, ["make it blue"], steps=2, cfg_scale=2.0, source_images=[red])
    assert out[0].size == (32, 32)
    with pytest.raises(ValueError, match="source image"):
        kit.text_encoder.encode(["make it blue"])


def test_load_pretrained_rejects_other_directories(tmp_path):
    from qwenkit.image.pretrained import load_pretrained

    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ValueError, match="FluxPipeline"):
        load_pretrained(tmp_path)


def test_vae_codec_selectable_in_training(tmp_path):
    from qwenkit.core.config import ConfigError, load_config
    from qwenkit.image.model import DiffusersVAECodec
    from qwenkit.image.sample import generate
    from qwenkit.image.train import ImageTrainConfig, load_kit, save_kit, train

    _vae().save_pretrained(tmp_path / "vae")
    with pytest.raises(ConfigError, match="vae_path"):
        load_config(ImageTrainConfig, {"model": {"codec": "vae"}})
    with pytest.raises(ConfigError, match="multiples"):
        load_config(ImageTrainConfig, {"width": 36, "model": {"codec": "vae", "vae_path": str(tmp_path / "vae")}})
    config = load_config(ImageTrainConfig, {
        "width": 32, "height": 32, "batch_size": 2, "texture": "plain", "tasks": {"t2i": 0.5, "ti2i": 0.5},
        "model": {"codec": "vae", "vae_path": str(tmp_path / "vae"), "layers": 1, "heads": 2, "head_dim": 8,
                  "axes_dims_rope": [2, 2, 4]},
        "trainer": {"max_steps": 3, "checkpoint_every": 0}})
    assert config.model.latent_factor() == 8
    vae_before = {k: v.clone() for k, v in _vae().state_dict().items()}
    kit, result = train(config, quiet=True)
    assert isinstance(kit.codec, DiffusersVAECodec) and kit.grid == (4, 4) and result.step == 3
    assert all(torch.equal(v, kit.codec.vae.state_dict()[k]) for k, v in vae_before.items())  # frozen
    assert all(np.isfinite(h["loss"]) for h in result.history)
    saved = save_kit(kit, tmp_path / "kit")
    assert (saved / "vae" / "config.json").is_file() and not (saved / "codec.safetensors").exists()
    again = load_kit(saved)
    assert isinstance(again.codec, DiffusersVAECodec)
    a = generate(kit, ['"A" red on white'], steps=2, seed=1)[0]
    b = generate(again, ['"A" red on white'], steps=2, seed=1)[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_scheduler_shift_of_qwen_image_config():
    import math

    from qwenkit.image.flow import scheduler_mu_and_shift

    qwen_image = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 0.9, "base_image_seq_len": 256,
                  "max_image_seq_len": 8192, "shift_terminal": 0.02, "time_shift_type": "exponential"}
    mu, shift = scheduler_mu_and_shift(qwen_image, 4096)  # 1024x1024: 128x128 latents, 64x64 packed tokens
    assert mu == pytest.approx(0.5 + 0.4 / 7936 * 3840) and shift == pytest.approx(2.0009, abs=1e-4)
    assert scheduler_mu_and_shift(None, 4096)[1] == pytest.approx(math.exp(1.15))  # code defaults: 3.16
    assert scheduler_mu_and_shift({"use_dynamic_shifting": False, "shift": 3.0}, 4096) == (None, 3.0)
    assert scheduler_mu_and_shift(dict(qwen_image, time_shift_type="linear"), 4096)[1] == pytest.approx(mu)


def test_training_and_sampling_share_the_loaded_checkpoints_schedule(t2i_dir):
    from qwenkit.image.flow import time_shift
    from qwenkit.image.pretrained import load_pretrained
    from qwenkit.image.sample import make_scheduler
    from qwenkit.image.train import make_step_fn

    kit = load_pretrained(t2i_dir, width=64, height=32)
    mu, shift = kit.schedule()
    # the checkpoint's scheduler: base_shift 0.5, max_shift 0.9 over 256..4096 tokens; 4x8 = 32 tokens here
    assert mu == pytest.approx(0.5 + (0.9 - 0.5) / (4096 - 256) * (32 - 256))
    steps = 4
    sampled = make_scheduler(kit, steps).sigmas[:-1].double()
    assert torch.allclose(sampled, time_shift(torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64), shift))
    # the training step draws sigma = time_shift(sigmoid(n), shift) with the same shift
    batch = {"target": torch.zeros(3, 3, 32, 64), "prompts": ["a", "b", "c"], "task": "t2i", "source": None}
    torch.manual_seed(5)
    _, metrics = make_step_fn(kit)(kit.denoiser, batch)
    torch.manual_seed(5)
    torch.randn(3, 32, 16)  # the noise of x0's shape is drawn first
    expected = time_shift(torch.sigmoid(torch.randn(3)), shift)
    assert metrics["sigma_mean"] == pytest.approx(float(expected.mean()), rel=1e-6)


def test_edit_condition_size_matches_diffusers():
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

    from qwenkit.image.sample import edit_condition_size

    for size in ((1024, 1024), (1920, 1080), (640, 480), (300, 900), (4000, 1000)):
        w, h, _ = calculate_dimensions(1024 * 1024, size[0] / size[1])
        assert edit_condition_size(size, 1024 * 1024, 32) == (w, h)


def test_edit_resizes_a_non_square_source_and_runs_in_bfloat16(tmp_path):
    from PIL import Image

    from qwenkit.image.pretrained import load_pretrained
    from qwenkit.image.sample import generate, prepare_edit_sources
    from qwenkit.image.train import make_step_fn

    kit = load_pretrained(_save_pipeline_dir(tmp_path, edit=True), width=32, height=16)
    kit.edit_condition_area, kit.edit_condition_multiple = 32 * 16, 8  # a tiny condition area for the CPU
    wide = Image.new("RGB", (90, 40), (200, 30, 30))
    assert prepare_edit_sources(kit, [wide])[0].size == (32, 16)  # 2.25:1 at 512 px -> 34x15 -> multiples of 8
    out = generate(kit, ["make it blue", "make it red"], steps=2, cfg_scale=2.0,
                   source_images=[wide, Image.new("RGB", (16, 32))])  # two condition sizes: two batches
    assert [im.size for im in out] == [(32, 16), (32, 16)]
    kit.to("cpu", torch.bfloat16)
    assert kit.denoiser.transformer.dtype == torch.bfloat16 and kit.codec.lat_mean.dtype == torch.float32
    assert generate(kit, ["make it blue"], steps=2, source_images=[wide])[0].size == (32, 16)
    batch = {"target": torch.zeros(2, 3, 16, 32), "source": torch.zeros(2, 3, 16, 32), "prompts": ["a", "b"],
             "task": "ti2i"}
    loss, _ = make_step_fn(kit)(kit.denoiser, batch)
    assert torch.isfinite(loss)
