import pytest
import torch

from qwenkit.core.parallel import default_workers, run_in_processes


def test_results_come_back_in_job_order_from_spawned_workers():
    done = []
    results = run_in_processes(pow, [(2, k) for k in range(6)], workers=2, on_done=lambda i, r: done.append((i, r)))
    assert results == [2**k for k in range(6)]
    assert sorted(done) == [(k, 2**k) for k in range(6)]


@pytest.mark.parametrize("workers", [1, 2])
def test_every_job_runs_with_the_asked_thread_count(workers):
    before = torch.get_num_threads()
    assert run_in_processes(torch.get_num_threads, [()] * 3, workers=workers, threads=1) == [1, 1, 1]
    assert torch.get_num_threads() == before


def test_a_failing_job_raises_in_the_caller():
    with pytest.raises(ValueError, match="invalid literal"):
        run_in_processes(int, [("1",), ("x",)], workers=1)


def test_default_workers_never_oversubscribe(monkeypatch):
    from qwenkit.core import system

    monkeypatch.setattr(system, "usable_cores", lambda: 4)
    assert default_workers(10, threads=1) == 4
    assert default_workers(10, threads=2) == 2
    assert default_workers(3, threads=1) == 3
    assert default_workers(10, threads=8) == 1
