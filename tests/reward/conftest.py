import pytest


@pytest.fixture(scope="session")
def tokenizer():
    from qwenkit.lm.tokenizer import build_synthetic_tokenizer

    return build_synthetic_tokenizer()


@pytest.fixture()
def reward_model(tokenizer):
    from qwenkit.lm.models import tiny_qwen3_for
    from qwenkit.reward.model import reward_model_from_causal_lm

    return reward_model_from_causal_lm(tiny_qwen3_for(tokenizer, "nano", seed=0), tokenizer, max_length=96, seed=1)
