"""LoRA fine-tuning of a real-layout checkpoint: train -> save -> reload gives the same outputs (ours, merged, and
diffusers' ``load_lora_weights``), exact resume, and corrupted or mismatched state dicts refused loudly."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from tiny_qwen_image import save_pipeline_dir

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_pipeline_dir(tmp_path_factory.mktemp("qwen_image"), edit=False)


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("captions")
    rows = []
    for i, (fg, text) in enumerate([((200, 30, 30), "A"), ((30, 30, 200), "B"), ((30, 160, 30), "C")]):
        image = Image.new("RGB", (40, 40), "white")
        ImageDraw.Draw(image).text((12, 10), text, fill=fg)
        image.save(folder / f"{i}.png")
        rows.append({"file": f"{i}.png", "caption": f'"{text}" on white', "text": text})
    (folder / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def _config(checkpoint, captions, **trainer):
    from qwenkit.core.config import load_config
    from qwenkit.image.finetune import FinetuneConfig

    return load_config(FinetuneConfig, {
        "model": str(checkpoint), "data": str(captions), "height": 32, "width": 32, "batch_size": 2,
        "lora": {"rank": 4, "alpha": 8, "target_modules": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj"]},
        "trainer": {"max_steps": 3, "lr": 0.05, "checkpoint_every": 0, "warmup_steps": 0} | trainer})


def _velocity(transformer, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden, text = torch.randn(1, 16, 16, generator=g), torch.randn(1, 5, 16, generator=g)
    with torch.no_grad():
        return transformer(hidden_states=hidden, encoder_hidden_states=text,
                           encoder_hidden_states_mask=torch.ones(1, 5, dtype=torch.bool), timestep=torch.tensor([0.6]),
                           img_shapes=[[(1, 4, 4)]], return_dict=False)[0]


def test_lora_train_save_reload_identical(checkpoint, captions, tmp_path):
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from qwenkit.image.finetune import finetune
    from qwenkit.image.lora import has_lora, load_lora
    from qwenkit.image.model import load_transformer
    from qwenkit.image.pretrained import load_pretrained
    from qwenkit.image.sample import generate

    done = finetune(_config(checkpoint, captions), tmp_path / "run", quiet=True)
    kit = done["kit"]
    transformer = kit.denoiser.transformer
    base = load_pretrained(checkpoint, height=32, width=32)
    assert has_lora(transformer) and done["result"].step == 3
    trained = _velocity(transformer)
    assert not torch.allclose(trained, _velocity(base.denoiser.transformer), atol=1e-4)  # the LoRA changed the model
    lora_b = [p for n, p in transformer.named_parameters() if "lora_B" in n]
    zero = [n for n, p in transformer.named_parameters() if "lora_B" in n and p.abs().sum() == 0]
    # B starts at 0 and moves, except the last block's text queries: they only feed the text stream's output,
    # which the model discards, so their gradient is exactly zero
    assert lora_b and zero == ["transformer_blocks.1.attn.add_q_proj.lora_B.default.weight"], zero
    frozen = [p for n, p in transformer.named_parameters() if "lora_" not in n]
    assert not any(p.requires_grad for p in frozen)

    merged = load_pretrained(done["model"], height=32, width=32)  # strict load: no base_layer / lora keys
    assert not has_lora(merged.denoiser.transformer)
    assert torch.allclose(_velocity(merged.denoiser.transformer), trained, atol=1e-5)
    again = load_pretrained(checkpoint, height=32, width=32)
    settings = load_lora(again.denoiser.transformer, done["lora"])
    assert settings.rank == 4 and settings.alpha == 8
    assert torch.allclose(_velocity(again.denoiser.transformer), trained, atol=1e-6)

    pipe = QwenImagePipeline(  # the tiny directory's model_index.json lists no parts: assemble them
        transformer=load_transformer(checkpoint / "transformer"),
        vae=AutoencoderKLQwenImage.from_pretrained(checkpoint / "vae"),
        text_encoder=Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint / "text_encoder"),
        tokenizer=AutoTokenizer.from_pretrained(checkpoint / "tokenizer"),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(checkpoint / "scheduler"))
    pipe.load_lora_weights(done["lora"])  # diffusers' own loader accepts the file
    assert torch.allclose(_velocity(pipe.transformer), trained, atol=1e-6)
    prompt = '"A" on white'
    ours = np.asarray(generate(kit, [prompt], steps=2, cfg_scale=1.0, seed=2)[0], dtype=np.int16)
    theirs = pipe(prompt=prompt, height=32, width=32, num_inference_steps=2,
                  generator=torch.Generator().manual_seed(2), output_type="np").images[0]
    assert np.abs(ours - np.round(theirs * 255).astype(np.int16)).max() <= 1
    merged_image = np.asarray(generate(merged, [prompt], steps=2, cfg_scale=1.0, seed=2)[0], dtype=np.int16)
    assert np.abs(ours - merged_image).max() <= 1


def test_lora_resume_is_exact(checkpoint, captions, tmp_path):
    from qwenkit.image.finetune import finetune
    from qwenkit.image.lora import lora_state_dict

    straight = finetune(_config(checkpoint, captions, max_steps=4), tmp_path / "a", quiet=True)
    finetune(_config(checkpoint, captions, max_steps=2, checkpoint_every=2), tmp_path / "b", quiet=True)
    resumed = finetune(_config(checkpoint, captions, max_steps=4, checkpoint_every=2), tmp_path / "b", quiet=True,
                       resume="must")
    assert resumed["result"].step == 4
    a, b = lora_state_dict(straight["kit"].denoiser.transformer), lora_state_dict(resumed["kit"].denoiser.transformer)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mismatched_state_dicts_are_refused(checkpoint, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from qwenkit.image.lora import LoraLoadError, LoraSettings, add_lora, load_lora, save_lora
    from qwenkit.image.model import TransformerLoadError, load_transformer

    transformer = load_transformer(checkpoint / "transformer")
    add_lora(transformer, LoraSettings(rank=4))
    transformer.save_pretrained(tmp_path / "unmerged")  # the old save path: base_layer / lora_* keys
    with pytest.raises(TransformerLoadError, match="missing keys"):
        load_transformer(tmp_path / "unmerged")
    path = save_lora(transformer, LoraSettings(rank=4), tmp_path / "lora")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(path)
    dropped = dict(tensors)
    dropped.pop(sorted(dropped)[0])
    save_file(dropped, tmp_path / "dropped.safetensors", metadata=metadata)
    with pytest.raises(LoraLoadError, match="1 missing"):
        load_lora(load_transformer(checkpoint / "transformer"), tmp_path / "dropped.safetensors")
    key = sorted(k for k in tensors if "lora_A" in k)[0]
    reshaped = dict(tensors) | {key: torch.zeros(2, tensors[key].shape[1])}
    save_file(reshaped, tmp_path / "reshaped.safetensors", metadata=metadata)
    with pytest.raises(LoraLoadError, match="shape mismatch"):
        load_lora(load_transformer(checkpoint / "transformer"), tmp_path / "reshaped.safetensors")
    save_file(tensors, tmp_path / "bare.safetensors")
    with pytest.raises(LoraLoadError, match="metadata"):
        load_lora(load_transformer(checkpoint / "transformer"), tmp_path / "bare.safetensors")
    with pytest.raises(LoraLoadError, match="match no module"):
        add_lora(load_transformer(checkpoint / "transformer"), LoraSettings(target_modules=["q_proj"]))
