"""WorldPM-style Bradley-Terry preference models (``qwenkit reward``).

- :mod:`qwenkit.reward.losses`: ``bradley_terry_loss`` (margin, centring; TRL's formula), ``pairwise_accuracy``.
- :mod:`qwenkit.reward.model`: ``RewardModel`` on any causal LM, LoRA, save/load as a transformers
  ``AutoModelForSequenceClassification``.

Importing this package is light; torch is imported by the submodules.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "bradley_terry_loss": "qwenkit.reward.losses",
        "pairwise_accuracy": "qwenkit.reward.losses",
        "RewardModel": "qwenkit.reward.model",
        "RewardFormat": "qwenkit.reward.model",
        "add_lora": "qwenkit.reward.model",
        "load_reward_model": "qwenkit.reward.model",
        "reward_model_from_causal_lm": "qwenkit.reward.model",
        "save_reward_model": "qwenkit.reward.model",
        "RewardDataError": "qwenkit.reward.errors",
        "RewardModelError": "qwenkit.reward.errors",
    },
)
