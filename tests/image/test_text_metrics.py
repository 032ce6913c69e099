"""The benchmarks' text-rendering metrics and normalisation against hand-computed values, and the prompt loaders on
fixtures in each benchmark's format (tests/image/fixtures)."""

from pathlib import Path

import pytest

from qwenkit.image.text_benchmarks import (
    BenchmarkFormatError,
    get_benchmark,
    load_chineseword,
    load_cvtg2k,
    load_longtext,
    normalization_for,
    score_reads,
)
from qwenkit.image.text_metrics import TextNormalization, bag_recall, cvtg_ned, cvtg_word_accuracy

FIXTURES = Path(__file__).parent / "fixtures"
PLAIN = TextNormalization()
NO_PUNCT = TextNormalization(punctuation=True)


def test_normalisation_options_one_by_one():
    assert TextNormalization()("ＱＷＥＮ\u3000２０２５") == "qwen 2025"  # full-width letters, digits, space
    assert TextNormalization(width=False)("ＱＷＥＮ") == "ｑｗｅｎ"
    assert TextNormalization(casefold=False)("Hello") == "Hello"
    assert TextNormalization(punctuation=True)("Hello, World! «ok»。") == "hello world ok"
    assert TextNormalization(whitespace="keep")(" a  b ") == " a  b "
    assert TextNormalization(whitespace="collapse")(" a \n b ") == "a b"
    assert TextNormalization(whitespace="remove")(" a \n b ") == "ab"
    assert TextNormalization(simplified=True)("歡迎光臨 臺灣") == "欢迎光临 台湾"
    assert TextNormalization()("歡迎") == "歡迎"


def test_cvtg_word_accuracy_is_per_word():
    assert cvtg_word_accuracy("HELLO W0RLD", ["HELLO WORLD"], PLAIN) == 0.5  # whole-string match would give 0
    assert cvtg_word_accuracy("open\ncoffee", ["OPEN", "Coffee Shop"], PLAIN) == pytest.approx(2 / 3)
    assert cvtg_word_accuracy("SALE", ["SALE", "SALE"], PLAIN) == 0.5  # one rendered word matches one region
    assert cvtg_word_accuracy("world hello", ["hello world"], PLAIN) == 1.0  # word accuracy ignores order
    assert cvtg_word_accuracy("Hello World", ["Hello, World!"], NO_PUNCT) == 1.0
    assert cvtg_word_accuracy("Hello World", ["Hello, World!"], PLAIN) == 0.0
    assert cvtg_word_accuracy("HelloWorld", ["Hello World"], PLAIN) == 0.0  # a dropped space merges two words
    with pytest.raises(ValueError, match="no target words"):
        cvtg_word_accuracy("x", ["!!"], NO_PUNCT)


def test_cvtg_ned():
    assert cvtg_ned("HELLO W0RLD", ["HELLO WORLD"], PLAIN) == pytest.approx(1 - 1 / 11)
    assert cvtg_ned("open coffee", ["OPEN", "COFFEE"], PLAIN) == 1.0  # regions joined by one space
    assert cvtg_ned("", ["abcd"], PLAIN) == 0.0
    assert cvtg_ned("", [""], PLAIN) == 1.0
    assert cvtg_ned("world hello", ["hello world"], PLAIN) == pytest.approx(1 - 8 / 11)  # NED does see order


def test_bag_recall_chars_and_words():
    assert bag_recall("光临欢迎", "欢迎光临", PLAIN) == 1.0  # order-free (char_accuracy gave 0 here)
    assert bag_recall("欢迎", "欢迎光临", PLAIN) == 0.5
    assert bag_recall("哈笑", "哈哈笑", PLAIN) == pytest.approx(2 / 3)  # repeats count: min(1, 2) + 1 of 3
    assert bag_recall("哈哈哈笑", "哈哈笑", PLAIN) == 1.0  # extra reads are not penalised by a recall
    assert bag_recall("the dog cat", "the cat and the dog", PLAIN, "word") == pytest.approx(3 / 5)
    assert bag_recall("歡迎光臨", "欢迎光临", PLAIN) == 0.5  # 迎 and 光 are the same in both scripts
    assert bag_recall("歡迎光臨", "欢迎光临", TextNormalization(simplified=True)) == 1.0
    assert bag_recall("欢 迎", "欢迎", PLAIN) == 1.0  # spaces are not characters
    with pytest.raises(ValueError, match="nothing|no char"):
        bag_recall("a", "  ", PLAIN)


