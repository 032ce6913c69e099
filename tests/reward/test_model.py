import pytest
import torch

from qwenkit.reward.errors import RewardModelError
from qwenkit.reward.model import (
    encode_response,
    load_reward_model,
    pad_sequences,
    reward_format_for,
    save_reward_model,
)

PROMPTS = ["What is 2+3?", "Sort: 3 1 2", "hi"]
RESPONSES = ["2+3=5.", "1 2 3, which is the sorted list of the three numbers.", "hello"]


def test_every_sequence_ends_with_the_reward_token_and_no_pad(reward_model, tokenizer):
    fmt = reward_model.format
    assert fmt.reward_token == tokenizer.eos_token != tokenizer.pad_token
    for prompt, response in zip(PROMPTS, RESPONSES, strict=True):
        ids = encode_response(tokenizer, prompt, response, fmt)
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.pad_token_id not in ids
        assert ids.count(tokenizer.eos_token_id) == 3  # system, user and assistant turns each end with it
    text = tokenizer.decode(encode_response(tokenizer, "q", "a", fmt))
    assert text.startswith("<|im_start|>system\n<|im_end|>")  # WorldPM: the empty system turn is kept


def test_truncation_keeps_the_reward_token(tokenizer):
    fmt = reward_format_for(tokenizer, max_length=10)
    ids = encode_response(tokenizer, "a long prompt " * 5, "a long answer", fmt)
    assert len(ids) == 10 and ids[-1] == tokenizer.eos_token_id


def test_left_and_right_padding_give_the_same_rewards(reward_model):
    tokenizer, fmt = reward_model.tokenizer, reward_model.format
    sequences = [encode_response(tokenizer, p, r, fmt) for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    reward_model.eval()
    right = pad_sequences(sequences, reward_model.pad_id, "right")
    left = pad_sequences(sequences, reward_model.pad_id, "left")
    with torch.no_grad():
        r_right = reward_model(**right)
        r_left = reward_model(**left)
        alone = torch.cat([reward_model(**pad_sequences([s], reward_model.pad_id)) for s in sequences])
    torch.testing.assert_close(r_right, r_left, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r_right, alone, atol=1e-5, rtol=1e-5)
    assert len(set(r_right.tolist())) == 3


def test_reading_a_reward_at_pad_is_impossible(reward_model):
    batch = pad_sequences([[5, 6, 7, 2], [5, 2]], reward_model.pad_id)
    batch["attention_mask"][:] = 1  # a mask that claims the padding is text
    with pytest.raises(RewardModelError, match="PAD"):
        reward_model(**batch)


def test_reward_token_equal_to_pad_is_rejected(tokenizer):
    with pytest.raises(RewardModelError, match="pad token"):
        reward_format_for(tokenizer, reward_token=tokenizer.pad_token)


def test_saved_model_reloads_with_transformers_and_gives_the_same_scores(reward_model, tmp_path):
    from transformers import AutoModelForSequenceClassification

    reward_model.eval()
    ours = reward_model.score(PROMPTS, RESPONSES)
    save_reward_model(reward_model, tmp_path / "rm")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert hf.config.pad_token_id == reward_model.pad_id and hf.config.num_labels == 1
    batch = reward_model.encode(PROMPTS, RESPONSES)  # right padding: transformers' own pooling and positions
    with torch.no_grad():
        logits = hf(**batch).logits.squeeze(-1)
    torch.testing.assert_close(logits, ours, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(load_reward_model(tmp_path / "rm").score(PROMPTS, RESPONSES), ours)


def test_lora_model_trains_only_adapters_and_head_and_saves_merged(reward_model, tmp_path):
    from qwenkit.reward.model import add_lora

    lora = add_lora(reward_model, rank=4, alpha=8)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "score" in n for n in trainable)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.add_(0.05)
    lora.eval()
    ours = lora.score(PROMPTS, RESPONSES)
    reloaded = load_reward_model(save_reward_model(lora, tmp_path / "rm"))
    torch.testing.assert_close(reloaded.score(PROMPTS, RESPONSES), ours, atol=1e-5, rtol=1e-5)


def test_a_tokenizer_padding_with_its_eos_gets_endoftext_as_pad():
    from qwenkit.lm.tokenizer import build_synthetic_tokenizer
    from qwenkit.reward.train import use_distinct_pad_token

    tokenizer = build_synthetic_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token  # what chat models such as SmolLM2 ship
    with pytest.raises(RewardModelError, match="pad token"):
        reward_format_for(tokenizer)
    use_distinct_pad_token(tokenizer, None)
    assert tokenizer.pad_token == "<|endoftext|>" and reward_format_for(tokenizer).reward_token == "<|im_end|>"
