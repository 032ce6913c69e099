import pytest

from qwenkit.roleplay.scoring import (
    admits_being_ai,
    is_first_person,
    parse_judge_score,
    parse_pairwise_verdict,
    rule_override,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"reason": "vivid", "score": 5}', 5),
        ('Sure. {"score": "3"} done', 3),
        ('```json\n{"reason": "ok", "score": 3.0}\n```', 3),
        ("Score: 4", 4),
        ("score = 2", 2),
        ("**Score:** 3", 3),
        ("Score: **3**", 3),
        ("评分：5", 5),
        ("分数: 1", 1),
        ("My verdict is [[3]].", 3),
        ("[[ 5 ]]", 5),
        ("", None),
        ("I think the reply is good.", None),
        ("lorem ipsum {not json} 7/10", None),
        ('{"score": 6}', None),
        ('{"score": 0}', None),
        ('{"score": 2.5}', None),
        ('{"score": true}', None),
        ('{"score": "high"}', None),
        ("Score: 3 ... on reflection Score: 5", None),
        ("Score: 3 and again Score: 3", 3),
        ('{"score": 4} but [[2]]', 4),
        ('{"score": 2, "reason": "the reply is cut sh', 2),
    ],
)
def test_parse_judge_score_canned_answers(text, expected):
    assert parse_judge_score(text) == expected


def test_parse_judge_score_pass_fail_scale():
    assert parse_judge_score('{"score": 1}', scale=(0, 1)) == 1
    assert parse_judge_score('{"score": 0}', scale=(0, 1)) == 0
    assert parse_judge_score('{"score": 3}', scale=(0, 1)) is None


def test_pairwise_verdict():
    assert parse_pairwise_verdict('{"winner": "A"}') == "A"
    assert parse_pairwise_verdict('{"winner": "tie"}') == "tie"
    assert parse_pairwise_verdict('{"winner": "b"}') == "B"
    assert parse_pairwise_verdict('{"winner": "A"} {"winner": "B"}') is None
    assert parse_pairwise_verdict("A is better") is None


def test_first_person_and_ai_rules():
    assert is_first_person("I missed the tide again.", "en")
    assert not is_first_person("The captain missed the tide.", "en")
    assert is_first_person("我今天很高兴。", "zh")
    assert not is_first_person("他今天很高兴。", "zh")
    assert admits_being_ai("Honestly, as an AI I cannot feel the sea.", "en")
    assert admits_being_ai("其实我是一个人工智能。", "zh")
    assert not admits_being_ai("I sail by the stars.", "en")
    assert rule_override("EE", "The captain sighs.", "en") == (1, "not first person")
    assert rule_override("EE", "I sigh.", "en") is None
    assert rule_override("CM", "I'm an AI language model.", "en") == (0, "admits being an AI")
    assert rule_override("CM", "I'm the captain.", "en") is None
    assert rule_override("PA", "The captain sighs.", "en") is None
