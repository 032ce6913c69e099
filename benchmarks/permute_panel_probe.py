"""Is the tile kernel's 2-D float32 limit its structure or the machine? A second structure, timed by its halves.

The diagnosis (``permute_bench.py --diagnose``) finds the tile kernel's loads and stores running in turn on this
machine, 2-D float32 at about a third of ``np.copyto``. ``permute_panel_probe.c`` transposes the same 8192^2 float32
array another way: R input rows x K columns copied row by row into a panel buffer (one sequential read stream at a
time, where a tile reads R rows interleaved), then transposed in registers and written out as whole runs of R * 4
bytes per output row with non-temporal stores (64 rows: 256-byte pieces, which streamed 4x faster than the tile
table's 64-byte ones); panels of 8192 columns read whole input rows, in memory order. The program times, in one
interleaved loop, ``memcpy`` of the same bytes and, for each panel shape, the whole transpose, its reads alone and
its writes alone. Needs a C compiler and an AVX2 CPU. Writes ``permute_panel_probe.md``/``.json`` to ``--out``::

    .venv/bin/python benchmarks/permute_panel_probe.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qwenkit.core.checkpoint import atomic_write_text
from qwenkit.core.report import Report
from qwenkit.core.system import cpu_family_model, cpu_model
from qwenkit.permute import available_isas
from qwenkit.permute.bench import cpu_text, fmt_load

SOURCE = Path(__file__).with_name("permute_panel_probe.c")


def run_probe(side: int, rounds: int) -> tuple[float, list[dict], bool]:
    """Compile and run the probe; ``(memcpy seconds, one row per panel shape, correct)``."""
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder) / "probe"
        subprocess.run([os.environ.get("CC", "cc"), "-O3", "-mavx2", str(SOURCE), "-o", str(binary)], check=True)
        lines = subprocess.run([str(binary), str(side), str(rounds)], check=True, capture_output=True,
                               text=True).stdout.splitlines()
    fields = [line.split("\t") for line in lines]
    copy_seconds = next(float(f[1]) for f in fields if f[0] == "memcpy")
    correct = next(f[1] for f in fields if f[0] == "correct") == "1"
    shapes: dict[str, dict[str, float]] = {}
    for shape, mode, seconds in (f for f in fields if len(f) == 3):
        shapes.setdefault(shape, {})[mode] = float(seconds)
    gigabytes = 2 * side * side * 4 / 1e9
    rows = []
    for shape, modes in shapes.items():
        whole = modes["transpose"]
        rows.append({"panel (input rows x columns)": shape, "transpose GB/s": gigabytes / whole,
                     "% of memcpy": 100 * copy_seconds / whole,
                     "reads alone, x memcpy time": modes["reads alone"] / copy_seconds,
                     "writes alone, x memcpy time": modes["writes alone"] / copy_seconds,
                     "halves together, % of transpose time": 100 * (modes["reads alone"] + modes["writes alone"])
                     / whole})
    return copy_seconds, rows, correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--side", type=int, default=8192,
                        help="the square's side (a multiple of 8192: the widest panel is 8192 columns)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if "avx2" not in available_isas():
        sys.exit("permute_panel_probe: this CPU has no AVX2; the probe is written for it")
    info = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_before": os.getloadavg(),
            "cpu": cpu_model(), "cpu_family_model": cpu_family_model(), "side": args.side, "rounds": args.rounds}
    copy_seconds, rows, correct = run_probe(args.side, args.rounds)
    info["load_average_after"] = os.getloadavg()
    if not correct:
        sys.exit("permute_panel_probe: the panel transpose gave wrong values; nothing written")
    gigabytes = 2 * args.side * args.side * 4 / 1e9
    for row in rows:
        print(f"{row['panel (input rows x columns)']:>10s}: {row['transpose GB/s']:5.1f} GB/s "
              f"{row['% of memcpy']:4.0f} % of memcpy; reads alone {row['reads alone, x memcpy time']:.2f}x, "
              f"writes alone {row['writes alone, x memcpy time']:.2f}x memcpy's time", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "permute_panel_probe.json",
                      json.dumps({**info, "memcpy_seconds": copy_seconds, "rows": rows}, indent=1))
    report = Report("qwenkit.permute: a second transpose structure, timed by its halves")
    report.text(f"Run {info['started']} on {cpu_text(info)}, load average before "
                f"{fmt_load(info['load_average_before'])}, after {fmt_load(info['load_average_after'])}; "
                f"`benchmarks/permute_panel_probe.py`: {args.side}^2 float32, minimum of {args.rounds} interleaved "
                f"rounds, 1 thread; memcpy of the same bytes {gigabytes / copy_seconds:.1f} GB/s (read plus written). "
                "Each panel is copied row by row into a buffer of R x K x 4 bytes (64-512 KiB; 2 MiB for 64 x 8192), "
                "transposed in 8 x 8 AVX2 registers and streamed out as whole runs of (input rows x 4) bytes per "
                "output row; `reads alone` runs only the panel "
                "copies, `writes alone` only the streamed rows. Results checked against the input.")
    report.table(rows, list(rows[0]), float_format="{:.3g}")
    md_path, _ = report.write(args.out, name="permute_panel_probe")
    print(f"wrote {md_path}")


if __name__ == "__main__":
    main()
