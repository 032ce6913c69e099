from __future__ import annotations

import json

import pytest

from qwenkit.embed.data import WORDNET_DIR, DataError, load_task
from qwenkit.embed.mining import code_tokens, mine_bm25_negatives


def test_stdlib_task_is_well_formed_and_cached(stdlib_cache):
    task = load_task("stdlib", stdlib_cache)
    assert len(task.queries) == len(task.corpus) == 600 and len(task.train) > 1500
    assert task.sha256 == task.content_hash()
    assert all(len(q.split()) >= 5 for q, _ in task.train)
    assert all(len(d) <= 1500 and '"""' not in d.split("\n")[1] for _, d in task.train[:200])
    test_docs = set(task.corpus.values())
    assert not test_docs & {d for _, d in task.train}
    assert not test_docs & {d for _, d in task.weak}
    assert load_task("stdlib", stdlib_cache).sha256 == task.sha256
    assert len(task.subset(10).queries) == 10 and len(task.subset(10).corpus) == 600


def test_corrupt_cache_is_detected(stdlib_cache, tmp_path):
    source = next(stdlib_cache.glob("stdlib-*.json"))
    data = json.loads(source.read_text())
    data["train"][0][0] = "tampered"
    (tmp_path / source.name).write_text(json.dumps(data))
    with pytest.raises(DataError, match="sha256"):
        load_task("stdlib", tmp_path)
    with pytest.raises(DataError, match="unknown task"):
        load_task("msmarco", tmp_path)


@pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(), reason="apt-get install wordnet-base")
def test_wordnet_task(tmp_path):
    task = load_task("wordnet", tmp_path)
    assert len(task.queries) == 500 and len(task.train) == 3000
    query = next(iter(task.queries))
    assert len(task.queries[query].split()) >= 4 and task.qrels[query]


def test_code_tokens_and_bm25_mining():
    assert code_tokens("getAttrName(self, x_y)") == ["get", "attr", "name", "self", "x", "y"]
    docs = ["read a file from disk", "write a file to disk", "sort numbers fast", "parse a json file"]
    queries = ["read file disk", "write file disk", "sort numbers", "parse json file"]
    negatives = mine_bm25_negatives(queries, docs, num_negatives=1, rank_start=0, rank_end=4)
    assert negatives[0] == [1] and negatives[1] == [0]
    assert all(len(n) == 1 and n[0] != i for i, n in enumerate(negatives))