def test_cvtg_loader_and_scores():
    items = load_cvtg2k(FIXTURES / "cvtg")
    assert [(it.id, it.group) for it in items] == [("CVTG/2-0", "2 regions"), ("CVTG/2-1", "2 regions"),
                                                   ("CVTG/3-0", "3 regions")]
    assert items[0].targets == ("OPEN DAILY", "Fresh Coffee")
    bench = get_benchmark("cvtg-2k")
    result = score_reads(bench, items, ["OPEN DAILY\nFresh Coffee", "HELLO W0RLD 2025", "SALE today only"])
    # hand values: 4/4; 2/3 (HELLO, 2025); SALE, TODAY, ONLY of SALE, SALE, TODAY, ONLY = 3/4
    assert [r["word_accuracy"] for r in result["rows"]] == pytest.approx([1.0, 2 / 3, 3 / 4])
    assert result["groups"]["2 regions"]["word_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["overall"]["word_accuracy"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # NED row 3: "sale today only" vs "sale sale today only" (punctuation dropped): 5 deletions of 20
    assert result["rows"][2]["ned"] == pytest.approx(1 - 5 / 20)
    assert result["overall"]["n"] == 3


def test_longtext_loader_groups_by_language_and_scores():
    items = load_longtext(FIXTURES / "longtext")
    assert {it.id: it.group for it in items} == {"en-001": "en", "en-002": "en", "zh-001": "zh", "zh-002": "zh"}
    assert items[1].targets == ("Long Text", "Bench")
    reads = {"en-001": "the dog cat", "en-002": "long bench", "zh-001": "光临欢迎", "zh-002": "哈笑"}
    result = score_reads(get_benchmark("longtext-bench"), items, [reads[it.id] for it in items])
    assert result["groups"]["en"]["text_recall"] == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert result["groups"]["zh"]["text_recall"] == pytest.approx((1 + 2 / 3) / 2)


def test_chineseword_levels_with_simplification():
    items = load_chineseword(FIXTURES / "chineseword")
    assert [it.group for it in items] == ["level1", "level1", "level2", "level3"]
    assert "“通”" in items[0].prompt
    bench = get_benchmark("chineseword")
    result = score_reads(bench, items, ["通", "又", "临", ""])
    assert {g: s["char_accuracy"] for g, s in result["groups"].items()} == {"level1": 0.5, "level2": 1.0,
                                                                             "level3": 0.0}
    strict = normalization_for(bench, simplified=False)
    assert score_reads(bench, items, ["通", "又", "临", ""], strict)["groups"]["level2"]["char_accuracy"] == 0.0


def test_loaders_name_the_file_record_and_field(tmp_path):
    (tmp_path / "2.json").write_text('{"data_list": [{"index": 0, "prompt": "p", "sentence_list": []}]}')
    with pytest.raises(BenchmarkFormatError, match=r"2.json: data_list\[0\].sentence_list"):
        load_cvtg2k(tmp_path / "2.json")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p", "text": "t"}\n{"prompt": 3}\n')
    with pytest.raises(BenchmarkFormatError, match="bad.jsonl: record 2: missing the string field 'prompt'"):
        load_longtext(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"prompt": "p", "text": "t"}\nnot json\n')
    with pytest.raises(BenchmarkFormatError, match="broken.jsonl: line 2 is not JSON"):
        load_longtext(tmp_path / "broken.jsonl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cvtg2k(tmp_path / "missing")
    with pytest.raises(BenchmarkFormatError, match="no level"):
        load_chineseword(tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark"):
        get_benchmark("geneval")
