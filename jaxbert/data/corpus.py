"""Tokenized corpus cache: documents -> sentences -> token ids, on disk as numpy memmaps.

Layout of a cache directory (all little-endian raw arrays, described by meta.json):

    tokens.bin            uint16 (vocab < 65536) or int32 [num_tokens]: every sentence's ids,
                          no special tokens, documents and sentences back to back
    sentence_offsets.bin  int64 [num_sentences + 1]: sentence s is tokens[so[s]:so[s + 1]]
    doc_offsets.bin       int64 [num_documents + 1]: document d is sentences do[d]:do[d + 1]
    meta.json             counts, dtype, tokenizer fingerprint; written last

A build writes into a temporary sibling directory and renames it into place, so a directory
with that name is always complete. Training reads token ids only, never text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxbert.data.sentences import split_sentences

FORMAT_VERSION = 1
META_FILE = "meta.json"
_ARRAYS = ("tokens", "sentence_offsets", "doc_offsets")
_ENCODE_SLICE = 8192  # sentences per tokenizer call

log = logging.getLogger(__name__)


# ---- reading --------------------------------------------------------------------------------


def _memmap(path: Path, dtype: np.dtype, length: int) -> np.ndarray:
    if length == 0:  # mmap cannot map an empty file
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(length,))


class TokenizedCorpus:
    """Read-only view over a cache directory.

    Attributes: `tokens` [num_tokens] (uint16/int32), `sentence_offsets` int64
    [num_sentences + 1] (token index of each sentence start), `doc_offsets` int64
    [num_documents + 1] (sentence index of each document start).
    """

    def __init__(self, directory: Path, meta: dict):
        self.directory = Path(directory)
        self.meta = meta
        self.tokens = _memmap(
            self.directory / "tokens.bin", np.dtype(meta["token_dtype"]), meta["num_tokens"]
        )
        self.sentence_offsets = _memmap(
            self.directory / "sentence_offsets.bin", np.dtype(np.int64), meta["num_sentences"] + 1
        )
        self.doc_offsets = _memmap(
            self.directory / "doc_offsets.bin", np.dtype(np.int64), meta["num_documents"] + 1
        )

    @classmethod
    def open(cls, directory: str | os.PathLike) -> TokenizedCorpus:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"No complete tokenized corpus at {str(directory)!r} (missing {META_FILE}); "
                "build one with build_corpus / prepare_corpus."
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"Corpus at {str(directory)!r} has format {meta.get('format_version')}, "
                f"this code reads format {FORMAT_VERSION}: rebuild it."
            )
        return cls(directory, meta)

    @property
    def num_documents(self) -> int:
        return self.meta["num_documents"]

    @property
    def num_sentences(self) -> int:
        return self.meta["num_sentences"]

    @property
    def num_tokens(self) -> int:
        return self.meta["num_tokens"]

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.meta["tokenizer_fingerprint"]

    def sentence(self, s: int) -> np.ndarray:
        """int32 [len] token ids of sentence `s` (no special tokens)."""
        lo, hi = self.sentence_offsets[s], self.sentence_offsets[s + 1]
        return np.asarray(self.tokens[lo:hi], dtype=np.int32)

    def document(self, i: int) -> list[np.ndarray]:
        """The sentences (int32 token ids, no special tokens) of document `i`."""
        if not 0 <= i < self.num_documents:
            raise IndexError(f"document {i} out of range [0, {self.num_documents})")
        return [self.sentence(s) for s in range(self.doc_offsets[i], self.doc_offsets[i + 1])]

    def __repr__(self) -> str:
        return (
            f"TokenizedCorpus({str(self.directory)!r}, documents={self.num_documents}, "
            f"sentences={self.num_sentences}, tokens={self.num_tokens})"
        )


# ---- writing --------------------------------------------------------------------------------


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size < 2**16 else np.int32)


class _CorpusWriter:
    """Appends tokenized documents to the three arrays of one (temporary) directory."""

    def __init__(self, directory: Path, tokenizer):
        self.directory = directory
        directory.mkdir(parents=True)
        self.dtype = token_dtype(tokenizer.vocab_size)
        self.fingerprint = tokenizer.fingerprint()
        self.files = {name: open(directory / f"{name}.bin", "wb") for name in _ARRAYS}
        zero = np.zeros(1, dtype=np.int64)
        self.files["sentence_offsets"].write(zero.tobytes())
        self.files["doc_offsets"].write(zero.tobytes())
        self.num_tokens = self.num_sentences = self.num_documents = 0

    def add(self, documents: list[list[np.ndarray]]) -> None:
        """Append documents (lists of sentence id arrays); empty sentences/documents skipped."""
        arrays, sentence_lengths, doc_sentence_counts = [], [], []
        for sentences in documents:
            count = 0
            for ids in sentences:
                if len(ids):
                    arrays.append(ids)
                    sentence_lengths.append(len(ids))
                    count += 1
            if count:
                doc_sentence_counts.append(count)
        if not doc_sentence_counts:
            return
        tokens = np.concatenate(arrays).astype(self.dtype)
        sentence_ends = self.num_tokens + np.cumsum(sentence_lengths, dtype=np.int64)
        doc_ends = self.num_sentences + np.cumsum(doc_sentence_counts, dtype=np.int64)
        self.files["tokens"].write(tokens.tobytes())
        self.files["sentence_offsets"].write(sentence_ends.tobytes())
        self.files["doc_offsets"].write(doc_ends.tobytes())
        self.num_tokens += len(tokens)
        self.num_sentences += len(sentence_lengths)
        self.num_documents += len(doc_sentence_counts)

    def close(self, **extra_meta) -> None:
        for f in self.files.values():
            f.close()
        meta = {
            "format_version": FORMAT_VERSION,
            "num_documents": self.num_documents,
            "num_sentences": self.num_sentences,
            "num_tokens": self.num_tokens,
            "token_dtype": self.dtype.name,
            "tokenizer_fingerprint": self.fingerprint,
            **extra_meta,
        }
        # meta.json last: its presence marks the arrays as complete.
        (self.directory / META_FILE).write_text(json.dumps(meta, indent=2))

    def abort(self) -> None:
        for f in self.files.values():
            f.close()


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _tokenize_documents(tokenizer, documents: list[str]) -> list[list[np.ndarray]]:
    """Split each document into sentences and tokenize all of them in one batch call."""
    per_doc = [split_sentences(text) for text in documents]
    flat = [sentence for sentences in per_doc for sentence in sentences]
    ids = []
    # In slices: the library's per-sentence Encoding objects are large; keep only the ids.
    for start in range(0, len(flat), _ENCODE_SLICE):
        ids += tokenizer.encode_batch(flat[start : start + _ENCODE_SLICE], add_special_tokens=False)
    out, start = [], 0
    for sentences in per_doc:
        out.append(ids[start : start + len(sentences)])
        start += len(sentences)
    return out


def _temporary_sibling(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _publish(tmp: Path, directory: Path) -> None:
    """Move a finished build into place (replacing an older one) with directory renames."""
    old = None
    if directory.exists():
        old = _temporary_sibling(directory)
        os.rename(directory, old)
    os.rename(tmp, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_documents(
    documents: Iterable[str],
    tokenizer,
    writers: list[_CorpusWriter],
    route: Callable[[int], int],
    batch_docs: int,
    total: int | None,
    desc: str,
) -> int:
    """Tokenize `documents` in batches; document i goes to writers[route(i)]. Returns count."""
    start_time, index = time.perf_counter(), 0
    progress = tqdm(total=total, unit="doc", desc=desc, smoothing=0.1, mininterval=2.0)
    try:
        for batch in _batched(documents, batch_docs):
            tokenized = _tokenize_documents(tokenizer, batch)
            per_writer: list[list[list[np.ndarray]]] = [[] for _ in writers]
            for doc in tokenized:
                per_writer[route(index)].append(doc)
                index += 1
            for writer, docs in zip(writers, per_writer, strict=True):
                writer.add(docs)
            progress.update(len(batch))
    finally:
        progress.close()
    seconds = time.perf_counter() - start_time
    tokens = sum(w.num_tokens for w in writers)
    log.info(
        "%s: %d documents, %d tokens in %.1f s (%.0f documents/s, %.0f tokens/s)",
        desc,
        index,
        tokens,
        seconds,
        index / max(seconds, 1e-9),
        tokens / max(seconds, 1e-9),
    )
    return index


def build_corpus(
    documents: Iterable[str], tokenizer, directory: str | os.PathLike, *, batch_docs: int = 1000
) -> TokenizedCorpus:
    """Tokenize `documents` (streamed, `batch_docs` at a time) into a cache at `directory`.

    Replaces an existing corpus there. Written into a temporary sibling and renamed, so an
    interrupted build never leaves a directory that looks complete.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(directory)
    writer = _CorpusWriter(tmp, tokenizer)
    try:
        _write_documents(documents, tokenizer, [writer], lambda i: 0, batch_docs, None, "corpus")
        writer.close()
        _publish(tmp, directory)
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TokenizedCorpus.open(directory)


