"""LoRA fine-tune of a tiny checkpoint on synthesised renders, RapidOCR before and after.

A tiny MMDiT is trained on ten glyphs (``BASE_GLYPHS``, black on white, 16x16: the quick reproduction's task), saved
as a checkpoint, then LoRA-fine-tuned with ``qwenkit.image.finetune`` on renders of ten glyphs it never saw
(``NEW_GLYPHS``). Scores: OCR word accuracy of the new glyphs' captions (the fine-tune's target) and of the base
glyphs (what the LoRA keeps), before and after, same seeds. Writes benchmarks/results/image_finetune.{json,md} and
sample grids under benchmarks/results/image_finetune/.

    .venv/bin/python benchmarks/image_finetune.py [--base-steps 400] [--lora-steps 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from qwenkit.core.config import load_config
from qwenkit.image.evaluate import t2i_eval_set
from qwenkit.image.experiments import quick_config
from qwenkit.image.finetune import FinetuneConfig, finetune
from qwenkit.image.ocr import text_rendering_scores
from qwenkit.image.render import render
from qwenkit.image.sample import generate, image_grid
from qwenkit.image.train import ImageTrainConfig, load_kit, save_kit, train

BASE_GLYPHS, NEW_GLYPHS = "ABCDEFGHJK", "LMNPRSTUVW"
RESULTS = Path(__file__).parent / "results"


def _score(kit, config, n: int, seed: int) -> tuple[dict, list]:
    samples = t2i_eval_set(config, n, seed)
    images = generate(kit, [s.caption for s in samples], steps=12, cfg_scale=3.0, seed=seed)
    return text_rendering_scores(images, [s.text for s in samples]), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-steps", type=int, default=400)
    parser.add_argument("--lora-steps", type=int, default=300)
    parser.add_argument("--eval", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", type=Path, help="reuse a base checkpoint this script saved (same --base-steps and "
                                                  "--seed: training is deterministic)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base_config = load_config(ImageTrainConfig, quick_config(args.base_steps, 0, args.seed, glyphs=BASE_GLYPHS))
    new_config = base_config.model_copy(update={"glyphs": NEW_GLYPHS})
    work = Path(tempfile.mkdtemp(prefix="image_finetune_"))
    started = time.process_time()
    if args.base is None:
        kit, _ = train(base_config, quiet=True)
        checkpoint = save_kit(kit, work / "base")
        base_cpu_s = round(time.process_time() - started, 1)
    else:
        checkpoint, kit, base_cpu_s = args.base, load_kit(args.base), None
    data = work / "renders"
    data.mkdir()
    rows = []
    for i, spec in enumerate(t2i_eval_set(new_config, 400, seed=4242)):  # the synthesised renders
        render(spec.spec).save(data / f"{i:04d}.png")
        rows.append({"file": f"{i:04d}.png", "caption": spec.caption, "text": spec.text})
    (data / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    before_new, grid_before = _score(kit, new_config, args.eval, 777)
    before_base, _ = _score(kit, base_config, args.eval, 778)
    ft_config = load_config(FinetuneConfig, {
        "model": str(checkpoint), "data": str(data), "batch_size": 32, "cfg_dropout": 0.1,
        "lora": {"rank": 8, "alpha": 8, "target_modules": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj",
                                                           "add_k_proj", "add_v_proj", "img_mlp.net.2"]},
        "trainer": {"max_steps": args.lora_steps, "lr": 2e-3, "warmup_steps": 10, "seed": args.seed,
                    "checkpoint_every": 0, "log_every": 10}})
    started = time.process_time()
    done = finetune(ft_config, work / "run", quiet=True)
    lora_cpu_s = time.process_time() - started
    tuned = done["kit"]
    after_new, grid_after = _score(tuned, new_config, args.eval, 777)
    after_base, _ = _score(tuned, base_config, args.eval, 778)
    trainable = sum(p.numel() for p in tuned.denoiser.parameters() if p.requires_grad)
    total = sum(p.numel() for p in tuned.denoiser.parameters())
    out = RESULTS / "image_finetune"
    out.mkdir(parents=True, exist_ok=True)
    image_grid([im.resize((48, 48)) for im in grid_before[:20]], columns=10).save(out / "new_glyphs_before.png")
    image_grid([im.resize((48, 48)) for im in grid_after[:20]], columns=10).save(out / "new_glyphs_after.png")
    result = {
        "base_glyphs": BASE_GLYPHS, "new_glyphs": NEW_GLYPHS, "base_steps": args.base_steps,
        "lora_steps": args.lora_steps, "eval_n": args.eval, "lora": ft_config.lora.model_dump(),
        "trainable_params": trainable, "total_params": total, "base_train_cpu_s": base_cpu_s,
        "lora_train_cpu_s": round(lora_cpu_s, 1),
        "new_glyphs_ocr": {"before": before_new["word_accuracy"], "after": after_new["word_accuracy"]},
        "new_glyphs_ned": {"before": before_new["ned"], "after": after_new["ned"]},
        "base_glyphs_ocr": {"before": before_base["word_accuracy"], "after": after_base["word_accuracy"]},
    }
    (RESULTS / "image_finetune.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# LoRA fine-tune of a tiny checkpoint on synthesised renders (RapidOCR before/after)", "",
        f"Base: {args.base_steps} steps on glyphs {BASE_GLYPHS} (16x16, black on white). LoRA rank "
        f"{ft_config.lora.rank} on {', '.join(ft_config.lora.target_modules)} ({trainable:,} of {total:,} "
        f"parameters trainable), {args.lora_steps} steps of batch 32 on 400 renders of {NEW_GLYPHS}. "
        f"OCR word accuracy of {args.eval} captions each, 12 Euler steps, CFG 3, same seeds before and after.", "",
        "| glyphs | before | after |", "|---|---|---|",
        f"| new ({NEW_GLYPHS}): the fine-tune's target | {before_new['word_accuracy']:.2f} | "
        f"{after_new['word_accuracy']:.2f} |",
        f"| base ({BASE_GLYPHS}): kept? | {before_base['word_accuracy']:.2f} | {after_base['word_accuracy']:.2f} |",
        "", f"CPU seconds: base {base_cpu_s if base_cpu_s is not None else 'reused checkpoint'}, LoRA "
        f"{lora_cpu_s:.0f} (one thread, shared machine).", "",
        "New glyphs before: ![](image_finetune/new_glyphs_before.png)", "",
        "New glyphs after: ![](image_finetune/new_glyphs_after.png)", "",
    ]
    (RESULTS / "image_finetune.md").write_text("\n".join(lines), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
