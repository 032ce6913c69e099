"""qwenkit doctor --strict runs each tool and names the package of any that fails."""

import subprocess

from qwenkit.cli import run_cli
from qwenkit.core import doctor
from qwenkit.core.doctor import Check, CheckFailed, run_checks


def _failing() -> str:
    raise CheckFailed("simulated: aarch64-linux-gnu-gcc cannot find bits/libc-header-start.h")


def test_run_checks_reports_success_and_failure():
    results = run_checks([Check("native C", "gcc", doctor._native_c), Check("cross C", "libc6-dev-arm64-cross",
                                                                          _failing)])
    assert results[0].ok and "gcc" in results[0].detail
    assert not results[1].ok and "libc-header-start" in results[1].detail


def test_a_command_that_fails_is_a_failed_check():
    def broken() -> str:
        doctor._run(["sh", "-c", "echo nope >&2; exit 3"])
        return "unreachable"

    (result,) = run_checks([Check("broken", "pkg", broken)])
    assert not result.ok and "exited 3" in result.detail and "nope" in result.detail


def test_strict_doctor_exits_1_naming_the_package(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "default_checks", lambda: [Check("cross C", "libc6-dev-arm64-cross", _failing)])
    assert run_cli(["doctor", "--strict"]) == 1
    captured = capsys.readouterr()
    assert "install: libc6-dev-arm64-cross" in captured.err and "Traceback" not in captured.err + captured.out


def test_subprocess_errors_are_caught():
    def hangs() -> str:
        raise subprocess.TimeoutExpired("tesseract", 1)

    assert not run_checks([Check("slow", "pkg", hangs)])[0].ok
