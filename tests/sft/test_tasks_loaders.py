"""Toy tasks (deterministic, gold rationales consistent with answers) and the public-dataset loaders on fixtures."""

import re
from pathlib import Path

import pytest

from qwenkit.core.errors import ConfigError, DataError
from qwenkit.sft.loaders import load_dataset_file
from qwenkit.sft.metrics import answers_match, extract_answer
from qwenkit.sft.tasks import TASKS, make_task

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_tasks_are_seeded_and_gold_rationales_are_consistent(name):
    records = make_task(name, 50, seed=3)
    assert records == make_task(name, 50, seed=3) and records != make_task(name, 50, seed=4)
    for r in records:
        assert r.rationale and r.meta["task"] == name
        assert answers_match(extract_answer(f"{r.rationale} The answer is {r.answer}.", r.kind, r.choices),
                             r.answer, r.kind)


def test_arithmetic_rationale_computes_the_answer_step_by_step():
    for r in make_task("arithmetic", 100, seed=0, steps=3, digits=2):
        steps = re.findall(r"(\d+)([+\-*])(\d+)=(\d+)\.", r.rationale)
        assert len(steps) == 3
        value = None
        for a, op, b, result in steps:
            a, b, result = int(a), int(b), int(result)
            assert value is None or a == value
            assert result == {"+": a + b, "-": a - b, "*": a * b}[op] and result >= 0
            value = result
        assert str(value) == r.answer


def _count(words: str) -> int:
    return 0 if words == "none" else len(words.split(", "))


def test_modular_arithmetic_reduces_every_step():
    for r in make_task("arithmetic", 50, seed=0, steps=4, modulus=10):
        assert r.question.endswith("mod 10?") and 0 <= int(r.answer) < 10
        assert all(0 <= int(v) < 10 for v in re.findall(r"=(\d+)\.", r.rationale))


def test_classification_labels_follow_their_rules():
    for r in make_task("sentiment", 100, seed=1):
        positives, negatives = re.match(r"Positive: (.*)\. Negative: (.*)\. ", r.rationale).groups()
        assert r.answer == ("positive" if _count(positives) > _count(negatives) else "negative")
    answers = {r.answer for r in make_task("paraphrase", 100, seed=1)}
    assert answers == {"yes", "no"}
    for r in make_task("paraphrase", 100, seed=1):
        assert (r.answer == "no") == ("!=" in r.rationale)


def test_unknown_task_and_difficulty():
    with pytest.raises(ConfigError, match="unknown task"):
        make_task("poetry", 3)
    with pytest.raises(ConfigError, match=r"no difficulty setting \['steps'\]"):
        make_task("topic", 3, steps=2)


def test_gsm8k():
    records = load_dataset_file(FIXTURES / "gsm8k.jsonl", "gsm8k")
    assert records[0].answer == "72" and records[1].answer == "2400" and records[0].kind == "number"
    assert "<<" not in records[0].rationale and records[0].rationale.startswith("Natalia sold 48/2 = 24 clips")


def test_svamp():
    records = load_dataset_file(FIXTURES / "svamp.json", "svamp")
    assert records[0].answer == "51" and records[0].rationale == "( 76.0 - 25.0 ) = 51."
    assert records[0].question.endswith("each pack How much do you have to pay to buy each pack?")
    assert records[1].answer == "2.5"


def test_arc_and_csqa():
    arc = load_dataset_file(FIXTURES / "arc.jsonl", "arc")
    assert [r.answer for r in arc] == ["C", "B"] and arc[1].choices == ("coal", "wind", "oil")
    csqa = load_dataset_file(FIXTURES / "csqa.jsonl", "csqa")
    assert csqa[0].answer == "A" and len(csqa[0].choices) == 5 and csqa[0].kind == "choice"


def test_sst2_tsv_and_csv():
    tsv = load_dataset_file(FIXTURES / "sst2.tsv", "sst2")
    assert [r.answer for r in tsv] == ["negative", "negative", "positive"]
    assert tsv[2].question == "that loves its characters"
    assert load_dataset_file(FIXTURES / "sst2.csv", "sst2")[0].question == "a gorgeous, witty film"


def test_loader_errors_name_file_line_and_field(tmp_path):
    bad = tmp_path / "gsm.jsonl"
    bad.write_text('{"question": "q", "answer": "no final"}\n')
    with pytest.raises(DataError, match=r"gsm.jsonl line 1: field 'answer' has no '####"):
        load_dataset_file(bad, "gsm8k")
    arc = tmp_path / "arc.jsonl"
    arc.write_text('{"question": {"stem": "s", "choices": [{"label": "A", "text": "x"}, {"label": "B", "text": "y"}]},'
                   ' "answerKey": "E"}\n')
    with pytest.raises(DataError, match=r"arc.jsonl line 1: field 'answerKey' is 'E'"):
        load_dataset_file(arc, "arc")
    with pytest.raises(DataError, match="unknown data layout"):
        load_dataset_file(arc, "mmlu")
    sst = tmp_path / "s.tsv"
    sst.write_text("sentence\tlabel\nfine\t7\n")
    with pytest.raises(DataError, match=r"s.tsv line 2: field 'label' is '7'"):
        load_dataset_file(sst, "sst2")
