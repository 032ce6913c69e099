import pytest
import torch

from qwenkit.lm import SamplingParams, build_synthetic_tokenizer, sample, tiny_qwen3_for, token_logprobs
from qwenkit.lm.sampling import filter_logits, left_pad


@pytest.fixture(scope="module")
def setup():
    tokenizer = build_synthetic_tokenizer()
    return tokenizer, tiny_qwen3_for(tokenizer).eval()


def test_greedy_matches_generate_per_row(setup):
    tokenizer, model = setup
    prompts = ["hello ", "a", "longer prompt here"]
    batch = sample(model, tokenizer, prompts, SamplingParams(max_new_tokens=6, temperature=0))
    for prompt, completion in zip(prompts, batch.completion_ids, strict=True):
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        assert completion == ref[0, ids.shape[1]:].tolist()[: len(completion)]


def test_sampler_logprobs_match_rescoring(setup):
    tokenizer, model = setup
    params = SamplingParams(max_new_tokens=10, temperature=0.8, top_p=0.9, top_k=20, seed=3)
    batch = sample(model, tokenizer, ["abc", "x y z w"], params)
    full = [p + c for p, c in zip(batch.prompt_ids, batch.completion_ids, strict=True)]
    x, mask = left_pad(full, tokenizer.pad_token_id)
    scores = token_logprobs(model, x, mask, temperature=0.8)
    for row, (completion, logps) in enumerate(zip(batch.completion_ids, batch.logprobs, strict=True)):
        torch.testing.assert_close(scores.logprobs[row, -len(completion):], torch.tensor(logps), atol=1e-5, rtol=0)


def test_seed_is_deterministic_and_lengths(setup):
    tokenizer, model = setup
    params = SamplingParams(max_new_tokens=5, temperature=1.0, seed=11)
    a = sample(model, tokenizer, ["q", "rs"], params)
    b = sample(model, tokenizer, ["q", "rs"], params)
    assert a.completion_ids == b.completion_ids
    assert all(len(c) == 5 for c in a.completion_ids) and a.finish_reasons == ["length", "length"]
    assert all(len(c) == len(l) for c, l in zip(a.completion_ids, a.logprobs, strict=True))


def test_stop_token_and_stop_string(setup):
    tokenizer, model = setup
    greedy = sample(model, tokenizer, ["hello "], SamplingParams(max_new_tokens=8, temperature=0))
    first = tokenizer.decode(greedy.completion_ids[0][2:3])
    stopped = sample(model, tokenizer, ["hello "], SamplingParams(max_new_tokens=8, temperature=0, stop=[first]))
    assert stopped.finish_reasons == ["stop"]
    assert len(stopped.completion_ids[0]) <= 3
    assert first not in stopped.texts[0]
    third_id = greedy.completion_ids[0][2]
    by_id = sample(model, tokenizer, ["hello "], SamplingParams(max_new_tokens=8, temperature=0,
                                                                stop_token_ids=[third_id]))
    assert by_id.completion_ids[0][-1] == third_id and by_id.finish_reasons == ["stop"]


def test_filter_logits():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[True, True, False, False]]
    assert (~torch.isinf(filter_logits(logits, top_p=0.1))).sum() == 1


def test_empty_prompt_is_refused(setup):
    tokenizer, model = setup
    with pytest.raises(ValueError, match="at least one token"):
        sample(model, tokenizer, [[]], SamplingParams(max_new_tokens=1))
