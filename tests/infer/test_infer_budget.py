"""The exact-budget property of the thinking budget, batched, on tiny Qwen3 dense and MoE models."""

from __future__ import annotations

import pytest
import torch
from transformers import SuppressTokensLogitsProcessor  # bans </think>/end of turn: rows think until forced

from qwenkit.infer.budget import (
    STOP_TEXT_DOCS,
    STOP_TEXT_PAPER,
    ThinkingBudgetProcessor,
    resolve_stop_text,
)
from qwenkit.infer.generate import chat_stop_token_ids, generate_chat

CONVERSATIONS = [
    [{"role": "user", "content": "a"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "a much longer question, really?"}],
    [{"role": "user", "content": "mid-size q"}],
]


class ForceAt:
    """Force ``token`` at generation step ``step`` of ``row`` (simulates a model that closes thinking by itself)."""

    def __init__(self, row, step, token):
        self.row, self.step, self.token, self.calls = row, step, token, 0

    def __call__(self, input_ids, scores):
        if self.calls == self.step:
            scores = scores.clone()
            scores[self.row] = float("-inf")
            scores[self.row, self.token] = 0.0
        self.calls += 1
        return scores


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("model_name", ["dense", "moe"])
@pytest.mark.parametrize("strategy", ["logits", "two_pass"])
def test_exact_budget_batched(request, tokenizer, model_name, strategy):
    model = request.getfixturevalue(model_name)
    forced = _ids(tokenizer, STOP_TEXT_DOCS)
    end_id = tokenizer.convert_tokens_to_ids("</think>")
    ban = SuppressTokensLogitsProcessor([end_id, *chat_stop_token_ids(tokenizer)])
    for budget in (0, 1, 7, 32):
        results = generate_chat(
            model, tokenizer, CONVERSATIONS, max_new_tokens=budget + len(forced) + 6, thinking_budget=budget,
            strategy=strategy, logits_processors=[ban], temperature=1.0, seed=budget,
        )
        for result in results:
            assert result.thinking_tokens == budget and result.budget_hit
            assert end_id not in result.token_ids[:budget]
            assert result.token_ids[budget : budget + len(forced)] == forced
            assert len(result.token_ids) == budget + len(forced) + 6 and result.finish_reason == "length"
            assert result.reasoning.endswith("thinking directly now.")
            assert result.passes == (1 if strategy == "logits" else 2)


def test_per_row_budgets_in_one_batch(moe, tokenizer):
    forced = _ids(tokenizer, STOP_TEXT_DOCS)
    ban = SuppressTokensLogitsProcessor([tokenizer.convert_tokens_to_ids("</think>"), *chat_stop_token_ids(tokenizer)])
    budgets = [32, 0, 7]
    results = generate_chat(moe, tokenizer, CONVERSATIONS, max_new_tokens=32 + len(forced) + 2,
                            thinking_budget=budgets, logits_processors=[ban], seed=3)
    for budget, result in zip(budgets, results, strict=True):
        assert result.thinking_tokens == budget
        assert result.token_ids[budget : budget + len(forced)] == forced


def test_row_that_closes_thinking_itself_is_left_alone(dense, tokenizer):
    end_id = tokenizer.convert_tokens_to_ids("</think>")
    forced = _ids(tokenizer, STOP_TEXT_DOCS)
    stop_ids = chat_stop_token_ids(tokenizer)
    results = generate_chat(
        dense, tokenizer, CONVERSATIONS[:2], max_new_tokens=60 + len(forced), thinking_budget=7,
        logits_processors=[SuppressTokensLogitsProcessor([end_id, *stop_ids]), ForceAt(row=0, step=2, token=end_id)],
        seed=1,
    )
    natural, forced_row = results
    assert natural.thinking_tokens == 2 and not natural.budget_hit
    assert natural.token_ids[2] == end_id and forced[:5] != natural.token_ids[3:8]
    assert "Considering the limited time" not in natural.reasoning + natural.content
    assert forced_row.thinking_tokens == 7 and forced_row.budget_hit


def test_logits_and_two_pass_agree_under_greedy(dense, tokenizer):
    for budget in (0, 5):
        kwargs = dict(max_new_tokens=budget + 140, thinking_budget=budget, temperature=0.0)
        logits = generate_chat(dense, tokenizer, CONVERSATIONS, strategy="logits", **kwargs)
        two_pass = generate_chat(dense, tokenizer, CONVERSATIONS, strategy="two_pass", **kwargs)
        for a, b in zip(logits, two_pass, strict=True):
            assert a.token_ids == b.token_ids and a.thinking_tokens == b.thinking_tokens == budget


def test_non_thinking_mode_ignores_budget(dense, tokenizer):
    conversations = [CONVERSATIONS[0], [{"role": "user", "content": "hi /no_think"}]]
    results = generate_chat(dense, tokenizer, conversations, max_new_tokens=12, thinking_budget=0,
                            enable_thinking=False, seed=0)
    assert all(not r.thinking and r.reasoning == "" and not r.budget_hit and r.thinking_tokens == 0 for r in results)
    soft = generate_chat(dense, tokenizer, conversations[1:], max_new_tokens=12, thinking_budget=0, seed=0)[0]
    assert not soft.thinking and not soft.budget_hit


