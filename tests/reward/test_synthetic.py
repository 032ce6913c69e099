import re
from collections import Counter

import pytest

from qwenkit.reward.synthetic import COLOURS, SUBSETS, make_pairs, prompt_in_test

COUNTS = {"adversarial": 150, "objective": 150, "subjective": 300}


def test_deterministic_and_counts_per_subset():
    first = make_pairs(COUNTS, seed=3)
    assert first == make_pairs(COUNTS, seed=3)
    assert first != make_pairs(COUNTS, seed=4)
    by_subset = Counter((p.category, p.subset) for p in first)
    for category, subsets in SUBSETS.items():
        for subset in subsets:
            assert by_subset[(category, subset)] == COUNTS[category] // len(subsets)


def test_train_and_test_never_share_a_question_of_a_subset():
    train = make_pairs(COUNTS, seed=0)
    test = make_pairs({k: 60 for k in COUNTS}, split="test", seed=0)
    assert not {(p.subset, p.prompt) for p in train} & {(p.subset, p.prompt) for p in test}
    assert all(prompt_in_test(p.subset, p.prompt, 0.2) for p in test)


def _sum_is_right(prompt: str, answer: str) -> bool:
    a, b = map(int, re.findall(r"\d+", prompt))
    return answer == f"{a}+{b}={a + b}."


def test_chosen_answers_are_correct_and_rejected_ones_are_not():
    for pair in make_pairs({"adversarial": 300, "objective": 300}, seed=1):
        if pair.prompt.startswith("What is"):
            assert _sum_is_right(pair.prompt, pair.chosen)
            assert not _sum_is_right(pair.prompt, pair.rejected)
        elif pair.prompt.startswith("Sort:"):
            numbers = sorted(int(n) for n in pair.prompt.split()[1:])
            assert pair.chosen == " ".join(map(str, numbers)) != pair.rejected
        else:
            thing = pair.prompt.removeprefix("What colour is ").rstrip("?")
            assert pair.chosen == f"The {thing} is {COLOURS[thing]}." != pair.rejected
    for pair in make_pairs({"objective": 300}, seed=2):
        digits = int(pair.subset[-1])
        assert all(len(n) == digits for n in re.findall(r"\d+", pair.prompt))


def test_subjective_labels_follow_the_annotator_pool():
    pairs = make_pairs({"subjective": 4000}, seed=0, label_noise=0.0)
    def styled(p):
        return p.chosen.startswith(("**", "- ", "#")) or p.rejected.startswith(("**", "- ", "#"))

    length_pairs = [p for p in pairs if not styled(p)]
    longer_wins = sum(len(p.chosen) > len(p.rejected) for p in length_pairs) / len(length_pairs)
    assert longer_wins == pytest.approx(0.6, abs=0.03)  # long 0.4 + half of the indifferent markdown/plain 0.4
    markdown_pairs = [p for p in pairs if styled(p)]
    markdown_wins = sum(p.chosen.startswith(("**", "- ", "#")) for p in markdown_pairs) / len(markdown_pairs)
    assert markdown_wins == pytest.approx(0.7, abs=0.03)  # long 0.4 + markdown 0.3


def test_unknown_category_raises():
    with pytest.raises(ValueError, match="unknown categories"):
        make_pairs({"funny": 3})
