"""Qwen-Image (arXiv 2508.02324): text-rendering data synthesis and curriculum, tiny MMDiT training through diffusers
(rectified flow, CFG dropout, EMA, multi-task T2I/TI2I/I2I with dual encoding), LoRA fine-tuning of checkpoints,
sampling, OCR-scored evaluation and the text-rendering benchmarks' metrics.

Light at import: heavy modules (torch, diffusers, OCR engines) load on first use of the names below.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "text_rendering_scores": "qwenkit.image.ocr",
        "RapidOCRReader": "qwenkit.image.ocr",
        "TesseractReader": "qwenkit.image.ocr",
        "ned": "qwenkit.image.metrics",
        "TextNormalization": "qwenkit.image.text_metrics",
        "cvtg_word_accuracy": "qwenkit.image.text_metrics",
        "cvtg_ned": "qwenkit.image.text_metrics",
        "bag_recall": "qwenkit.image.text_metrics",
        "load_cvtg2k": "qwenkit.image.text_benchmarks",
        "load_longtext": "qwenkit.image.text_benchmarks",
        "load_chineseword": "qwenkit.image.text_benchmarks",
        "run_text_benchmark": "qwenkit.image.text_benchmarks",
        "edit_distance": "qwenkit.image.metrics",
        "edit_consistency": "qwenkit.image.metrics",
        "edit_region_mask": "qwenkit.image.metrics",
        "masked_psnr": "qwenkit.image.metrics",
        "CurriculumSchedule": "qwenkit.image.synth",
        "SynthConfig": "qwenkit.image.synth",
        "synthesize": "qwenkit.image.synth",
        "make_spec": "qwenkit.image.synth",
        "RenderSpec": "qwenkit.image.render",
        "render": "qwenkit.image.render",
        "load_pretrained": "qwenkit.image.pretrained",
        "QwenVLPromptEncoder": "qwenkit.image.pretrained",
        "load_kit": "qwenkit.image.train",
        "generate": "qwenkit.image.sample",
        "FinetuneConfig": "qwenkit.image.finetune",
        "finetune": "qwenkit.image.finetune",
        "LoraSettings": "qwenkit.image.lora",
        "add_lora": "qwenkit.image.lora",
        "save_lora": "qwenkit.image.lora",
        "load_lora": "qwenkit.image.lora",
        "load_transformer": "qwenkit.image.model",
    },
)
