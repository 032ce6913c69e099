import json

import pytest
import torch

from qwenkit.lm import ModelLoadError, build_synthetic_tokenizer, load_causal_lm, load_tokenizer, tiny_qwen3_for
from qwenkit.lm.models import qwen3_config


def test_tokenizer_round_trip(tmp_path):
    tokenizer = build_synthetic_tokenizer(extra_tokens=("yes", "no"))
    text = "<|im_start|>user\nsay yes<think>\n</think><|im_end|>"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    for special in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>"):
        assert len(tokenizer(special, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert len(tokenizer("yes")["input_ids"]) == 1
    tokenizer.save_pretrained(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    assert reloaded(text)["input_ids"] == ids
    assert reloaded.decode(ids) == text


@pytest.mark.parametrize("moe", [False, True])
def test_save_and_load_model(tmp_path, moe):
    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, "nano", moe=moe)
    model.save_pretrained(tmp_path)
    loaded = load_causal_lm(tmp_path)
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(loaded(ids).logits, model.eval()(ids).logits)
    assert type(loaded).__name__ == ("Qwen3MoeForCausalLM" if moe else "Qwen3ForCausalLM")
    if moe:
        assert loaded(ids, labels=ids).aux_loss is not None


def test_loading_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_causal_lm(tmp_path)
    model = tiny_qwen3_for(build_synthetic_tokenizer(), "nano")
    model.save_pretrained(tmp_path / "m")
    for weights in (tmp_path / "m").glob("*.safetensors"):
        weights.rename(tmp_path / weights.name)
    with pytest.raises(ModelLoadError, match="no weights"):
        load_causal_lm(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="GGUF file"):
        load_causal_lm(tmp_path / "m", gguf_file="model.gguf")


def test_weights_that_do_not_match_the_config(tmp_path):
    tokenizer = build_synthetic_tokenizer()
    tiny_qwen3_for(tokenizer, "nano").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["hidden_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        load_causal_lm(tmp_path)


def test_sizes_and_unknown_size():
    assert qwen3_config("small", vocab_size=50).num_hidden_layers == 4
    assert qwen3_config("tiny", moe=True).num_experts == 4
    with pytest.raises(ValueError, match="unknown model size"):
        qwen3_config("huge")
