"""The CLI commands and the benchmark/report machinery, on tiny cases (the real benchmark is not a test)."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from qwenkit.permute.bench import (
    HUGE_PAGES_LABEL,
    LIMIT_NOT_ISOLATED,
    ORDINARY_WRITE_LABEL,
    PROBE_READS_LABEL,
    PROBE_WRITES_LABEL,
    SMALL_PAGES_LABEL,
    STREAM_READ_LABEL,
    STREAM_WRITE_LABEL,
    SWEEP_FULL_MAX_BYTES,
    Case,
    alias_experiment,
    diagnose_case,
    findings,
    launch_conditions,
    launched_text,
    limit_verdict,
    lowest_ratio,
    merge_records,
    quiet_peer_thread_pools,
    run_benchmark,
    run_case,
    run_sweep,
    stride_experiment,
    summary_rows,
    sweep_layouts,
    sweep_minimum,
    sweep_ratios,
    tile_shape_experiment,
    tile_table_experiment,
    tile_table_summary,
    time_interleaved,
    write_diagnosis_report,
    write_report,
    write_sweep_report,
    write_tile_report,
    write_tile_table_report,
)
from qwenkit.permute.check import run_check
from qwenkit.permute.cli import app


def test_check_command_passes():
    result = CliRunner().invoke(app, ["check", "--cases", "12", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "all equal to NumPy" in result.output


def test_explain_command_prints_the_plan():
    result = CliRunner().invoke(app, ["explain", "16,32,15,32,15,15", "0,3,2,5,4,1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "kind=tile" in result.output and "block 225 x 32" in result.output


def test_explain_tune_measures_the_variants():
    result = CliRunner().invoke(app, ["explain", "19,16,14,11,12,8", "4,1,2,0,3,5", "--threads", "1", "--tune"])
    assert result.exit_code == 0, result.output
    assert "kind=strided" in result.output and "tuned: fastest of 3 measured variants" in result.output


def test_run_check_reports_no_failures():
    report = run_check(cases=20, seed=11, threads=(1,))
    assert report.ok and report.cases == 20


def test_benchmark_writes_json_markdown_and_charts(tmp_path):
    cases = [Case("tiny 2-D", (96, 80), "float32", (1, 0), "2-D"),
             Case("tiny 3-D", (8, 16, 12), "uint8", (2, 0, 1), "3-D")]
    record = run_benchmark(cases, threads_list=(1, 2), repeats=2, with_peers=False, progress=lambda _: None)
    assert len(record["results"]) == 4 and all(r["correct"] for r in record["results"])
    assert "load_average_before" in record and record["environment"]["isa"]
    rows = summary_rows(record)
    assert rows[0]["x NumPy"] > 0 and rows[0]["% of copy"] > 0
    json_path, md_path, chart = write_report(record, tmp_path, title="test")
    assert json.loads(json_path.read_text())["repeats"] == 2
    text = md_path.read_text()
    assert "tiny 2-D" in text and "x NumPy" in text and chart.exists()
    assert "free memory to" in text, "the report says whether the host takes freed pages back"
    assert (tmp_path / "permute_copy_bandwidth.png").exists()


def test_a_run_on_another_machine_starts_a_fresh_record_and_names_how_it_was_started(monkeypatch):
    def record(cpu, case, started):
        result = {"case": {"name": case}, "threads": 1, "seconds_min": {"copy: np.copyto": 1.0}}
        return {"environment": {"cpu": cpu, "cores": 2, "isa": "avx2", "numpy": "2.4"}, "started": started,
                "load_average_before": (0.1, 0, 0), "load_average_after": (0.2, 0, 0), "repeats": 3,
                "results": [result]}
    first = merge_records(None, record("AMD EPYC", "2-D", "t0"))
    same = merge_records(first, record("AMD EPYC", "3-D", "t1"))
    assert [r["case"]["name"] for r in same["results"]] == ["2-D", "3-D"] and len(same["runs"]) == 2
    other = merge_records(same, record("Intel Xeon", "6-D", "t2"))
    assert [r["case"]["name"] for r in other["results"]] == ["6-D"] and [r["started"] for r in other["runs"]] == ["t2"]
    monkeypatch.setenv("QWENKIT_BENCH_RUNNER", "qk-cpu quiet")
    assert launch_conditions().startswith("qk-cpu quiet, CPUs ")
    monkeypatch.delenv("QWENKIT_BENCH_RUNNER")
    assert launch_conditions().startswith("started directly, CPUs ")
    assert launched_text({"launched": "started directly, CPUs 0"}) == "started directly, CPUs 0"
    assert launched_text({}) == "under `qk-cpu quiet`"  # records made before the field existed


def test_accounting_flags_impossible_bandwidth_and_takes_the_true_minimum():
    """Hand-made times: a case faster than the best copy of its bytes is a measurement error, not a result; the
    lowest ratio is taken over every output kind, not the aligned one only."""
    def result(name, qwenkit, empty_out, alloc, copy_np, copy_ours):
        return {"case": {"name": name, "group": "2-D"}, "bytes": 16 * 2**20, "threads": 1, "correct": True,
                "seconds_min": {"qwenkit": qwenkit, "qwenkit into np.empty out": empty_out, "numpy copyto": 1.0,
                                "qwenkit permute() allocating": alloc, "numpy ascontiguousarray": 1.2,
                                "copy: np.copyto": copy_np, "copy: qwenkit": copy_ours}}
    record = {"results": [result("fast", 0.1, 0.1, 0.2, 0.2, 0.12), result("slow out", 0.5, 1.25, 0.6, 0.1, 0.1)]}
    rows = summary_rows(record)
    assert rows[0]["% of copy"] == "error (120)"  # 0.12 / 0.1: above the best copy (qwenkit's, 0.12 s)
    assert rows[1]["% of copy"] == 20.0 and rows[1]["qwenkit GB/s"] == 2 * 16 * 2**20 / 0.5 / 1e9
    assert lowest_ratio(rows) == (0.8, "slow out", "x NumPy (np.empty out)")
    lines = findings(rows)
    assert "0.80x" in lines[0] and "fast error (120)" in lines[1]
    assert "of np.copyto, 1 thread: 1 of 2" in lines[2] and "of the best copy, 1 thread: 0 of 1" in lines[3]


def test_size_sweep_covers_16_elements_to_the_limit_and_reports_the_minimum(tmp_path):
    layouts = sweep_layouts(SWEEP_FULL_MAX_BYTES)
    for name in ("2-D (1,0)", "4-D NCHW->NHWC"):
        sizes = [math.prod(shape) for layout, shape, _ in layouts if layout == name]
        assert sizes[0] == 16 and sizes[-1] * 4 == 2**30
        assert all(b == 4 * a for a, b in zip(sizes, sizes[1:], strict=False))
    record = run_sweep(64 * 1024, repeats=1, small_repeats=1, progress=lambda _: None)
    assert all(entry["correct"] for entry in record["sizes"])
    assert {e["elements"] for e in record["sizes"]} >= {16, 64, 16384}
    ratio, layout, elements, kind = sweep_minimum(record)
    assert ratio == min(min(sweep_ratios(e).values()) for e in record["sizes"])
    md_path = write_sweep_report(record, tmp_path)
    assert "Minimum ratio to NumPy over the size sweep" in md_path.read_text()


def test_limit_diagnosis_times_every_variant_and_both_halves_of_the_traffic(tmp_path, forced_kernels):
    entry = diagnose_case(Case("small 2-D", (128, 96), "float32", (1, 0), "2-D"), repeats=1)
    assert entry["variants"] and all(label in entry["seconds_min"] for label in entry["variants"])
    assert entry["probed"]
    for key in ("qwenkit 2 threads", "copy: np.copyto", "copy: np.copyto 2 threads", "copy: qwenkit 2 threads",
                "read only (input, memory order)", "write only (output fill)", PROBE_READS_LABEL,
                PROBE_WRITES_LABEL, STREAM_READ_LABEL, STREAM_WRITE_LABEL, ORDINARY_WRITE_LABEL, SMALL_PAGES_LABEL,
                HUGE_PAGES_LABEL):
        assert entry["GB/s"][key] > 0
    assert set(entry["verdict"]) == {"1 thread", "2 threads"}
    assert entry["best variant % of copy"] >= entry["default % of copy"]
    md = write_diagnosis_report([entry], tmp_path, {"started": "now", "load_average_before": (0.0, 0.0, 0.0),
                                                    "load_average_after": (0.0, 0.0, 0.0)})
    assert "small 2-D" in md.read_text() and "limited by" in md.read_text()


def test_stride_experiment_pads_the_rows_and_splits_the_traffic(tmp_path, forced_kernels):
    rows = stride_experiment(1, row_elements=(64, 128), total_bytes=256 * 1024)
    assert [(r["input rows apart (KiB)"], r["padded"]) for r in rows] == [
        (0.25, False), (0.3125, True), (0.5, False), (0.5625, True)]
    for row in rows:
        assert row["kernel % of np.copyto"] > 0 and "block" in row["plan"]
        assert row["reads alone % of np.copyto time"] > 0 and row["writes alone % of np.copyto time"] > 0
    md = write_diagnosis_report([], tmp_path, {"started": "now", "load_average_before": (0.0, 0.0, 0.0),
                                               "load_average_after": (0.0, 0.0, 0.0)}, strides=rows)
    assert "Input row stride" in md.read_text()
    assert json.loads((tmp_path / "permute_limits.json").read_text())["strides"][0]["padded"] is False


def test_tile_shape_experiment_times_every_shape_and_marks_the_default(tmp_path, forced_kernels):
    from qwenkit.permute import planner

    default = planner.TILE_SHAPES[4]
    other = (256, 64, not default[2])
    rows = tile_shape_experiment(side=256, repeats=1, variants={"float32": (default, other)})
    expected = []
    for tp_bytes, tq_bytes, column_order in (default, other):
        expected.append(f"{tp_bytes} x {tq_bytes} B, {'column' if column_order else 'row'} order")
        expected += [expected[-1] + ", prefetch off"] if column_order else []
    assert [r["tile"] for r in rows] == expected
    assert [r["default now"] for r in rows] == [True] + [False] * (len(expected) - 1)
    assert all(r["ms"] > 0 and r["% of np.copyto"] > 0 for r in rows)
    md = write_tile_report(rows, tmp_path, {"started": "now", "cpu": "test", "launched": "started directly",
                                            "repeats": 1, "load_average_before": (0.0, 0.0, 0.0),
                                            "load_average_after": (0.0, 0.0, 0.0)})
    assert all(r["tile"] in md.read_text() for r in rows)


def test_alias_experiment_times_the_rule_on_and_off_and_writes_the_same_bytes(tmp_path, forced_kernels):
    rows = alias_experiment(side=64, repeats=1, axes_list=((2, 1, 0),))
    assert [r["rule"] for r in rows] == ["on (the planner)", "on, prefetch off", "off", "fewer rows only"]
    assert rows[3]["rows a tile"] == rows[0]["rows a tile"]
    assert rows[3]["input run per column (bytes)"] == rows[2]["input run per column (bytes)"]
    assert all(r["ms"] > 0 and r["% of np.copyto"] > 0 for r in rows)
    info = {"started": "now", "cpu": "test", "launched": "started directly", "repeats": 1, "l2": (2048, 16, 64),
            "load_average_before": (0.0, 0.0, 0.0), "load_average_after": (0.0, 0.0, 0.0)}
    tiles = tile_shape_experiment(side=256, repeats=1, variants={"float32": ((128, 128, True),)})
    text = write_tile_report(tiles, tmp_path, info, alias_rows=rows).read_text()
    assert "2048 sets x 16 ways" in text and "fewer rows only" in text


def _diagnosis(kernel, reads, writes, small_pages, huge_pages, kernel_2t, copy_2t):
    return {"variants": ["variant 0: outer (), streaming whole-line tiles"], "huge_pages_obtained_bytes": 2**21,
            "seconds_min": {"variant 0: outer (), streaming whole-line tiles": kernel, PROBE_READS_LABEL: reads,
                            PROBE_WRITES_LABEL: writes, STREAM_READ_LABEL: 1.0, STREAM_WRITE_LABEL: 1.0,
                            ORDINARY_WRITE_LABEL: 2.0, SMALL_PAGES_LABEL: small_pages, HUGE_PAGES_LABEL: huge_pages},
            "kernel 2T/1T": kernel_2t, "copy 2T/1T": copy_2t, "np.copyto 2T/1T": copy_2t}


def test_limit_verdict_names_the_resource_from_the_numbers():
    loads = limit_verdict(_diagnosis(10.0, 8.0, 3.0, 10.0, 10.0, 1.1, 1.0))
    assert loads["1 thread"].startswith("loads") and "80 %" in loads["1 thread"]
    assert loads["2 threads"].startswith("the memory system")
    stores_tlb = limit_verdict(_diagnosis(10.0, 2.0, 7.0, 12.0, 10.0, 1.2, 1.9))
    assert stores_tlb["1 thread"].startswith("stores (the scattered writes), with TLB misses")
    assert stores_tlb["2 threads"].startswith("per-core work")
    assert "in turn with the stores (not overlapped: together 110 %" in loads["1 thread"]
    assert "in turn" not in stores_tlb["1 thread"]
    neither = limit_verdict(_diagnosis(10.0, 5.0, 3.0, 10.0, 10.0, 1.7, 1.0))
    assert neither["1 thread"].startswith("neither half") and neither["2 threads"].startswith("meets 1.6x")
    in_turn = limit_verdict(_diagnosis(10.0, 5.0, 4.5, 10.0, 10.0, 1.7, 1.0))
    assert in_turn["1 thread"].startswith("the loads and the stores in turn (not overlapped: together 95 %")
    unprobed = {"variants": ["variant 0: outer (), streaming whole-line tiles"], "huge_pages_obtained_bytes": 2**21,
                "seconds_min": {"variant 0: outer (), streaming whole-line tiles": 10.0, SMALL_PAGES_LABEL: 10.0,
                                HUGE_PAGES_LABEL: 10.0},
                "kernel 2T/1T": 1.2, "copy 2T/1T": 1.9, "np.copyto 2T/1T": 1.9}
    assert limit_verdict(unprobed)["1 thread"].startswith(LIMIT_NOT_ISOLATED)


def test_tile_table_experiment_times_every_candidate_and_the_other_row_strips(tmp_path, forced_kernels):
    """NCHW -> NHWC float32, planes too large for the dense buffer: every candidate into both outputs, and the
    table's own entry once more into np.empty with the other row-strip choice; the summary leaves that row out."""
    from qwenkit.permute import planner

    default = planner.tile_shapes()[4]
    candidates = (default, (64, 64, True))
    rows = tile_table_experiment(repeats=1, candidates=candidates,
                                 cases=[Case("NCHW", (2, 64, 33, 40), "float32", (0, 2, 3, 1), "4-D")])
    assert [(r["tile"], r["output"]) for r in rows] == [
        (f"{default[0]} x {default[1]} B", "aligned"), (f"{default[0]} x {default[1]} B", "np.empty"),
        (f"{default[0]} x {default[1]} B", "np.empty, other row strips"), ("64 x 64 B", "aligned"),
        ("64 x 64 B", "np.empty")]
    assert all(r["ms"] > 0 and r["% of np.copyto"] > 0 and r["x NumPy"] > 0 for r in rows)
    summary = tile_table_summary(rows)
    assert len(summary) == 2 and all(row["cases"] == 1 for row in summary)
    assert sum(row["best mean"] for row in summary) == 1
    assert [row["in table now"] for row in summary] == [r["tile"] == f"{default[0]} x {default[1]} B"
                                                        for r in summary]
    record = {"started": "now", "cpu": "test", "launched": "started directly", "repeats": 1, "table": "intel",
              "load_average_before": (0.0, 0.0, 0.0), "load_average_after": (0.0, 0.0, 0.0)}
    md = write_tile_table_report(rows, tmp_path, record)
    assert "other row strips" in md.read_text() and "alias cut" not in md.read_text()
    assert json.loads((tmp_path / "permute_tile_table.json").read_text())["summary"] == summary
    forced = write_tile_table_report(rows, tmp_path, {**record, "table": "amd", "alias_cut": True,
                                                      "alias_cut_forced": True}, name="forced")
    assert "L2 alias cut (`planner.ALIAS_CUT`): on, forced for this run." in forced.read_text()


