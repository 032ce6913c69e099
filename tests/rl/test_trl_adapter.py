"""qwenkit's loss inside TRL's GRPOTrainer equals TRL's own loss where both define it, and adds GSPO-token."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig

    from qwenkit.lm.models import tiny_qwen3_for
    from qwenkit.lm.tokenizer import build_synthetic_tokenizer
    from qwenkit.rl.trl_adapter import QwenkitGRPOTrainer

    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, "nano")
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl")), use_cpu=True, per_device_train_batch_size=8,
                      num_generations=4, max_completion_length=6, report_to=[], save_strategy="no",
                      disable_tqdm=True, beta=0.0, loss_type="grpo", epsilon=0.2, epsilon_high=0.28)
    return QwenkitGRPOTrainer(model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                              args=args, train_dataset=Dataset.from_list([{"prompt": "S123="}] * 8),
                              processing_class=tokenizer)


def make_inputs():
    g = torch.Generator().manual_seed(0)
    completion_mask = (torch.arange(6)[None] < torch.tensor([6, 3, 5, 1, 6, 2, 4, 6])[:, None]).long()
    return {
        "prompt_ids": torch.randint(10, 90, (8, 4), generator=g),
        "prompt_mask": torch.ones(8, 4, dtype=torch.long),
        "completion_ids": torch.randint(10, 90, (8, 6), generator=g),
        "completion_mask": completion_mask,
        "advantages": torch.randn(8, generator=g),
        "old_per_token_logps": -4.6 + 0.3 * torch.randn(8, 6, generator=g),
        "num_items_in_batch": completion_mask.sum().float(),
    }


# The rows of docs/rl.md's table "TRL's configurations in qwenkit": loss_type x importance_sampling_level x
# top_entropy_quantile. 33 valid tokens: the 0.8 rank 25.6 is no integer, so TRL's float32 quantile and our exact one
# pick the same threshold here (where the rank is an integer they can differ: docs/rl.md).
TRL_ROWS = [("grpo", "token", 1.0), ("grpo", "sequence", 1.0), ("bnpo", "token", 1.0), ("dapo", "token", 1.0),
            ("dapo", "token", 0.2), ("dapo", "sequence", 1.0), ("dr_grpo", "token", 1.0), ("luspo", "sequence", 1.0),
            ("grpo", "sequence", 0.2), ("dapo", "sequence", 0.2), ("grpo", "token", 0.2)]


def _loss_and_grads(trainer, compute, inputs):
    trainer.model.zero_grad(set_to_none=True)
    loss = compute(inputs)
    loss.backward()
    grads = [p.grad.detach().clone() for p in trainer.model.parameters() if p.grad is not None]
    return loss.detach(), grads


@pytest.mark.parametrize(("loss_type", "level", "rho"), TRL_ROWS)
def test_adapter_loss_and_gradient_equal_trl(trainer, loss_type, level, rho):
    from trl import GRPOTrainer

    from qwenkit.rl.trl_adapter import _AGGREGATION_OF_LOSS_TYPE

    trainer.loss_type, trainer.importance_sampling_level, trainer.top_entropy_quantile = loss_type, level, rho
    trainer.qwenkit_level, trainer.qwenkit_rho = level, rho
    trainer.current_gradient_accumulation_steps = 2  # set by the training loop in real use
    trainer.qwenkit_aggregation = _AGGREGATION_OF_LOSS_TYPE[loss_type]
    inputs = make_inputs()
    trainer.model.train()
    theirs, their_grads = _loss_and_grads(trainer, lambda x: GRPOTrainer._compute_loss(trainer, trainer.model, x),
                                          inputs)
    ours, our_grads = _loss_and_grads(trainer, lambda x: trainer._compute_loss(trainer.model, x), inputs)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    assert len(our_grads) == len(their_grads) > 0
    for mine, reference in zip(our_grads, their_grads, strict=True):
        torch.testing.assert_close(mine, reference, atol=1e-6, rtol=1e-4)


def test_adapter_gspo_token_equals_gspo(trainer):
    trainer.loss_type, trainer.qwenkit_aggregation, trainer.qwenkit_rho = "grpo", "seq-mean-token-mean", 1.0
    trainer.current_gradient_accumulation_steps = 1
    inputs = make_inputs()
    losses = []
    for level in ("sequence", "sequence_token"):
        trainer.qwenkit_level = level
        losses.append(trainer._compute_loss(trainer.model, inputs))
    torch.testing.assert_close(losses[0], losses[1])
