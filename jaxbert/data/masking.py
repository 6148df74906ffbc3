"""Masked-language-model targets: which tokens a sequence predicts and how they are corrupted.

Devlin et al.'s recipe, vectorised over a batch with numpy: about `masked_lm_prob` of the
non-special tokens are chosen (whole words with `whole_word_mask`), at most `max_predictions`
per sequence; a chosen token becomes [MASK] 80 % of the time, a random non-special token 10 %,
and stays itself 10 %. `PretrainingBatches` applies it to every batch it builds.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """Which tokens the MLM objective predicts, and how they are corrupted."""

    masked_lm_prob: float = 0.15  # fraction of (non-special) tokens to predict
    max_predictions: int = 20  # P: cap per sequence, and the width of the masked_lm_* arrays
    whole_word_mask: bool = False  # pick whole words ('##' pieces go with their word)
    mask_prob: float = 0.8  # a chosen token becomes [MASK] ...
    random_prob: float = 0.1  # ... or a random non-special token ...
    keep_prob: float = 0.1  # ... or stays itself

    def __post_init__(self):
        if not 0.0 < self.masked_lm_prob <= 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
        if self.max_predictions < 1:
            raise ValueError(f"max_predictions must be >= 1, got {self.max_predictions}")
        probs = (self.mask_prob, self.random_prob, self.keep_prob)
        if min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(f"mask/random/keep probabilities must sum to 1, got {probs}")


class Masker:
    """Chooses MLM targets in each sequence of a batch and corrupts them (80 % [MASK], 10 %
    random, 10 % kept), vectorised, with lookup tables built once.

    The number of targets per sequence is min(P, max(1, round(non_special * masked_lm_prob)))
    (P = masking.max_predictions); special tokens (incl. [PAD]) are never chosen; random
    replacements are drawn from the non-special ids below vocab_size.
    """

    def __init__(self, *, special_ids, vocab_size, mask_id, masking, is_subword=None):
        self.masking = masking
        self.mask_id = int(mask_id)
        special = np.asarray(sorted(int(i) for i in special_ids), dtype=np.int64)
        table_size = max(int(vocab_size), int(special.max(initial=-1)) + 1)
        self.is_special = np.zeros(table_size, dtype=bool)
        self.is_special[special] = True
        self.replacements = np.flatnonzero(~self.is_special[:vocab_size]).astype(np.int32)
        if len(self.replacements) == 0:
            raise ValueError("No non-special token ids to draw random replacements from.")
        self.is_subword = None
        if masking.whole_word_mask:
            if is_subword is None:
                raise ValueError("whole_word_mask needs is_subword (tokenizer.is_subword).")
            self.is_subword = np.zeros(table_size, dtype=bool)
            self.is_subword[: len(is_subword)] = np.asarray(is_subword, dtype=bool)

    def __call__(self, input_ids: np.ndarray, rng: np.random.Generator):
        """input_ids int32 [B, L] -> (masked_ids [B, L], positions [B, P], label_ids [B, P],
        weights float32 [B, P]); padding slots of the last three are 0."""
        ids = np.asarray(input_ids, dtype=np.int32)
        batch, length = ids.shape
        num_predictions = self.masking.max_predictions
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.is_special)):
            raise ValueError(f"token ids outside [0, {len(self.is_special)}) in input_ids")
        candidate = ~self.is_special[ids]
        num_candidates = candidate.sum(axis=1)
        num_to_mask = np.maximum(1, np.rint(num_candidates * self.masking.masked_lm_prob))
        num_to_mask = np.minimum(np.minimum(num_to_mask, num_predictions), num_candidates)
        num_to_mask = num_to_mask.astype(np.int64)

        if self.is_subword is None:
            # A uniformly random subset of size num_to_mask: the smallest random keys.
            keys = rng.random((batch, length))
            keys[~candidate] = 2.0
            rank = np.empty((batch, length), dtype=np.int64)
            order = np.argsort(keys, axis=1)
            np.put_along_axis(rank, order, np.arange(length)[None, :], axis=1)
            chosen = rank < num_to_mask[:, None]
        else:
            chosen = self._choose_whole_words(ids, candidate, num_to_mask, rng)

        rows, cols = np.nonzero(chosen)  # row-major: positions ascend within each row
        counts = chosen.sum(axis=1)
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        positions = np.zeros((batch, num_predictions), dtype=np.int32)
        label_ids = np.zeros((batch, num_predictions), dtype=np.int32)
        weights = np.zeros((batch, num_predictions), dtype=np.float32)
        positions[rows, slot] = cols
        label_ids[rows, slot] = ids[rows, cols]
        weights[rows, slot] = 1.0

        masked = ids.copy()
        draw = rng.random(len(rows))
        to_mask = draw < self.masking.mask_prob
        to_random = (draw >= self.masking.mask_prob) & (
            draw < self.masking.mask_prob + self.masking.random_prob
        )
        masked[rows[to_mask], cols[to_mask]] = self.mask_id
        random_ids = self.replacements[rng.integers(0, len(self.replacements), len(rows))]
        masked[rows[to_random], cols[to_random]] = random_ids[to_random]
        return masked, positions, label_ids, weights

    def _choose_whole_words(self, ids, candidate, num_to_mask, rng):
        """BERT's whole-word masking: words in random order, each taken if it still fits."""
        batch, length = ids.shape
        previous_candidate = np.zeros_like(candidate)
        previous_candidate[:, 1:] = candidate[:, :-1]
        word_start = candidate & ~(self.is_subword[ids] & previous_candidate)
        words_per_row = word_start.sum(axis=1)
        max_words = int(words_per_row.max(initial=0))
        chosen = np.zeros((batch, length), dtype=bool)
        if max_words == 0:
            return chosen
        # Global word number of every candidate position.
        row_first_word = np.cumsum(words_per_row) - words_per_row
        word_in_row = np.cumsum(word_start, axis=1) - 1
        word_of_position = row_first_word[:, None] + word_in_row
        word_length = np.bincount(word_of_position[candidate], minlength=int(words_per_row.sum()))
        # A random order of each row's words.
        keys = rng.random((batch, max_words))
        keys[np.arange(max_words)[None, :] >= words_per_row[:, None]] = 2.0
        order = np.argsort(keys, axis=1)
        valid = order < words_per_row[:, None]
        ordered_words = row_first_word[:, None] + order
        ordered_length = np.where(valid, word_length[np.where(valid, ordered_words, 0)], 0)
        taken = np.zeros((batch, max_words), dtype=bool)
        count = np.zeros(batch, dtype=np.int64)
        for k in range(max_words):
            active = (count < num_to_mask) & valid[:, k]
            if not active.any():
                break
            fits = active & (count + ordered_length[:, k] <= num_to_mask)
            taken[:, k] = fits
            count += np.where(fits, ordered_length[:, k], 0)
        word_taken = np.zeros(len(word_length), dtype=bool)
        word_taken[ordered_words[taken]] = True
        chosen[candidate] = word_taken[word_of_position[candidate]]
        return chosen
