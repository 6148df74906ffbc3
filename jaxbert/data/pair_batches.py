"""Length-bucketed ("smart") batching of tokenized sentence pairs for the siamese encoder.

`TokenizedPairs` holds the token ids of a `PairDataset` compactly (one flat int32 array and
int64 offsets per sentence column: ~4 bytes per token). `PairBatches` cuts it into batches
whose sequence length is the smallest bucket that fits the longest sentence of the batch, so
the train step compiles once per bucket and pays for little padding.

Batch dict (B = batch_size, L = one bucket length for every side of the batch):
  input_ids_a, attention_mask_a, input_ids_b, attention_mask_b: int32 [B, L]
  input_ids_c, attention_mask_c: int32 [B, L], only for triplets (hard negatives)
  labels: int32 [B] class indices (NLI) or float32 [B] scores (STS)
  weights: float32 [B], 1 for a real row, 0 for a padding row
  index: int32 [B] row of the pair in the dataset, -1 for padding (`epoch_batches` only)
A padding row repeats the first row of its batch (weight 0), so no sentence is all padding
and mean pooling never divides by zero.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence

import numpy as np

SIDES = ("a", "b", "c")


@dataclasses.dataclass(frozen=True)
class TokenizedPairs:
    """Token ids per sentence column: sentence i of column k is
    `tokens[k][offsets[k][i]:offsets[k][i + 1]]` (int32, `[CLS] ... [SEP]`, at most max_len).

    One column for single sentences (distillation), two for pairs, three for triplets
    (anchor, positive, hard negative).
    """

    tokens: tuple[np.ndarray, ...]
    offsets: tuple[np.ndarray, ...]
    labels: np.ndarray
    label_names: tuple[str, ...]
    max_len: int
    name: str = ""

    def __post_init__(self):
        if len(self.tokens) not in (1, 2, 3) or len(self.offsets) != len(self.tokens):
            raise ValueError("TokenizedPairs needs 1, 2 or 3 columns of tokens and offsets")
        for offsets in self.offsets:
            if len(offsets) != len(self.labels) + 1:
                raise ValueError(f"{len(offsets) - 1} offsets for {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_columns(self) -> int:
        return len(self.tokens)

    def lengths(self) -> np.ndarray:
        """int32 [num_columns, num_pairs]: tokens per sentence."""
        return np.stack([np.diff(o) for o in self.offsets]).astype(np.int32)

    def sentence(self, column: int, i: int) -> np.ndarray:
        return self.tokens[column][self.offsets[column][i] : self.offsets[column][i + 1]]

    @classmethod
    def build(cls, dataset, tokenizer, max_len: int, chunk: int = 10000) -> TokenizedPairs:
        """Tokenizes `dataset` (a `nli.PairDataset`) `chunk` sentences at a time."""
        columns = [dataset.sentence1, dataset.sentence2]
        if getattr(dataset, "sentence3", None) is not None:
            columns.append(dataset.sentence3)
        return cls.from_columns(
            columns,
            np.asarray(dataset.labels),
            tuple(dataset.label_names),
            tokenizer,
            max_len,
            name=dataset.name,
            chunk=chunk,
        )

    @classmethod
    def from_columns(
        cls,
        columns: Sequence[Sequence[str]],
        labels: np.ndarray,
        label_names: tuple[str, ...],
        tokenizer,
        max_len: int,
        name: str = "",
        chunk: int = 10000,
    ) -> TokenizedPairs:
        """Tokenizes 1-3 columns of sentences, row i of each belonging to `labels[i]`."""
        tokens, offsets = [], []
        for texts in columns:
            pieces, lengths = [], np.zeros(len(texts) + 1, np.int64)
            for start in range(0, len(texts), chunk):
                ids = tokenizer.encode_batch(texts[start : start + chunk], max_length=max_len)
                lengths[start + 1 : start + 1 + len(ids)] = [len(x) for x in ids]
                pieces.append(np.concatenate(ids).astype(np.int32, copy=False))
            longest = int(lengths.max(initial=0))
            if longest > max_len:
                raise ValueError(f"tokenizer returned {longest} tokens > max_len={max_len}")
            tokens.append(np.concatenate(pieces) if pieces else np.zeros(0, np.int32))
            offsets.append(np.cumsum(lengths))
        return cls(
            tokens=tuple(tokens),
            offsets=tuple(offsets),
            labels=labels,
            label_names=label_names,
            max_len=max_len,
            name=name,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Writes one .npz (token ids, offsets, labels, metadata) so training skips the text."""
        arrays = {f"tokens_{k}": t for k, t in enumerate(self.tokens)}
        arrays.update({f"offsets_{k}": o for k, o in enumerate(self.offsets)})
        meta = dict(label_names=self.label_names, max_len=self.max_len, name=self.name)
        np.savez(path, labels=self.labels, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TokenizedPairs:
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            columns = sum(1 for key in f.files if key.startswith("tokens_"))
            return cls(
                tokens=tuple(f[f"tokens_{k}"] for k in range(columns)),
                offsets=tuple(f[f"offsets_{k}"] for k in range(columns)),
                labels=f["labels"],
                label_names=tuple(meta["label_names"]),
                max_len=meta["max_len"],
                name=meta["name"],
            )


def bucket_length(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= n (`buckets` sorted ascending)."""
    i = bisect.bisect_left(buckets, n)
    if i == len(buckets):
        raise ValueError(f"length {n} exceeds the largest bucket {buckets[-1]}")
    return buckets[i]


class PairBatches:
    """Shuffled, length-bucketed batches of `TokenizedPairs`; infinite over epochs.

    Each epoch (all randomness from `np.random.default_rng([seed, epoch])`): shuffle the pairs,
    cut them into chunks of `chunk_batches` batches, sort each chunk by length, cut it into
    batches, shuffle the order of the batches. With drop_remainder the pairs past the last full
    batch (a different random few each epoch) are skipped; otherwise the last batch is padded
    with weight-0 rows. `state()` / `restore()` resume at the exact batch.
    """

    def __init__(
        self,
        pairs: TokenizedPairs,
        *,
        batch_size: int,
        buckets: Sequence[int] = (16, 32, 64, 128),
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = True,
        pad_id: int,
        chunk_batches: int = 64,
    ):
        self.pairs = pairs
        self.batch_size = int(batch_size)
        self.buckets = tuple(sorted({int(b) for b in buckets}))
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_remainder = drop_remainder
        self.pad_id = int(pad_id)
        self.chunk_batches = int(chunk_batches)
        self._lengths = pairs.lengths()  # [columns, n]
        self._starts = tuple(o[:-1] for o in pairs.offsets)
        self._pair_lengths = self._lengths.max(axis=0, initial=0)  # [n]: longest side
        if self.batch_size < 1 or self.chunk_batches < 1:
            raise ValueError("batch_size and chunk_batches must be positive")
        if self._pair_lengths.max(initial=0) > self.buckets[-1]:
            raise ValueError(
                f"{pairs.name}: a sentence has {self._pair_lengths.max()} tokens, more than the "
                f"largest bucket {self.buckets[-1]}; tokenize with max_len <= {self.buckets[-1]}"
            )
        if len(self) == 0:
            raise ValueError(
                f"{pairs.name}: {len(pairs)} pairs make no batch of {self.batch_size} "
                "(use drop_remainder=False or a smaller batch)"
            )
        self._epoch, self._batch = 0, 0
        self._plan_epoch, self._plan = -1, np.zeros((0, self.batch_size), np.int64)

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = len(self.pairs), self.batch_size
        return n // b if self.drop_remainder else -(-n // b)

    def epoch_plan(self, epoch: int) -> np.ndarray:
        """int64 [batches, batch_size]: pair indices of each batch of `epoch`, -1 = padding."""
        if epoch != self._plan_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            n = len(self.pairs)
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            order = order[: len(self) * self.batch_size]  # drop the remainder before sorting
            chunk = self.chunk_batches * self.batch_size
            for start in range(0, len(order), chunk):
                part = order[start : start + chunk]
                order[start : start + chunk] = part[
                    np.argsort(self._pair_lengths[part], kind="stable")
                ]
            self._plan = self._pad(order).reshape(-1, self.batch_size)
            if self.shuffle:
                self._plan = self._plan[rng.permutation(len(self._plan))]
            self._plan_epoch = epoch
        return self._plan

    def _pad(self, order: np.ndarray) -> np.ndarray:
        missing = -len(order) % self.batch_size
        return np.concatenate([order, np.full(missing, -1, order.dtype)])

    def __iter__(self) -> PairBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._batch >= len(self):
            self._epoch, self._batch = self._epoch + 1, 0
        batch = self.make_batch(self.epoch_plan(self._epoch)[self._batch])
        self._batch += 1
        return batch

    def state(self) -> dict:
        """JSON-friendly position: the next batch is batch `batch` of epoch `epoch`."""
        return dict(
            epoch=self._epoch,
            batch=self._batch,
            seed=self.seed,
            num_pairs=len(self.pairs),
            batch_size=self.batch_size,
        )

    def restore(self, state: dict) -> None:
        mine = self.state()
        for key in ("seed", "num_pairs", "batch_size"):
            if int(state[key]) != mine[key]:
                raise ValueError(
                    f"cannot resume: the saved state has {key}={state[key]}, "
                    f"these batches have {key}={mine[key]}"
                )
        self._epoch, self._batch = int(state["epoch"]), int(state["batch"])

    def epoch_batches(self, sort_by_length: bool = True) -> Iterator[dict[str, np.ndarray]]:
        """One pass over every pair (for evaluation), the last batch padded with weight-0 rows.

        Sorted by length (least padding) unless `sort_by_length=False` (dataset order); the
        `index` key maps rows back to pairs. Does not touch the training position.
        """
        n = len(self.pairs)
        order = np.argsort(self._pair_lengths, kind="stable") if sort_by_length else np.arange(n)
        for indices in self._pad(order).reshape(-1, self.batch_size):
            batch = self.make_batch(indices)
            batch["index"] = indices.astype(np.int32)
            yield batch

    def make_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The batch of pairs `indices` (int [batch_size], -1 = padding row)."""
        real = indices >= 0
        rows = np.where(real, indices, indices[0])
        length = bucket_length(int(self._pair_lengths[rows].max()), self.buckets)
        batch = {}
        for column in range(self.pairs.num_columns):
            ids, mask = self._gather(column, rows, length)
            batch[f"input_ids_{SIDES[column]}"] = ids
            batch[f"attention_mask_{SIDES[column]}"] = mask
        labels = self.pairs.labels[rows]
        batch["labels"] = np.where(real, labels, 0).astype(labels.dtype)
        batch["weights"] = real.astype(np.float32)
        return batch

    def _gather(self, column: int, rows: np.ndarray, length: int) -> tuple[np.ndarray, ...]:
        lengths = self._lengths[column][rows]
        starts = self._starts[column][rows]
        ids = np.full((len(rows), length), self.pad_id, np.int32)
        row = np.repeat(np.arange(len(rows)), lengths)
        position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        ids[row, position] = self.pairs.tokens[column][np.repeat(starts, lengths) + position]
        mask = (np.arange(length) < lengths[:, None]).astype(np.int32)
        return ids, mask

    def padding_fraction(self, epoch: int | None = None) -> float:
        """Fraction of the token positions of an epoch's batches that are padding (pad tokens
        and padding rows), all sides together; `epoch` defaults to the current one."""
        plan = self.epoch_plan(self._epoch if epoch is None else epoch)
        real = plan >= 0
        rows = np.where(real, plan, plan[:, :1])
        longest = self._pair_lengths[rows].max(axis=1)
        bucket = np.asarray(self.buckets)[np.searchsorted(self.buckets, longest)]
        total = bucket.sum() * self.batch_size * self.pairs.num_columns
        tokens = self._lengths[:, plan[real]].sum()
        return 1.0 - float(tokens) / float(total)
