"""Loading real Qwen-Image / Qwen-Image-Edit checkpoints (local diffusers directories) into an :class:`ImageKit`.

A diffusers directory holds ``model_index.json``, ``transformer/`` (``QwenImageTransformer2DModel``), ``vae/``
(``AutoencoderKLQwenImage``), ``text_encoder/`` (``Qwen2_5_VLForConditionalGeneration``), ``tokenizer/``,
``scheduler/`` and, for Qwen-Image-Edit, ``processor/`` (the Qwen2-VL image processor). The kit uses the same
code paths as the tiny CPU models: :class:`~qwenkit.image.model.DiffusersVAECodec` as codec,
:class:`~qwenkit.image.model.ImageDenoiser` around the transformer, and :class:`QwenVLPromptEncoder` as condition
encoder, so :func:`qwenkit.image.sample.generate`, the edit path and the OCR evaluation run unchanged.

Prompt encoding follows ``QwenImagePipeline._get_qwen_prompt_embeds``: the prompt is wrapped in the Qwen-Image chat
template (a system prompt asking to describe the image), run through Qwen2.5-VL, the **last hidden layer** is taken,
and the first ``drop_idx`` positions (the template's system part: 34 tokens for Qwen-Image, 64 for Qwen-Image-Edit
with Qwen's tokenizer) are dropped; rows are re-padded on the right with a mask. For editing, the template holds
``<|vision_start|><|image_pad|><|vision_end|>`` before the instruction and the source image goes through the VLM as
well (the semantic channel); each ``<|image_pad|>`` is expanded to ``prod(image_grid_thw) / merge_size^2`` tokens,
which is what ``Qwen2VLProcessor`` does (done here with the image processor and tokenizer directly, because the
transformers processor class needs torchvision for its video half).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from qwenkit.image.model import ModelFolderError, ModelFormatError

QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
QWEN_IMAGE_DROP = 34
QWEN_IMAGE_EDIT_TEMPLATE = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the image. Generate a new image "
    "that meets the user's requirements while maintaining consistency with the original input where appropriate."
    "<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n<|im_start|>assistant\n"
)
QWEN_IMAGE_EDIT_DROP = 64
IMAGE_PAD = "<|image_pad|>"
PIPELINES = {"QwenImagePipeline": "t2i", "QwenImageEditPipeline": "edit"}


class QwenVLPromptEncoder:
    """Prompt (+ optional source image) -> (hidden states (B, L, D), mask (B, L)) through Qwen2.5-VL, frozen.

    ``accepts_images`` tells the sampler and the training step to hand it the source images of an edit (the
    semantic channel of dual encoding lives inside the VLM here, not in a separate image encoder).
    """

    accepts_images = True

    def __init__(self, model, tokenizer, *, template: str = QWEN_IMAGE_TEMPLATE, drop_idx: int = QWEN_IMAGE_DROP,
                 image_processor=None, max_length: int = 1024):
        if "{}" not in template:
            raise ValueError("template must contain '{}' where the prompt goes")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.template, self.drop_idx = tokenizer, template, drop_idx
        self.image_processor, self.max_length = image_processor, max_length
        config = model.config
        self.dim = getattr(getattr(config, "text_config", None), "hidden_size", None) or config.hidden_size

    @property
    def wants_image(self) -> bool:
        return IMAGE_PAD in self.template

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], images: Sequence | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [self.template.format(p) for p in prompts]
        vision = {}
        if self.wants_image:
            if images is None or len(images) != len(prompts):
                raise ValueError(f"this encoder's template takes one source image per prompt; got "
                                 f"{0 if images is None else len(images)} images for {len(prompts)} prompts")
            if self.image_processor is None:
                raise ValueError("no image processor: load the checkpoint's processor/ (Qwen2VLImageProcessor)")
            vision = dict(self.image_processor(images=list(images), return_tensors="pt"))
            merge = self.image_processor.merge_size ** 2
            counts = (vision["image_grid_thw"].prod(-1) // merge).tolist()
            texts = [t.replace(IMAGE_PAD, IMAGE_PAD * int(n), 1) for t, n in zip(texts, counts, strict=True)]
        batch = self.tokenizer(texts, max_length=self.max_length + self.drop_idx, padding=True, truncation=True,
                               return_tensors="pt")
        device = next(self.model.parameters()).device
        out = self.model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                         pixel_values=vision["pixel_values"].to(device) if vision else None,
                         image_grid_thw=vision["image_grid_thw"].to(device) if vision else None,
                         output_hidden_states=True)
        hidden = out.hidden_states[-1]
        keep = batch["attention_mask"].bool().to(device)
        rows = [h[m][self.drop_idx:] for h, m in zip(hidden, keep, strict=True)]
        width = max(r.shape[0] for r in rows)
        if width == 0:
            raise ValueError(f"every prompt is shorter than drop_idx={self.drop_idx} tokens: the template does not "
                             "match this tokenizer")
        embeds = torch.stack([torch.cat([r, r.new_zeros(width - r.shape[0], r.shape[1])]) for r in rows])
        mask = torch.stack([torch.arange(width, device=device) < r.shape[0] for r in rows])
        return embeds.float(), mask


def pipeline_kind(directory: str | Path) -> str:
    """``"t2i"`` or ``"edit"`` from ``model_index.json``'s ``_class_name``."""
    index = Path(directory) / "model_index.json"
    if not index.is_file():
        raise ModelFolderError(f"{directory} has no model_index.json: pass a local diffusers Qwen-Image or "
                                "Qwen-Image-Edit directory (e.g. a snapshot of Qwen/Qwen-Image)")
    name = json.loads(index.read_text("utf-8")).get("_class_name")
    if name not in PIPELINES:
        raise ModelFormatError(f"{index}: _class_name={name!r} is not supported; use one of {sorted(PIPELINES)}")
    return PIPELINES[name]


