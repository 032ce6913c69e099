"""``qwenkit infer serve`` on bad inputs: exit code 2, a message naming the option or path, no traceback."""

from __future__ import annotations

import pytest

from qwenkit.cli import run_cli


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--model", "tiny-qwen3", "--prefill-chunk", "0"], "--prefill-chunk"),
        (["--model", "tiny-qwen3", "--max-batch-size", "0"], "--max-batch-size"),
        (["--model", "tiny-qwen3", "--max-request-bytes", "0"], "--max-request-bytes"),
        (["--model", "tiny-qwen3", "--max-batch-size", "many"], "--max-batch-size"),
        (["--model", "/no/such/model/dir"], "/no/such/model/dir"),
    ],
)
def test_serve_refuses_bad_options(capsys, args, names):
    assert run_cli(["infer", "serve", *args]) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert names in output and "Traceback" not in output