def test_peer_thread_pools_wait_passively_unless_torch_came_first(monkeypatch):
    import os
    import sys

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setitem(sys.modules, "torch", object())
    assert quiet_peer_thread_pools().startswith("unknown (torch imported before the benchmark")
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delitem(sys.modules, "torch")
    assert quiet_peer_thread_pools() == "PASSIVE" == os.environ["OMP_WAIT_POLICY"]
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert quiet_peer_thread_pools() == "ACTIVE", "a policy the user set is kept"


def test_a_before_hook_runs_untimed_right_before_each_measurement_of_its_contender():
    log = []
    contenders = {"plain": lambda: log.append("plain"), "allocating": lambda: log.append("allocating")}
    seconds_min, _ = time_interleaved(contenders, 3, before={"allocating": lambda: log.append("fault in")})
    assert set(seconds_min) == {"plain", "allocating"}, "the hook is not timed as a contender"
    assert log.count("fault in") == 4, "once before the calibration call, once before each of 3 measurements"
    for i, entry in enumerate(log):
        if entry == "fault in":
            assert log[i + 1] == "allocating" and (i == 0 or log[i - 1] != "fault in")


def test_every_allocating_contender_of_the_matrix_is_timed_after_memory_is_faulted_in(monkeypatch):
    """``run_case`` gives each allocating contender (permute(), ascontiguousarray, torch .contiguous(), JAX) a
    ``fault_in_free_memory`` of the case's bytes before each measurement, and none to the contenders with outputs."""
    from qwenkit.permute import bench

    faulted = []
    monkeypatch.setattr(bench, "fault_in_free_memory", faulted.append)
    case = Case("tiny 2-D", (64, 48), "float32", (1, 0), "2-D")
    result = run_case(case, 1, 2, with_peers=True)
    allocating = [name for name in bench.ALLOCATING_CONTENDERS if name in result.seconds_min]
    assert "qwenkit permute() allocating" in allocating and "numpy ascontiguousarray" in allocating
    assert faulted == [case.nbytes] * (3 * len(allocating))

