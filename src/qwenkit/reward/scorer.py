"""A saved reward model as a reward function: what ``qwenkit.rl`` (or any caller) plugs in to score completions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class RewardModelScorer:
    """Scores (prompt, completion) pairs with the reward model saved in ``directory``.

    ``scorer(prompt, completion, reference)`` matches ``qwenkit.rl.rewards.RewardFn`` (the reference is ignored:
    a learned reward needs none); ``scorer.score(prompts, completions)`` scores a whole batch at once, which is
    what a rollout should call. Prompts are strings (one user turn) or message lists; each sequence is rendered
    with the model's saved format (empty system turn, reward at its end token).
    """

    def __init__(self, directory: str | Path, *, batch_size: int = 16, device: str | None = None):
        from qwenkit.reward.model import load_reward_model

        self.directory = Path(directory)
        self.model = load_reward_model(self.directory, device=device)
        self.batch_size = batch_size

    def score(self, prompts: Sequence, completions: Sequence[str]) -> list[float]:
        return self.model.score(list(prompts), list(completions), batch_size=self.batch_size).tolist()

    def __call__(self, prompt, completion: str, reference: str = "") -> float:
        return self.score([prompt], [completion])[0]


def reward_function(directory: str | Path, *, batch_size: int = 16, device: str | None = None) -> RewardModelScorer:
    """The reward function of a saved reward-model directory (``qwenkit reward train`` writes ``RUN/model``)."""
    return RewardModelScorer(directory, batch_size=batch_size, device=device)
