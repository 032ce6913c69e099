"""Report of one ``qwenkit image train`` run: loss and OCR curves, and a sample grid from the saved model."""

from __future__ import annotations

from qwenkit.core.plots import line_plot
from qwenkit.core.report import Report
from qwenkit.core.runs import RunDir


def write_train_report(run: RunDir, kit, *, samples: int = 16) -> None:
    from qwenkit.image.evaluate import t2i_eval_set
    from qwenkit.image.sample import generate, image_grid

    report = Report("qwenkit image train")
    report.text(f"{kit.config.target_stage} rendering at {kit.config.width}x{kit.config.height}, tasks "
                f"{dict(kit.config.tasks)}, edit conditioning `{kit.config.edit_conditioning}`.")
    steps, loss = run.series("loss")
    if steps:
        report.image(line_plot(run.plot_path("loss"), {"loss": (steps, loss)}, ylabel="flow-matching loss"), "loss")
    for name in ("eval/word_accuracy", "eval/ned"):
        steps, values = run.series(name)
        if steps:
            path = line_plot(run.plot_path(name.replace("/", "_")), {name: (steps, values)}, ylabel=name)
            report.image(path, f"{name} (RapidOCR) vs step")
    held_out = t2i_eval_set(kit.config, samples)
    images = generate(kit, [s.caption for s in held_out], steps=20)
    grid_path = run.path / "plots" / "samples.png"
    grid_path.parent.mkdir(exist_ok=True)
    image_grid([im.resize((im.width * 2, im.height * 2)) for im in images], columns=8).save(grid_path)
    report.image(grid_path, "held-out captions: " + ", ".join(repr(s.text) for s in held_out))
    report.write(run.path)
