"""BERT pretraining batches (masked LM + next-sentence prediction) from a TokenizedCorpus.

Follows Devlin et al.'s create_pretraining_data.py, generated on the fly instead of written
to TFRecords, and vectorised over the batch with numpy:

* Each epoch is planned up front with `np.random.default_rng([seed, epoch])`: every document
  is cut into chunks of consecutive sentences up to a target length (max_len - 3, or with
  probability `short_seq_prob` a random shorter one); each chunk becomes segment A (its first
  1+ sentences) and, for IsNext, segment B (the rest). For NotNext (drawn here, 50 %, since it
  decides what follows) the unused sentences are "put back" and start the next chunk. The
  plan holds a few ints per instance and is shuffled.
* Batch k of epoch e draws all its randomness (NotNext source documents, truncation, masks)
  from `np.random.default_rng([seed, e, k])`, so `restore` reproduces any position exactly.

With `nsp=False` sequences are `[CLS] <max_len - 2 consecutive tokens> [SEP]` cut from the
corpus read as one stream, documents separated by [SEP] (RoBERTa-style packing).

The NSP label convention is Hugging Face BertForPreTraining's: 0 = IsNext, 1 = NotNext.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxbert.data.corpus import TokenizedCorpus
from jaxbert.data.masking import Masker, MaskingConfig
from jaxbert.data.tokenizer import BertTokenizer

IS_NEXT, NOT_NEXT = 0, 1
_EVAL_STREAM = 2**32 - 1  # epoch number of the plan behind fixed_batches; training never gets there


@dataclasses.dataclass(frozen=True)
class _Plan:
    """One epoch's instances, shuffled. nsp: sentence spans; packed: window start tokens."""

    a_start: np.ndarray  # int64 [N]: first sentence of A (packed: window start, virtual)
    a_end: np.ndarray  # int64 [N]: one past A's last sentence (also B's first for IsNext)
    b_end: np.ndarray  # int64 [N]: one past B's last sentence; -1 = NotNext
    target: np.ndarray  # int32 [N]: target token count of A + B

    @property
    def size(self) -> int:
        return len(self.a_start)


