"""The data format, prompt masking and packing without cross-example attention."""

import json
import math

import pytest
import torch

from qwenkit.core.errors import DataError
from qwenkit.lm.models import tiny_qwen3_for
from qwenkit.lm.tokenizer import build_synthetic_tokenizer
from qwenkit.sft.data import (
    IGNORE_INDEX,
    SFTRecord,
    collate_examples,
    collate_packed,
    load_records,
    pack_examples,
    target_text,
    tokenize_example,
    write_records,
)
from qwenkit.sft.losses import target_token_loss


@pytest.fixture(scope="module")
def tokenizer():
    return build_synthetic_tokenizer()


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_load_infers_kinds_and_roundtrips(tmp_path):
    path = _write(tmp_path / "d.jsonl", [
        {"question": "2+3?", "answer": 5, "rationale": "2+3=5."},
        {"question": "Capital?", "answer": "(b)", "choices": ["Rome", "Paris"]},
        {"question": "Great film.", "answer": "positive", "choices": ["positive", "negative"]},
        "",
    ])
    records = load_records(path)
    assert [r.kind for r in records] == ["number", "choice", "label"]
    assert records[0].answer == "5" and records[1].answer == "B"
    again = load_records(write_records(tmp_path / "e.jsonl", records))
    assert again == records


@pytest.mark.parametrize(
    "row, message",
    [
        ('{"question": "q"', "line 2: not valid JSON"),
        ({"answer": "1"}, "line 2: field 'question' is missing"),
        ({"question": "q", "answer": "1", "rationle": "x"}, "unknown field(s) ['rationle']"),
        ({"question": "q", "answer": [1]}, "field 'answer' must be a string or a number"),
        ({"question": "q", "answer": "x", "kind": "number"}, "field 'answer' is 'x' but kind is 'number'"),
        ({"question": "q", "answer": "neutral", "choices": ["pos", "neg"]}, "not one of the labels"),
        ({"question": "q", "answer": "E", "choices": ["a", "b"], "kind": "choice"}, "a letter A-B"),
        ({"question": "q", "answer": "1", "choices": "ab"}, "field 'choices' must be a list"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, row, message):
    path = _write(tmp_path / "bad.jsonl", [{"question": "ok", "answer": 1}, row])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_file_and_missing_rationale(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "nope.jsonl")
    path = _write(tmp_path / "d.jsonl", [{"question": "q", "answer": 1}])
    with pytest.raises(DataError, match="line 1: field 'rationale' is missing"):
        load_records(path, require_rationale=True)


def test_targets_answer_only_and_with_rationale():
    record = SFTRecord("2+3*2?", "8", "number", rationale="3*2=6. 2+6=8.")
    assert target_text(record, "answer") == "The answer is 8."
    assert target_text(record, "rationale") == "3*2=6. 2+6=8. The answer is 8."
    assert target_text(record, "rationale", rationale_template="{rationale}\n#### {answer}") == "3*2=6. 2+6=8.\n#### 8"


def test_only_target_tokens_carry_labels(tokenizer):
    record = SFTRecord("2+3?", "5", "number", rationale="2+3=5.")
    for mode in ("answer", "rationale"):
        example = tokenize_example(record, tokenizer, mode)
        target = [t for t in example.labels if t != IGNORE_INDEX]
        assert tokenizer.decode(target) == target_text(record, mode) + "<|im_end|>"
        first = example.labels.index(target[0])
        assert all(t == IGNORE_INDEX for t in example.labels[:first])
        assert tokenizer.decode(example.input_ids[:first]).endswith("<|im_start|>assistant\n")
        assert example.input_ids[first:] == target


def test_loss_ignores_prompt_positions(tokenizer):
    example = tokenize_example(SFTRecord("2+3?", "5", "number"), tokenizer, "answer")
    batch = collate_examples([example], tokenizer.pad_token_id)
    logits = torch.randn(1, batch["input_ids"].shape[1], len(tokenizer), requires_grad=True)
    loss, count = target_token_loss(logits, batch["labels"])
    loss.backward()
    labels = batch["labels"][0]
    positions = [t - 1 for t in range(1, len(labels)) if labels[t] != IGNORE_INDEX]
    expected = -sum(torch.log_softmax(logits[0, p], -1)[labels[p + 1]] for p in positions) / len(positions)
    assert count == example.target_tokens and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    carries_gradient = logits.grad[0].abs().sum(-1) > 0
    assert carries_gradient.nonzero().flatten().tolist() == positions


def test_packing_never_attends_across_examples(tokenizer):
    records = [SFTRecord(q, a, "number", rationale=r) for q, a, r in
               [("1+1?", "2", "1+1=2."), ("9-3*2?", "3", "3*2=6. 9-6=3."), ("4*4?", "16", "4*4=16.")]]
    examples = [tokenize_example(r, tokenizer, "rationale") for r in records]
    rows = pack_examples(examples, max_length=400)
    assert len(rows) == 1 and rows[0].segment_ids.count(1) == len(examples[1].input_ids)
    model = tiny_qwen3_for(tokenizer, "nano").eval()
    packed = collate_packed(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        packed_logits = model(input_ids=packed["input_ids"], attention_mask=packed["attention_mask"],
                              position_ids=packed["position_ids"]).logits[0]
        start = 0
        for example in examples:
            alone = model(input_ids=torch.tensor([example.input_ids])).logits[0]
            piece = packed_logits[start:start + len(example.input_ids)]
            assert torch.allclose(piece, alone, atol=1e-5)
            start += len(example.input_ids)
    mask = packed["attention_mask"][0, 0]
    first_end = len(examples[0].input_ids)
    assert not mask[first_end:, :first_end].any()  # later examples never see earlier ones
    # loss: the packed batch carries exactly the targets of the three examples
    alone_loss_terms = sum(e.target_tokens for e in examples)
    _, count = target_token_loss(packed_logits[None], packed["labels"])
    assert count == alone_loss_terms
    packed_labels = [t for t in rows[0].labels if t != IGNORE_INDEX]
    assert packed_labels == [t for e in examples for t in e.labels if t != IGNORE_INDEX]


def test_packed_loss_equals_mean_of_unpacked_token_losses(tokenizer):
    records = [SFTRecord("1+1?", "2", "number"), SFTRecord("12+30?", "42", "number"), SFTRecord("7?", "7", "number")]
    examples = [tokenize_example(r, tokenizer, "answer") for r in records]
    model = tiny_qwen3_for(tokenizer, "nano").eval()
    rows = pack_examples(examples, max_length=2 * max(len(e.input_ids) for e in examples))
    assert len(rows) == 2  # the third example does not fit after the first two
    with torch.no_grad():
        packed = collate_packed(rows, tokenizer.pad_token_id)
        logits = model(input_ids=packed["input_ids"], attention_mask=packed["attention_mask"],
                       position_ids=packed["position_ids"]).logits
        packed_loss, packed_count = target_token_loss(logits, packed["labels"])
        padded = collate_examples(examples, tokenizer.pad_token_id)
        logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        padded_loss, padded_count = target_token_loss(logits, padded["labels"])
    assert packed_count == padded_count
    assert math.isclose(packed_loss.item(), padded_loss.item(), rel_tol=1e-5)
