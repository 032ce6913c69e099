"""Automatic prefix caching: the KV of prompt prefixes already prefilled, reused by later prompts that start with them.

Under causal attention the keys and values of a prompt's first ``L`` tokens depend only on those tokens (and their
positions ``0 .. L-1``), so a later prompt that starts with the same ``L`` tokens can skip them: its prefill runs
only the rest of the prompt, attending to the stored KV. This is vLLM's automatic prefix caching (Kwon et al. 2023,
the block-hash form of its V1 engine) and what transformers' continuous batching calls block sharing; a shared
system prompt is the common case.

- Prefixes are matched in whole blocks of ``block_size`` tokens. Block ``k`` is keyed by a hash chained over blocks
  ``1 .. k``, and a hit is verified token by token, so a hash collision cannot hand a prompt another prompt's KV.
- At most ``len(prompt) - 1`` tokens are reused: the last prompt token must still be run, to give the logits of the
  first generated token.
- Stored prefixes are evicted least recently used first once they hold more than ``max_tokens`` tokens in all.

The reused KV equals a fresh prefill's up to floating-point rounding (the matmuls that made it had other shapes), as
in vLLM; ``max_tokens=0`` switches the cache off for bitwise reproducibility against an uncached engine.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class CachedPrefix:
    """The KV of one prompt prefix: per layer, keys and values of shape ``[1, heads, len(ids), head_dim]``."""

    ids: tuple[int, ...]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]


class PrefixCache:
    """Prompt-prefix KV, matched in blocks of ``block_size`` tokens, at most ``max_tokens`` tokens held (LRU)."""

    def __init__(self, max_tokens: int, block_size: int = 16):
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.max_tokens, self.block_size = max_tokens, block_size
        self._entries: OrderedDict[int, CachedPrefix] = OrderedDict()
        self._by_block: dict[int, int] = {}
        """Chained hash of blocks 1..k -> the entry id whose prefix holds those blocks (the newest such entry)."""
        self._next_id = 0
        self.tokens = 0
        self.queried_tokens = 0
        self.hit_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.max_tokens > 0

    def _block_hashes(self, ids: list[int] | tuple[int, ...], blocks: int) -> list[int]:
        hashes, chained = [], 0
        for k in range(blocks):
            chained = hash((chained, tuple(ids[k * self.block_size : (k + 1) * self.block_size])))
            hashes.append(chained)
        return hashes

    def lookup(self, ids: list[int]) -> tuple[CachedPrefix | None, int]:
        """(entry, L): the longest stored prefix of ``ids`` of whole blocks and at most ``len(ids) - 1`` tokens, and
        its length; ``(None, 0)`` when none is stored. Counts the query for the hit rate."""
        if not self.enabled or not ids:
            return None, 0
        self.queried_tokens += len(ids)
        hashes = self._block_hashes(ids, (len(ids) - 1) // self.block_size)
        for k in range(len(hashes), 0, -1):
            entry_id = self._by_block.get(hashes[k - 1])
            if entry_id is None:
                continue
            entry, length = self._entries[entry_id], k * self.block_size
            if entry.ids[:length] == tuple(ids[:length]):
                self._entries.move_to_end(entry_id)
                self.hit_tokens += length
                return entry, length
        return None, 0

    def storable_length(self, ids: list[int]) -> int:
        """How many leading tokens of ``ids`` (whole blocks) :meth:`insert` should be given: 0 when the cache is off,
        the prompt is shorter than a block, its prefix is already stored or would not fit."""
        length = len(ids) // self.block_size * self.block_size
        if not self.enabled or length == 0 or length > self.max_tokens:
            return 0
        entry_id = self._by_block.get(self._block_hashes(ids, length // self.block_size)[-1])
        if entry_id is not None and self._entries[entry_id].ids[:length] == tuple(ids[:length]):
            self._entries.move_to_end(entry_id)
            return 0
        return length

    def insert(self, ids: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Store the KV of ``ids`` (a whole number of blocks; ``keys[l]`` is ``[1, H, len(ids), D]``), evicting the
        least recently used prefixes beyond ``max_tokens``."""
        if len(ids) % self.block_size or any(k.shape[-2] != len(ids) for k in keys):
            raise ValueError(f"a stored prefix is a whole number of {self.block_size}-token blocks and its KV has "
                             f"one column per token; got {len(ids)} ids and KV of {keys[0].shape[-2]} columns")
        entry_id, self._next_id = self._next_id, self._next_id + 1
        self._entries[entry_id] = CachedPrefix(tuple(ids), keys, values)
        for block_hash in self._block_hashes(ids, len(ids) // self.block_size):
            self._by_block[block_hash] = entry_id
        self.tokens += len(ids)
        while self.tokens > self.max_tokens:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        entry_id, entry = self._entries.popitem(last=False)
        self.tokens -= len(entry.ids)
        for block_hash in self._block_hashes(entry.ids, len(entry.ids) // self.block_size):
            if self._by_block.get(block_hash) == entry_id:
                del self._by_block[block_hash]
