"""A real ``transformers`` fast tokenizer for synthetic tasks: one token per character plus the Qwen chat specials.

Built with the ``tokenizers`` library and wrapped in ``PreTrainedTokenizerFast``, so it saves and reloads with
``save_pretrained``/``from_pretrained`` and works everywhere a Hugging Face tokenizer does (chat templates, padding,
``apply_chat_template``). Special tokens follow Qwen3: ``<|endoftext|>`` is the pad token, ``<|im_end|>`` ends a turn
and is the EOS of chat generation.
"""

from __future__ import annotations

import string

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<unk>")
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
UNK_TOKEN = "<unk>"
DEFAULT_ALPHABET = "".join(sorted(set(string.printable) - {"\x0b", "\x0c", "\r"}))


def build_synthetic_tokenizer(alphabet: str = DEFAULT_ALPHABET, *, extra_tokens: tuple[str, ...] = ()):
    """A character-level ``PreTrainedTokenizerFast``: ids 0.. are the specials, then ``extra_tokens``, then characters.

    ``extra_tokens`` are whole-word tokens matched before characters (e.g. ``"yes"``, ``"no"`` for a reranker).
    Unknown characters map to ``<unk>``. Decoding concatenates characters (no spaces are inserted).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in dict.fromkeys(alphabet)]
    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *extra_tokens, *chars):
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in {UNK_TOKEN, PAD_TOKEN, EOS_TOKEN}],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    if extra_tokens:
        tokenizer.add_tokens(list(extra_tokens))
    return tokenizer
