import json
import random
from pathlib import Path

import pytest

from qwenkit.reward.data import PreferencePair, load_pairs, load_reward_bench, save_pairs
from qwenkit.reward.errors import RewardDataError
from qwenkit.reward.stackexchange import build_vote_pairs, html_to_text

FIXTURE = Path(__file__).parent / "fixtures" / "Posts.xml"


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_pairs_round_trip(tmp_path):
    pairs = [
        PreferencePair(prompt="2+3?", chosen="5", rejected="6", margin=1.0, category="objective", votes=(3, 1)),
        PreferencePair(conversation=[{"role": "user", "content": "hi"}], chosen="hello", rejected="go away"),
    ]
    loaded = load_pairs(save_pairs(tmp_path / "p.jsonl", pairs))
    assert loaded == pairs
    assert loaded[1].context == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"prompt": "q", "chosen": "a"}', r"p.jsonl:2: field 'rejected': required"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b", "weight": 2}', r"p.jsonl:2: field 'weight': unknown"),
        ('{"prompt": "q", "chosen": "", "rejected": "b"}', r"p.jsonl:2: field 'chosen'"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b", "margin": "big"}', r"p.jsonl:2: field 'margin'"),
        ('{"chosen": "a", "rejected": "b"}', r"p.jsonl:2: .*exactly one of 'prompt'"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b"', r"p.jsonl:2: not valid JSON"),
        ('["q", "a", "b"]', r"p.jsonl:2: a pair must be a JSON object"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, line, expected):
    path = _write(tmp_path / "p.jsonl", ['{"prompt": "q", "chosen": "a", "rejected": "b"}', line])
    with pytest.raises(RewardDataError, match=expected):
        load_pairs(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(RewardDataError, match="does not exist"):
        load_pairs(tmp_path / "nope.jsonl")
    with pytest.raises(RewardDataError, match="no pairs"):
        load_pairs(_write(tmp_path / "e.jsonl", [""]))


def test_reward_bench_loader_maps_sections(tmp_path):
    rows = [
        {"prompt": "q1", "chosen": "a", "rejected": "b", "subset": "llmbar-natural", "id": 7},
        {"prompt": "q2", "chosen": "a", "rejected": "b", "subset": "my-own-subset"},
    ]
    path = _write(tmp_path / "rb.jsonl", [json.dumps(r) for r in rows])
    pairs = load_reward_bench(path)
    assert [(p.subset, p.category, p.id) for p in pairs] == [
        ("llmbar-natural", "Chat Hard", "7"), ("my-own-subset", None, None)
    ]
    _write(path, ['{"prompt": "q", "chosen": "a", "rejected": "b"}'])
    with pytest.raises(RewardDataError, match=r"rb.jsonl:1: field 'subset'"):
        load_reward_bench(path)


def test_html_to_text_keeps_paragraphs_and_list_items():
    text = html_to_text("<p>Common ones:</p>\n<ul>\n<li>Shapiro-Wilk</li>\n<li>A-D</li>\n</ul>\n")
    assert text == "Common ones:\n\n- Shapiro-Wilk\n- A-D"


def test_vote_pairs_on_the_fixture():
    result = build_vote_pairs(FIXTURE, site="stats", pairs_per_question=3, test_fraction=0.0)
    by_question = {}
    for pair in result.train:
        by_question.setdefault(pair.id, []).append(pair)
    # Q1: the case/space duplicate answer 4 is dropped, leaving one pair; Q5: equal votes, no pair;
    # Q8: a duplicate of Q1, dropped; Q11: three answers, three pairs; Q16: answer before its question still counts,
    # the empty answer 18 is skipped.
    assert sorted(by_question) == ["stats-1", "stats-11", "stats-16"]
    (q1,) = by_question["stats-1"]
    assert q1.prompt == "Eliciting priors from experts\n\nHow should I elicit prior distributions from experts?"
    assert q1.chosen == "Ask them for quantiles, then fit a distribution."
    assert q1.rejected == "Use a flat prior." and q1.votes == (10, 3)
    assert len(by_question["stats-11"]) == 3
    assert all(p.votes[0] > p.votes[1] for p in result.train)
    assert by_question["stats-16"][0].votes == (4, 1)
    assert result.stats["duplicate_questions"] == 1
    assert result.stats["duplicate_answers"] == 1
    assert result.stats["questions_without_pair"] == 1
    assert result.stats["pairs"] == 5 and result.test == []


def test_vote_pairs_are_deterministic_order_independent_and_split_by_question(tmp_path):
    first = build_vote_pairs(FIXTURE, site="stats", pairs_per_question=1, test_fraction=0.5, seed=3)
    again = build_vote_pairs(FIXTURE, site="stats", pairs_per_question=1, test_fraction=0.5, seed=3)
    assert first.train == again.train and first.test == again.test
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    rows = lines[2:-1]
    random.Random(0).shuffle(rows)
    shuffled = _write(tmp_path / "Posts.xml", [*lines[:2], *rows, lines[-1]])
    reordered = build_vote_pairs(shuffled, site="stats", pairs_per_question=1, test_fraction=0.5, seed=3)
    assert sorted(p.source for p in reordered.train) == sorted(p.source for p in first.train)
    assert sorted(p.source for p in reordered.test) == sorted(p.source for p in first.test)
    for split_seed in range(6):
        split = build_vote_pairs(FIXTURE, site="stats", pairs_per_question=3, test_fraction=0.5, seed=split_seed)
        assert not {p.id for p in split.train} & {p.id for p in split.test}
        assert len(split.train) + len(split.test) == 5


def test_bad_dumps_name_the_file_and_line(tmp_path):
    broken = _write(tmp_path / "Posts.xml", ["<posts>", '  <row Id="1" PostTypeId="1" Title="t" Body="b"', "</posts>"])
    with pytest.raises(RewardDataError, match=r"Posts.xml:3: not well-formed XML"):
        build_vote_pairs(broken)
    bad_score = _write(tmp_path / "Posts.xml", ["<posts>", '<row Id="9" PostTypeId="2" ParentId="1" Score="many" '
                                                'Body="x" />', "</posts>"])
    with pytest.raises(RewardDataError, match=r"row Id='9': attribute 'Score' is 'many'"):
        build_vote_pairs(bad_score)
    with pytest.raises(RewardDataError, match="does not exist"):
        build_vote_pairs(tmp_path / "missing.xml")
