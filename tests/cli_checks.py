"""The one error path, asserted the same way by every domain's bad-input tests (``tests/*/test_cli_errors.py``)."""

from qwenkit.cli import run_cli


def assert_clean_cli_error(capsys, argv, *needles, code=2) -> str:
    """Run ``qwenkit ARGV`` in-process and assert exit ``code``, no traceback, and every needle in the output.

    Whitespace and rich's box-drawing characters are folded first (a long message may be wrapped in a panel); the
    folded output is returned.
    """
    rc = run_cli(list(argv))
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).replace("│", " ").split())
    assert rc == code, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text