def test_processor_with_hf_generate(dense, tokenizer):
    """The same processor is a transformers LogitsProcessor: model.generate gets the exact budget too."""
    from transformers import LogitsProcessorList

    from qwenkit.lm.chat import generation_prompt
    from qwenkit.lm.sampling import left_pad

    prompts = [_ids(tokenizer, generation_prompt(c)[0]) for c in CONVERSATIONS]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    stop_ids = chat_stop_token_ids(tokenizer)
    processor = ThinkingBudgetProcessor(tokenizer, [4, 4, 4], stop_token_ids=stop_ids)
    ban = SuppressTokensLogitsProcessor([tokenizer.convert_tokens_to_ids("</think>"), *stop_ids])
    forced = processor.forced_ids
    out = dense.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4 + len(forced),
                         logits_processor=LogitsProcessorList([ban, processor]), do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    generated = out[:, ids.shape[1] :].tolist()
    processor.finalize(generated)
    for row, state in zip(generated, processor.rows, strict=True):
        assert row[4:] == forced and state.thinking_tokens == 4 and state.budget_hit


def test_text_markers_with_a_tokenizer_without_think_tokens():
    """A tokenizer where <think>/</think> are plain text (several tokens each): the budget still counts tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from qwenkit.lm import tiny_qwen3_for

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>", *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>"], padding_side="left")
    model = tiny_qwen3_for(tok, size="nano")
    stop_ids = chat_stop_token_ids(tok)
    closing = [tok.convert_tokens_to_ids("<")]  # no '<' by chance: the block can only close by forcing
    results = generate_chat(model, tok, CONVERSATIONS, max_new_tokens=9 + 130, thinking_budget=9,
                            logits_processors=[SuppressTokensLogitsProcessor([*closing, *stop_ids])], seed=0)
    forced = _ids(tok, STOP_TEXT_DOCS)
    for result in results:
        assert result.thinking_tokens == 9 and result.budget_hit
        assert result.token_ids[9 : 9 + len(forced)] == forced


def test_processor_state_machine_by_hand(tokenizer):
    """Drive the processor without a model: prompt inside <think>, budget 2, then the forced ids one by one."""
    think, end = tokenizer.convert_tokens_to_ids("<think>"), tokenizer.convert_tokens_to_ids("</think>")
    processor = ThinkingBudgetProcessor(tokenizer, [2, None], stop_text="stop!")
    forced = processor.forced_ids
    assert tokenizer.decode(forced, skip_special_tokens=False) == "stop!\n</think>\n\n"
    a = tokenizer.convert_tokens_to_ids("a")
    ids = torch.tensor([[9, think], [think, a]])
    vocab = len(tokenizer)
    chosen = []
    for _ in range(2 + len(forced)):
        scores = processor(ids, torch.zeros(2, vocab))
        row0 = int(scores[0].argmax()) if bool(torch.isinf(scores[0]).any()) else a
        chosen.append(row0)
        assert not torch.isinf(scores[1]).any()  # no budget: never forced
        ids = torch.cat([ids, torch.tensor([[row0], [end if len(chosen) == 1 else a]])], dim=1)
    assert chosen == [a, a, *forced]
    processor.finalize(ids[:, 2:].tolist())
    assert processor.rows[0].thinking_tokens == 2 and processor.rows[0].budget_hit
    assert processor.rows[1].thinking_tokens == 0 and not processor.rows[1].budget_hit
    with pytest.raises(RuntimeError, match="one generation call"):
        processor(ids[:, :3], torch.zeros(2, vocab))
    with pytest.raises(ValueError, match=">= 0"):
        ThinkingBudgetProcessor(tokenizer, [-1])


def test_stop_text_variants():
    assert resolve_stop_text(None) == resolve_stop_text("docs") == STOP_TEXT_DOCS
    assert resolve_stop_text("paper") == STOP_TEXT_PAPER and "</think>." in STOP_TEXT_PAPER
    assert resolve_stop_text("Time is up.") == "Time is up.\n</think>\n\n"
    assert resolve_stop_text("done</think>") == "done</think>"


def test_two_pass_continues_a_reply_whose_thinking_closed_early(dense, tokenizer):
    """Pass 1 (N tokens) closes thinking but does not finish: pass 2 continues without the stop text."""
    end_id = tokenizer.convert_tokens_to_ids("</think>")
    stop_ids = chat_stop_token_ids(tokenizer)
    result = generate_chat(dense, tokenizer, CONVERSATIONS[:1], max_new_tokens=20, thinking_budget=5,
                           strategy="two_pass",
                           logits_processors=[SuppressTokensLogitsProcessor(stop_ids),
                                              ForceAt(row=0, step=2, token=end_id)],
                           seed=0)[0]
    assert result.passes == 2 and not result.budget_hit and result.thinking_tokens == 2
    assert result.token_ids[2] == end_id and len(result.token_ids) == 20
    assert "Considering" not in result.reasoning + result.content