def load_pretrained(directory: str | Path, *, width: int = 1024, height: int = 1024,
                    torch_dtype: torch.dtype | None = None, device: str | torch.device = "cpu"):
    """An :class:`~qwenkit.image.train.ImageKit` from a local Qwen-Image (T2I) or Qwen-Image-Edit directory.

    ``width``/``height`` are the generation size (multiples of 16 for the real 8x VAE with 2x2 packing). The kit
    samples and trains with the checkpoint's own scheduler config (dynamic shift from ``base/max_shift``); an edit
    kit resizes its sources to ~1024^2 pixels at their aspect ratio, as ``QwenImageEditPipeline`` does.
    """
    from diffusers import AutoencoderKLQwenImage
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from qwenkit.core.config import load_config
    from qwenkit.image.model import DiffusersVAECodec, ImageDenoiser, load_transformer
    from qwenkit.image.train import ImageKit, ImageTrainConfig

    directory = Path(directory)
    kind = pipeline_kind(directory)
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler") + (("processor",) if kind == "edit"
                                                                                       else ()):
        if not (directory / part).is_dir():
            raise ModelFolderError(f"{directory} lacks {part}/, which a diffusers Qwen-Image directory has")
    dtype = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    transformer = load_transformer(directory / "transformer", **dtype).to(device)
    vae = AutoencoderKLQwenImage.from_pretrained(directory / "vae").to(device).eval().requires_grad_(False)
    text_model = Qwen2_5_VLForConditionalGeneration.from_pretrained(directory / "text_encoder", **dtype).to(device)
    tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
    scheduler_config = json.loads((directory / "scheduler" / "scheduler_config.json").read_text("utf-8"))
    if kind == "edit":
        from transformers import AutoImageProcessor

        encoder = QwenVLPromptEncoder(text_model, tokenizer, template=QWEN_IMAGE_EDIT_TEMPLATE,
                                      drop_idx=QWEN_IMAGE_EDIT_DROP,
                                      image_processor=AutoImageProcessor.from_pretrained(directory / "processor"))
    else:
        encoder = QwenVLPromptEncoder(text_model, tokenizer)
    t = transformer.config
    config = load_config(ImageTrainConfig, {
        "width": width, "height": height, "edit_conditioning": "dual",
        "model": {"codec": "vae", "vae_path": str(directory / "vae"), "layers": t.num_layers,
                  "heads": t.num_attention_heads, "head_dim": t.attention_head_dim,
                  "axes_dims_rope": list(t.axes_dims_rope)},
    })
    codec = DiffusersVAECodec(vae)
    if codec.channels != t.in_channels:
        raise ModelFormatError(f"vae z_dim={vae.config.z_dim} packs to {codec.channels} channels but the transformer "
                         f"takes in_channels={t.in_channels}: the parts come from different models")
    edit = {"edit_condition_area": 1024 * 1024, "edit_condition_multiple": 32} if kind == "edit" else {}
    return ImageKit(ImageDenoiser(transformer.eval(), None), codec, encoder, config,
                    scheduler_config=scheduler_config, **edit)