def _validation_rule(val_documents: int | float, count: Callable[[], int]) -> Callable[[int], bool]:
    """Whether document i is held out: evenly spaced, every ~k-th document, deterministic."""
    if isinstance(val_documents, bool) or not isinstance(val_documents, numbers.Real):
        raise TypeError(f"val_documents must be an int or a float, got {val_documents!r}")
    if not isinstance(val_documents, numbers.Integral):
        fraction = float(val_documents)
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"val_documents fraction must be in [0, 1), got {fraction}")
        return lambda i: int((i + 1) * fraction) > int(i * fraction)
    if val_documents < 0:
        raise ValueError(f"val_documents must be >= 0, got {val_documents}")
    if val_documents == 0:
        return lambda i: False
    total = count()
    if val_documents >= total:
        raise ValueError(
            f"val_documents={val_documents} leaves no training documents (corpus has {total})."
        )
    count_held = int(val_documents)
    return lambda i: (i + 1) * count_held // total > i * count_held // total


def prepare_corpus(
    documents_factory: Callable[[], Iterable[str]],
    tokenizer,
    cache_root: str | os.PathLike,
    key: str,
    val_documents: int | float = 0,
    *,
    batch_docs: int = 1000,
) -> tuple[TokenizedCorpus, TokenizedCorpus]:
    """(train, val) corpora for a document source, built once and cached.

    The cache lives at cache_root/<hash of key, tokenizer fingerprint, format version and the
    validation split>; when complete it is opened without reading any text. `key` must
    identify the source (e.g. "files=...;text_field=text;max_docs=0"). `val_documents`: an int
    holds out that many documents (one extra pass over the source to count them), a float that
    fraction; either way evenly spaced through the corpus.
    """
    if isinstance(val_documents, numbers.Integral) and not isinstance(val_documents, bool):
        spec = ["count", int(val_documents)]
    else:
        spec = ["fraction", float(val_documents)]
    digest_input = json.dumps([FORMAT_VERSION, key, tokenizer.fingerprint(), spec])
    root = Path(cache_root) / hashlib.sha256(digest_input.encode()).hexdigest()[:16]
    if (root / META_FILE).is_file():
        log.info("Reusing tokenized corpus %s (%s)", root, key)
        return TokenizedCorpus.open(root / "train"), TokenizedCorpus.open(root / "val")

    counted: dict[str, int] = {}

    def count_documents() -> int:
        total = sum(1 for _ in tqdm(documents_factory(), unit="doc", desc="counting documents"))
        if total == 0:
            raise ValueError(f"The source {key!r} has no documents.")
        counted["total"] = total
        return total

    is_val = _validation_rule(val_documents, count_documents)
    total = counted.get("total")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(root)
    writers = [_CorpusWriter(tmp / "train", tokenizer), _CorpusWriter(tmp / "val", tokenizer)]
    try:
        start = time.perf_counter()
        num_docs = _write_documents(
            documents_factory(),
            tokenizer,
            writers,
            lambda i: int(is_val(i)),
            batch_docs,
            total,
            "tokenizing corpus",
        )
        if writers[0].num_documents == 0:
            raise ValueError(
                f"The source {key!r} has no documents with any text "
                f"({num_docs} documents read, all empty after tokenization)."
                if num_docs
                else f"The source {key!r} has no documents."
            )
        if writers[1].num_documents == 0 and spec[1] > 0:
            # Raised before the cache is published: a rerun with a larger value (another cache
            # key) builds it then, and nothing trains on an empty validation set.
            raise ValueError(
                f"val_documents={val_documents} holds out no documents of the {num_docs} in "
                f"{key!r}: "
                + (
                    f"a fraction holds out about val_documents x {num_docs}; use a larger one "
                    "or a count (val_documents=N)."
                    if spec[0] == "fraction"
                    else "the held-out documents have no text."
                )
            )
        seconds = time.perf_counter() - start
        for writer in writers:
            writer.close(key=key, build_seconds=round(seconds, 3))
        (tmp / META_FILE).write_text(
            json.dumps(
                {"format_version": FORMAT_VERSION, "key": key, "val_documents": spec}, indent=2
            )
        )
        try:
            os.rename(tmp, root)
        except OSError:
            # Another process finished the same cache first: keep theirs.
            if not (root / META_FILE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        for writer in writers:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TokenizedCorpus.open(root / "train"), TokenizedCorpus.open(root / "val")
