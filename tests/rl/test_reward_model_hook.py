"""An RL config can name a reward-model directory (qwenkit.reward): its scores replace the task's reward."""

import pytest

from qwenkit.cli import run_cli
from qwenkit.core.config import load_config
from qwenkit.rl.config import RLConfig
from qwenkit.rl.train import train

TINY = {"model": {"size": "nano"}, "rollouts": 1, "eval_prompts": 0,
        "rollout": {"prompts": 2, "group_size": 2, "num_mini_batches": 1, "max_new_tokens": 3}}


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for
    from qwenkit.reward import reward_model_from_causal_lm, save_reward_model

    tokenizer = build_synthetic_tokenizer()
    model = reward_model_from_causal_lm(tiny_qwen3_for(tokenizer, "nano"), tokenizer, seed=3)
    return save_reward_model(model, tmp_path_factory.mktemp("rm") / "model")


def test_rollout_rewards_come_from_the_reward_model(tmp_path, reward_dir):
    from qwenkit.reward import reward_function

    config = load_config(RLConfig, {**TINY, "reward_model": str(reward_dir)})
    result = train(config, tmp_path / "run", quiet=True, report=False)
    scorer = reward_function(reward_dir)
    prompt, completion, reward = result.samples[0]
    assert reward == pytest.approx(scorer(prompt, completion), abs=1e-5)
    assert reward not in (0.0, 1.0)  # a learned score, not the task's exact-match reward


def test_a_bad_reward_model_path_is_a_clean_error(tmp_path, capsys):
    rc = run_cli(["rl", "train", "--set", "model.size=nano", "--set", f"reward_model={tmp_path / 'none'}",
                  "--out", str(tmp_path / "run"), "-q"])
    text = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in text and "none" in text
    assert not (tmp_path / "run" / "config.yaml").exists()
