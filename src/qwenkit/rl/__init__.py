"""RLVR: GRPO, GSPO, GSPO-token and the 80/20 forking-token rule (``qwenkit rl``).

- :mod:`qwenkit.rl.losses`: pure losses: ``group_advantages``, ``policy_loss`` (token / sequence / sequence_token
  level, three aggregations, clip, 80/20 ``token_mask``, k3 KL), ``token_entropy``, ``high_entropy_mask`` (global
  over processes).
- :mod:`qwenkit.rl.rewards`, :mod:`qwenkit.rl.tasks`: verifiable rewards and toy tasks.
- :mod:`qwenkit.rl.train`: the trainer (``qwenkit.rl.train.train(config, out)``) on ``qwenkit.core.loop``; configs in
  :mod:`qwenkit.rl.config`.
- :mod:`qwenkit.rl.entropy`: token-entropy analysis; :mod:`qwenkit.rl.trl_adapter`: the loss inside TRL's
  ``GRPOTrainer``; :mod:`qwenkit.rl.backends`: rollout backends (local, vLLM).

Importing this package is light; torch is imported by the submodules.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "group_advantages": "qwenkit.rl.losses",
        "policy_loss": "qwenkit.rl.losses",
        "high_entropy_mask": "qwenkit.rl.losses",
        "token_entropy": "qwenkit.rl.losses",
        "k3_kl": "qwenkit.rl.losses",
        "sequence_log_ratio": "qwenkit.rl.losses",
        "RLConfig": "qwenkit.rl.config",
        "ALGORITHMS": "qwenkit.rl.config",
        "get_task": "qwenkit.rl.tasks",
    },
)
