"""A tiny Qwen-Image / Qwen-Image-Edit checkpoint in the diffusers layout (diffusers' own test configs, a locally
trained BPE tokenizer: no downloads), shared by the image tests. A helper module with a unique name: the test
folders are on sys.path (tests/conftest.py)."""

import json

import torch

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    from qwenkit.image.pretrained import QWEN_IMAGE_EDIT_TEMPLATE, QWEN_IMAGE_TEMPLATE

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([QWEN_IMAGE_TEMPLATE, QWEN_IMAGE_EDIT_TEMPLATE, '"QWEN" red on white'] * 2, trainer)
    return Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                              additional_special_tokens=SPECIALS[1:])


def tiny_vae():
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(0)
    return AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                  temperal_downsample=[False, True], latents_mean=[0.1] * 4, latents_std=[0.9] * 4)


def save_pipeline_dir(root, edit: bool):
    """A tiny Qwen-Image / Qwen-Image-Edit directory in the diffusers layout (the configs of diffusers' own tests)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tiny_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(SPECIALS)
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
                                              axes_dims_rope=(8, 4, 4))
    text_config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer), "rope_theta": 1e6,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=len(tokenizer), vision_start_token_id=ids[3], vision_end_token_id=ids[4],
        image_token_id=ids[5], video_token_id=ids[5])
    text_encoder = Qwen2_5_VLForConditionalGeneration(text_config)
    transformer.save_pretrained(root / "transformer")
    tiny_vae().save_pretrained(root / "vae")
    text_encoder.save_pretrained(root / "text_encoder")
    tokenizer.save_pretrained(root / "tokenizer")
    FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                    time_shift_type="exponential").save_pretrained(root / "scheduler")
    name = "QwenImageEditPipeline" if edit else "QwenImagePipeline"
    if edit:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56).save_pretrained(root / "processor")
        tokenizer.save_pretrained(root / "processor")
    (root / "model_index.json").write_text(json.dumps({"_class_name": name, "_diffusers_version": "0.42.1"}))
    return root
