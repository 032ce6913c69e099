"""WorldPM-style Bradley-Terry preference models (``qwenkit reward``; guide: docs/reward.md).

- :mod:`qwenkit.reward.losses`: ``bradley_terry_loss`` (margin, centring; TRL's formula), ``pairwise_accuracy``.
- :mod:`qwenkit.reward.model`: ``RewardModel`` on any causal LM (reward at the end token, padding-invariant), LoRA,
  save/load as a transformers ``AutoModelForSequenceClassification``.
- :mod:`qwenkit.reward.data`, :mod:`qwenkit.reward.stackexchange`, :mod:`qwenkit.reward.synthetic`: the pair format,
  StackExchange vote pairs, reward-bench files, the synthetic adversarial/objective/subjective corpus.
- :mod:`qwenkit.reward.train`: training through ``qwenkit.core.loop``; :mod:`qwenkit.reward.evaluate` and
  :mod:`qwenkit.reward.style`: per-category metrics, reward-bench sections, style control.
- :mod:`qwenkit.reward.scaling_fit`, :mod:`qwenkit.reward.scaling`: ``fit_power_law`` and scaling grids.
- :mod:`qwenkit.reward.scorer`: ``reward_function(directory)``, a saved reward model as a reward function.

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
        "PreferencePair": "qwenkit.reward.data",
        "load_pairs": "qwenkit.reward.data",
        "save_pairs": "qwenkit.reward.data",
        "load_reward_bench": "qwenkit.reward.data",
        "build_vote_pairs": "qwenkit.reward.stackexchange",
        "make_pairs": "qwenkit.reward.synthetic",
        "RewardTrainConfig": "qwenkit.reward.config",
        "train_reward_model": "qwenkit.reward.train",
        "evaluate_model": "qwenkit.reward.evaluate",
        "reward_bench_sections": "qwenkit.reward.evaluate",
        "style_control": "qwenkit.reward.style",
        "PowerLawFit": "qwenkit.reward.scaling_fit",
        "fit_power_law": "qwenkit.reward.scaling_fit",
        "ScalingGrid": "qwenkit.reward.scaling",
        "RewardModelScorer": "qwenkit.reward.scorer",
        "reward_function": "qwenkit.reward.scorer",
    },
)
