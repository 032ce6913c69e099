"""Reproductions of the shared LM layer (discovered by ``qwenkit demo``)."""

from qwenkit.core.repro import Repro
from qwenkit.lm.copy_task import run_smoke

REPROS = [Repro(name="smoke", title="Smoke: tiny Qwen3 copy task (core + lm end to end)", run=run_smoke,
                quick_minutes=0.2, order=0)]