class PretrainingBatches:
    """Infinite, deterministic, resumable iterator of fixed-shape MLM (+ NSP) batches.

    Batch (np.int32 unless noted): input_ids, segment_ids, attention_mask [B, L];
    masked_lm_positions, masked_lm_ids [B, P]; masked_lm_weights float32 [B, P];
    next_sentence_labels [B] (0 = IsNext, 1 = NotNext; all 0 with nsp=False).
    `vocab_size`, if given, is the model's vocabulary size: it must cover the tokenizer's.
    """

    def __init__(
        self,
        corpus: TokenizedCorpus,
        tokenizer: BertTokenizer,
        *,
        batch_size: int,
        max_len: int = 128,
        masking: MaskingConfig = MaskingConfig(),
        short_seq_prob: float = 0.1,
        nsp: bool = True,
        seed: int = 0,
        vocab_size: int | None = None,
    ):
        if corpus.num_documents == 0:
            raise ValueError(f"{corpus!r} has no documents.")
        if nsp and corpus.num_documents < 2:
            # NotNext segments come from another document; with one they would be its own text.
            raise ValueError(
                f"{corpus!r} has 1 document; next-sentence prediction needs at least 2 (in txt "
                "files documents are separated by blank lines; a held-out set needs 2 as well). "
                "Or pretrain without NSP: nsp=False (data.nsp=False in the config)."
            )
        if corpus.tokenizer_fingerprint != tokenizer.fingerprint():
            raise ValueError(
                f"{corpus!r} was tokenized with tokenizer {corpus.tokenizer_fingerprint}, "
                f"not this one ({tokenizer.fingerprint()}): rebuild the corpus."
            )
        if max_len < (5 if nsp else 3):
            raise ValueError(f"max_len={max_len} is too short for [CLS] A [SEP] (B [SEP]).")
        if vocab_size is not None and vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"vocab_size={vocab_size} is smaller than the tokenizer's {tokenizer.vocab_size}."
            )
        self.corpus, self.batch_size, self.max_len = corpus, batch_size, max_len
        self.masking, self.short_seq_prob, self.nsp, self.seed = masking, short_seq_prob, nsp, seed
        self.vocab_size = vocab_size or tokenizer.vocab_size
        self.pad_id, self.cls_id, self.sep_id = tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id
        self._masker = Masker(
            special_ids=tokenizer.special_ids,
            vocab_size=tokenizer.vocab_size,  # random replacements only from real tokens
            mask_id=tokenizer.mask_id,
            masking=masking,
            is_subword=tokenizer.is_subword if masking.whole_word_mask else None,
        )
        self._tokens = corpus.tokens
        self._sentence_offsets = np.asarray(corpus.sentence_offsets)
        self._doc_offsets = np.asarray(corpus.doc_offsets)
        # Token index one past each document's end; for packing, the stream position one past
        # each document's [SEP] (document d occupies [t_d + d, t_{d+1} + d] of the stream).
        self._doc_token_end = self._sentence_offsets[self._doc_offsets[1:]]
        self._doc_stream_end = self._doc_token_end + np.arange(1, corpus.num_documents + 1)
        self._epoch, self._batch_index = 0, 0
        self._plans: dict[int, _Plan] = {}

    # ---- position -----------------------------------------------------------------------

    def state(self) -> dict:
        """JSON-serialisable position: the next batch is batch `batch_index` of `epoch`."""
        return {
            "epoch": self._epoch,
            "batch_index": self._batch_index,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "max_len": self.max_len,
            "nsp": self.nsp,
        }

    def restore(self, state: dict) -> None:
        for name in ("seed", "batch_size", "max_len", "nsp"):
            if name in state and state[name] != getattr(self, name):
                raise ValueError(
                    f"Cannot restore: the saved data state has {name}={state[name]!r}, this "
                    f"iterator {name}={getattr(self, name)!r}; batches would differ."
                )
        self._epoch, self._batch_index = int(state["epoch"]), int(state["batch_index"])

    # ---- iteration ----------------------------------------------------------------------

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._batch_index >= self.batches_in_epoch(self._epoch):
            self._epoch, self._batch_index = self._epoch + 1, 0
        batch = self._batch(self._plan(self._epoch), self._epoch, self._batch_index)
        self._batch_index += 1
        return batch

    def batches_in_epoch(self, epoch: int) -> int:
        """Batches in `epoch` (it varies a little with the plan); the last partial batch is
        dropped, and a corpus smaller than one batch wraps around to fill one."""
        return max(1, self._plan(epoch).size // self.batch_size)

    def fixed_batches(self, n: int) -> list[dict[str, np.ndarray]]:
        """`n` evaluation batches: the same on every call, whatever the training position."""
        plan = self._plan(_EVAL_STREAM)
        return [self._batch(plan, _EVAL_STREAM, k) for k in range(n)]

    def _plan(self, epoch: int) -> _Plan:
        if epoch not in self._plans:
            if epoch != _EVAL_STREAM:  # keep the eval plan and the current epoch's only
                self._plans = {k: v for k, v in self._plans.items() if k == _EVAL_STREAM}
            rng = np.random.default_rng([self.seed, epoch])
            self._plans[epoch] = self._plan_nsp(rng) if self.nsp else self._plan_packed(rng)
        return self._plans[epoch]

    # ---- planning -----------------------------------------------------------------------

    def _plan_nsp(self, rng: np.random.Generator) -> _Plan:
        """Cut all documents into A/B instances, in lockstep over documents."""
        so = self._sentence_offsets
        max_tokens = self.max_len - 3
        pos = self._doc_offsets[:-1].copy()
        end = self._doc_offsets[1:].copy()
        keep = pos < end
        pos, end = pos[keep], end[keep]
        parts: list[tuple[np.ndarray, ...]] = []
        while len(pos):
            n = len(pos)
            short = rng.random(n) < self.short_seq_prob
            target = np.where(short, rng.integers(2, max_tokens + 1, n), max_tokens)
            # Shortest run of sentences from `pos` reaching the target, within the document.
            chunk_end = np.searchsorted(so, so[pos] + target, side="left")
            chunk_end = np.minimum(np.maximum(chunk_end, pos + 1), end)
            num_sentences = chunk_end - pos
            a_end = pos + rng.integers(1, np.maximum(num_sentences, 2))
            want_random = rng.random(n) < 0.5
            # A one-sentence chunk takes the next sentence as its IsNext B, if there is one.
            b_end = np.where((num_sentences == 1) & (chunk_end < end), chunk_end + 1, chunk_end)
            is_random = want_random | (b_end == a_end)
            # NotNext: the sentences after A go back and start the next chunk.
            next_pos = np.where(is_random, a_end, b_end)
            parts.append((pos, a_end, np.where(is_random, -1, b_end), target.astype(np.int32)))
            keep = next_pos < end
            pos, end = next_pos[keep], end[keep]
        a_start, a_end, b_end, target = (np.concatenate(p) for p in zip(*parts, strict=True))
        order = rng.permutation(len(a_start))
        return _Plan(a_start[order], a_end[order], b_end[order], target[order])

    def _plan_packed(self, rng: np.random.Generator) -> _Plan:
        """Windows of max_len - 2 positions over tokens + one [SEP] per document."""
        window = self.max_len - 2
        stream_length = self.corpus.num_tokens + self.corpus.num_documents
        offset = int(rng.integers(window)) if stream_length > 2 * window else 0
        count = max(1, (stream_length - offset) // window)
        starts = offset + window * rng.permutation(count).astype(np.int64)
        none = np.full(count, -1, dtype=np.int64)
        return _Plan(starts, none, none, np.full(count, window, dtype=np.int32))

    # ---- batch assembly -----------------------------------------------------------------

    def _batch(self, plan: _Plan, epoch: int, batch_index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, batch_index])
        rows = (batch_index * self.batch_size + np.arange(self.batch_size)) % plan.size
        if self.nsp:
            input_ids, segment_ids, attention_mask, labels = self._nsp_rows(plan, rows, rng)
        else:
            input_ids, attention_mask = self._packed_rows(plan.a_start[rows])
            segment_ids = np.zeros_like(input_ids)
            labels = np.zeros(self.batch_size, dtype=np.int32)
        masked, positions, label_ids, weights = self._masker(input_ids, rng)
        return {
            "input_ids": masked,
            "segment_ids": segment_ids,
            "attention_mask": attention_mask,
            "masked_lm_positions": positions,
            "masked_lm_ids": label_ids,
            "masked_lm_weights": weights,
            "next_sentence_labels": labels,
        }

    def _nsp_rows(self, plan: _Plan, rows: np.ndarray, rng: np.random.Generator):
        so, do = self._sentence_offsets, self._doc_offsets
        max_tokens, batch = self.max_len - 3, len(rows)
        a_start, a_end, b_end = plan.a_start[rows], plan.a_end[rows], plan.b_end[rows]
        is_random = b_end < 0
        a_lo, a_hi = so[a_start], so[a_end]
        # NotNext B: a random other document, from a random sentence, up to the target.
        num_docs = len(do) - 1
        doc = np.searchsorted(do, a_start, side="right") - 1
        if num_docs > 1:
            other = rng.integers(0, num_docs - 1, batch)
            other += other >= doc
        else:
            other = doc
        doc_sentences = do[other + 1] - do[other]
        random_start = do[other] + (rng.random(batch) * doc_sentences).astype(np.int64)
        target_b = np.maximum(1, plan.target[rows] - (a_hi - a_lo))
        random_end = np.searchsorted(so, so[random_start] + target_b, side="left")
        random_end = np.clip(random_end, random_start + 1, do[other + 1])
        b_lo = np.where(is_random, so[random_start], a_hi)
        b_hi = np.where(is_random, so[random_end], so[np.maximum(b_end, 0)])
        # truncate_seq_pair: trim the longer segment, one token at a time from a random end,
        # until A + B fits. The resulting lengths are closed-form; the ends are coin flips.
        len_a, len_b = a_hi - a_lo, b_hi - b_lo
        over = len_a + len_b > max_tokens
        new_a = np.where(
            over, np.minimum(len_a, np.maximum((max_tokens + 1) // 2, max_tokens - len_b)), len_a
        )
        new_b = np.where(over, max_tokens - new_a, len_b)
        a_lo = a_lo + rng.binomial(len_a - new_a, 0.5)
        b_lo = b_lo + rng.binomial(len_b - new_b, 0.5)
        len_a, len_b = new_a[:, None], new_b[:, None]

        j = np.arange(self.max_len)[None, :]
        in_a = (j >= 1) & (j <= len_a)
        in_b = (j >= len_a + 2) & (j < len_a + 2 + len_b)
        source = np.where(in_a, a_lo[:, None] + j - 1, b_lo[:, None] + j - len_a - 2)
        source = np.clip(source, 0, max(len(self._tokens) - 1, 0))
        tokens = self._tokens[source].astype(np.int32)
        input_ids = np.where(in_a | in_b, tokens, self.pad_id).astype(np.int32)
        input_ids[:, 0] = self.cls_id
        input_ids[(j == len_a + 1) | (j == len_a + len_b + 2)] = self.sep_id
        real = j <= len_a + len_b + 2
        segment_ids = ((j >= len_a + 2) & real).astype(np.int32)
        labels = np.where(is_random, NOT_NEXT, IS_NEXT).astype(np.int32)
        return input_ids, segment_ids, real.astype(np.int32), labels

    def _packed_rows(self, starts: np.ndarray):
        window = self.max_len - 2
        stream_length = self.corpus.num_tokens + self.corpus.num_documents
        position = starts[:, None] + np.arange(window)[None, :]
        doc = np.searchsorted(self._doc_stream_end, position, side="right")
        valid = position < stream_length
        doc = np.minimum(doc, len(self._doc_token_end) - 1)
        token_index = position - doc
        is_sep = token_index >= self._doc_token_end[doc]
        tokens = self._tokens[np.clip(token_index, 0, len(self._tokens) - 1)].astype(np.int32)
        body = np.where(is_sep, self.sep_id, tokens)
        body = np.where(valid, body, self.pad_id)
        input_ids = np.full((len(starts), self.max_len), self.pad_id, dtype=np.int32)
        input_ids[:, 0] = self.cls_id
        input_ids[:, 1 : window + 1] = body
        length = valid.sum(axis=1)
        input_ids[np.arange(len(starts)), length + 1] = self.sep_id
        attention_mask = (np.arange(self.max_len)[None, :] <= length[:, None] + 1).astype(np.int32)
        return input_ids, attention_mask
