"""qwenkit permute on bad input: exit 2, the argument named, no traceback."""

import pytest

from qwenkit.cli import run_cli


@pytest.mark.parametrize(("argv", "needle"), [
    (["explain", "4,x", "0,1"], "SHAPE"),
    (["explain", "4,4", "0,0"], "not a permutation"),
    (["explain", "4,4,4", "0,1"], "not a permutation"),
    (["explain", "4,-4", "1,0"], "negative"),
    (["explain", "4,4", "1,0", "--dtype", "floaty"], "--dtype"),
    (["explain", "4,4", "1,0", "--isa", "vax"], "vax"),
    (["check", "--cases", "0"], "--cases"),
    (["bench", "--repeats", "many"], "--repeats"),
])
def test_bad_input_exits_2_without_traceback(capsys, argv, needle):
    assert run_cli(["permute", *argv]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert needle in text and "Traceback" not in text, text
