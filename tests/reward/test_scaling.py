import json

import pytest

from qwenkit.core.config import load_config
from qwenkit.reward.scaling import ScalingGrid, cell_counts, cells, collect_results, fit_grid, run_cell, run_grid

GRID = {
    "model_sizes": ["nano"],
    "data_sizes": [8, 16, 24, 32],
    "seeds": [0],
    "eval": {"adversarial": 9, "objective": 6, "subjective": 6},
    "epochs": 1,
    "batch_size": 8,
    "max_length": 48,
    "n_boot": 20,
    "trainer": {"lr": 3e-3, "warmup_steps": 0},
}


def test_cells_are_addressable_and_counts_add_up():
    grid = load_config(ScalingGrid, {**GRID, "model_sizes": ["nano", "tiny"], "seeds": [0, 1]})
    listed = cells(grid)
    assert len(listed) == 16
    assert [c.index for c in listed] == list(range(16))
    assert (listed[9].model_size, listed[9].data_size, listed[9].seed) == ("tiny", 8, 1)
    assert sum(cell_counts(grid, 33).values()) == 33


def test_bad_grids_are_refused():
    from qwenkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="sum to 1"):
        load_config(ScalingGrid, {**GRID, "mix": {"adversarial": 0.5, "objective": 0.2}})
    with pytest.raises(ConfigError, match="model_sizes"):
        load_config(ScalingGrid, {**GRID, "model_sizes": ["huge"]})


def test_grid_runs_cells_skips_finished_ones_and_fits(tmp_path):
    from qwenkit.reward.report import write_scaling_report

    grid = load_config(ScalingGrid, GRID)
    first = run_cell(grid, 2, tmp_path, quiet=True)
    assert first["data_size"] == 24 and set(first["by_category"]) == {"adversarial", "objective", "subjective"}
    saved = tmp_path / "cells" / cells(grid)[2].name / "result.json"
    saved.write_text(json.dumps({**first, "marker": True}))
    assert run_cell(grid, 2, tmp_path)["marker"] is True  # a finished cell is not retrained
    results = run_grid(grid, tmp_path, quiet=True)
    assert [r["index"] for r in results] == [0, 1, 2, 3] == [r["index"] for r in collect_results(grid, tmp_path)]
    fits = fit_grid(grid, results)
    data_fits = [f for f in fits if f.against == "data"]
    assert len(data_fits) == 3 and all(f.x == [8, 16, 24, 32] for f in data_fits)
    model_fits = [f for f in fits if f.against == "model"]
    assert all(f.fit is None for f in model_fits)  # one model size: nothing to fit against N
    path = write_scaling_report(grid, results, fits, tmp_path)
    text = path.read_text()
    assert "What this run shows" in text and (tmp_path / "plots" / "adversarial-data.png").is_file()


def test_a_missing_cell_index_is_an_error(tmp_path):
    grid = load_config(ScalingGrid, GRID)
    with pytest.raises(IndexError, match="cells 0..3"):
        run_cell(grid, 4, tmp_path)


def test_model_curve_uses_the_largest_data_size_every_model_has_finished():
    def result(model, parameters, data_size, loss):
        return {"model_size": model, "parameters": parameters, "data_size": data_size,
                "by_category": {"adversarial": {"bt_loss": loss}}}

    grid = load_config(ScalingGrid, {**GRID, "model_sizes": ["nano", "tiny"], "n_boot": 10})
    results = [result("nano", 100, 8, 0.69), result("nano", 100, 16, 0.60), result("nano", 100, 32, 0.50),
               result("tiny", 400, 8, 0.68), result("tiny", 400, 16, 0.55)]  # tiny has not finished D=32
    (model_curve,) = [f for f in fit_grid(grid, results) if f.against == "model"]
    assert model_curve.group == "D=16" and model_curve.x == [100.0, 400.0] and model_curve.y == [0.60, 0.55]


def test_workers_give_the_same_cells_as_one_process(tmp_path):
    grid = load_config(ScalingGrid, {**GRID, "data_sizes": [8, 16]})
    alone = run_grid(grid, tmp_path / "one", quiet=True)
    spread = run_grid(grid, tmp_path / "two", workers=2, quiet=True)
    strip = [{k: v for k, v in r.items() if "time" not in k and not k.endswith("_s")} for r in alone + spread]
    assert strip[:2] == strip[2:]
