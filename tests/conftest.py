import os
import sys
from pathlib import Path

import pytest

# Test modules are imported in importlib mode (domains may reuse basenames such as test_losses.py); helper modules
# that a domain's tests import by name (e.g. worker functions for torch.multiprocessing) are found on these paths.
for _domain_tests in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
    if str(_domain_tests) not in sys.path:
        sys.path.append(str(_domain_tests))
# shared test helpers at the top of tests/ (cli_checks.py: the bad-input assertion of every domain)
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QWENKIT_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _torch_threads():
    """Two cores: one torch thread per test process keeps runs fast and free of oversubscription."""
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True, scope="module")
def _fresh_accelerate_state():
    """accelerate keeps one process-wide AcceleratorState: a test module that builds TRL's trainer (bf16 by default)
    would fix the mixed precision of every later ``train_loop`` in the process. Each test module leaves a clean state
    (per module, so a module-scoped trainer fixture keeps its accelerator while its tests run)."""
    yield
    import sys

    state_module = sys.modules.get("accelerate.state")
    if state_module is not None and state_module.AcceleratorState._shared_state:
        state_module.AcceleratorState._reset_state(reset_partial_state=True)
