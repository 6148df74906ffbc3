"""`SentenceModel`: one frozen object holding config, params and tokenizer, for every client.

    model = SentenceModel.from_dir("runs/sbert_small")
    model.encode(["A man plays a guitar."])          # [1, hidden] float32
    model.similarity("A man plays a guitar.", "Someone makes music.")
    model.classify("A man plays a guitar.", "A person makes music.")   # {label: probability}

Sentences are tokenized one by one, sorted by length, padded to a few bucket lengths and run in
batches whose row count is a power of two, so each (rows, length) shape compiles once. A
sentence's embedding depends on nothing but the sentence.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
from collections.abc import Sequence

import jax
import numpy as np

from jaxbert import loading, quantize
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import BertConfig
from jaxbert.quantize import quantize_params
from jaxbert.sbert import SentenceBert

log = logging.getLogger(__name__)

DEFAULT_FEATURES = loading.DEFAULT_FEATURES
QUANTIZE_MODES = quantize.MODES


class EmptyTextError(ValueError):
    pass


@functools.lru_cache(maxsize=16)
def _compiled(module: SentenceBert, quantized: bool = False):
    """Jitted encode / head functions per model definition (params are arguments, so new
    params, e.g. at every evaluation during training, reuse the compiled code). With
    `quantized`, the encoder's dense layers run on the int8 / bfloat16 kernels of
    `jaxbert.quantize.quantize_params`."""

    @jax.jit
    def encode(params, input_ids, attention_mask):
        with quantize.dense_interceptor() if quantized else contextlib.nullcontext():
            return module.apply(
                {"params": params}, input_ids, attention_mask, method=SentenceBert.encode
            )

    @jax.jit
    def encode_packed(params, input_ids, texts):
        with quantize.dense_interceptor() if quantized else contextlib.nullcontext():
            return module.apply(
                {"params": params}, input_ids, texts, method=SentenceBert.encode_packed
            )

    @jax.jit
    def probabilities(params, u, v, temperature):
        logits = module.apply({"params": params}, u, v, method=SentenceBert.classify)
        return jax.nn.softmax(logits / temperature, axis=-1)

    return encode, encode_packed, probabilities


# Compiled encoders, one per (model definition, quantisation, parameter layout, rows, length):
# ahead-of-time executables called directly, so a query skips jit's dispatch (its argument
# signature check and cache lookup). Shared by the SentenceModels of one module (the
# evaluations during training build one per evaluation).
_EXECUTABLES: dict[tuple, jax.stages.Compiled] = {}
_EXECUTABLES_LIMIT = 256


def _executable(encode_fn, key: tuple, params, rows: int, length: int):
    executable = _EXECUTABLES.get(key)
    if executable is None:
        if len(_EXECUTABLES) >= _EXECUTABLES_LIMIT:
            _EXECUTABLES.clear()
        spec = jax.ShapeDtypeStruct((rows, length), np.int32)
        options = COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
        executable = encode_fn.lower(params, spec, spec).compile(options)
        _EXECUTABLES[key] = executable
    return executable


# XLA:CPU options of the serving executables. None is set: the ones tried on the 2-core
# machine (README "Performance" / "CPU") did not measurably help; `scripts/benchmark.py encode
# --xla-options` measures others.
COMPILER_OPTIONS: dict[str, object] = {}


# Batches of at least this many rows are padded to the fine length buckets.
FINE_BUCKET_ROWS = 16


def _length_buckets(max_len: int, fine: bool = False) -> tuple[int, ...]:
    """Sequence lengths the encoder compiles for, then `max_len`: powers of two from 8, or
    (fine) 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ..., each at most 25 % above the one before.

    A batch of many rows pays for its padding in proportion, so big batches use the fine
    lengths (on SNLI sentences at batch 64, 25-35 % fewer padded tokens than powers of two:
    ~1.2x sentences/s). So do a single query and a pair packed in one row, whose time is mostly
    the dense layers' work on their tokens (README "Performance" / "CPU"); the app compiles
    their lengths at start. Batches of 2 to 15 rows use the coarse lengths: fewer shapes.
    """
    factors = (4, 5, 6, 7) if fine else (4,)
    lengths = sorted({m << k for k in range(1, 10) for m in factors})
    return tuple(n for n in lengths if n < max_len) + (max_len,)


class SentenceModel:
    """Sentence embeddings, similarity and NLI classification from a trained model."""

    def __init__(
        self,
        *,
        model_config: BertConfig,
        params,
        tokenizer: BertTokenizer,
        pooling: str = "mean",
        normalize: bool = False,
        label_names: Sequence[str] = (),
        features: Sequence[str] = DEFAULT_FEATURES,
        max_len: int = 128,
        has_classifier: bool = True,
        source: str = "",
        projection_dim: int = 0,
        head_hidden: int = 0,
        quantize: str = "none",
        temperature: float = 1.0,
    ):
        if model_config.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the model only "
                f"{model_config.vocab_size} embedding rows"
            )
        self.model_config = model_config
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.label_names = tuple(label_names)
        self.max_len = min(int(max_len), model_config.max_position_embeddings)
        self.source = source
        self.has_classifier = bool(has_classifier and self.label_names and "classifier" in params)
        self.module = SentenceBert(
            model_config,
            pooling=pooling,
            normalize=normalize,
            num_labels=max(1, len(self.label_names)),
            features=tuple(features),
            projection_dim=int(projection_dim),
            head_hidden=int(head_hidden),
        )
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
        self.quantize = quantize
        # The classifier's logits are divided by it: > 1 softens overconfident probabilities
        # (fitted on dev pairs after fine-tuning, `evaluate.fit_temperature`); labels unchanged.
        self.temperature = loading.checked_temperature(temperature)
        self.params = jax.device_put(params)
        self._encode_fn, self._encode_packed_fn, self._probabilities_fn = _compiled(self.module)
        # The encoder's own params: the float ones, or their int8 / bfloat16 dense layers.
        self.encoder_params = self.params
        if quantize != "none":
            self.encoder_params = jax.device_put(quantize_params(params, quantize))
            self._encode_fn, self._encode_packed_fn, _ = _compiled(self.module, quantized=True)
        layout = tuple(
            (x.shape, x.dtype, getattr(x, "sharding", None))
            for x in jax.tree.leaves(self.encoder_params)
        )
        self._executable_key = (self.module, quantize, hash(layout))
        # Single queries and big batches: the fine lengths (least padding); a few rows: coarse.
        self.buckets = _length_buckets(self.max_len, fine=True)
        self.fine_buckets = self.buckets
        self.coarse_buckets = _length_buckets(self.max_len)

    # ------------------------------------------------------------------ construction
    # Reading from disk is `jaxbert.loading`; these build the model from what it read.

    # `quantize`: "none" (float32), "int8" or "bfloat16" dense layers (jaxbert.quantize).

    @classmethod
    def from_dir(cls, path: str, which: str = "best", quantize: str = "none") -> SentenceModel:
        """Rebuilds the model from a run directory alone (fine-tuning or pretraining run)."""
        return cls(**loading.from_run_dir(path, which=which), quantize=quantize)

    @classmethod
    def from_pretrained(cls, path: str, quantize: str = "none") -> SentenceModel:
        """A Hugging Face BERT or sentence-transformers folder (safetensors)."""
        return cls(**loading.from_hf_folder(path), quantize=quantize)

    @classmethod
    def load(cls, path: str, quantize: str = "none") -> SentenceModel:
        """`hf:<dir>` or a Hugging Face folder -> from_pretrained; a run directory -> from_dir."""
        if path.startswith("hf:") or loading.is_hf_folder(path):
            return cls.from_pretrained(path.removeprefix("hf:"), quantize=quantize)
        return cls.from_dir(path, quantize=quantize)

    def with_temperature(self, temperature: float) -> SentenceModel:
        """The same model (shared params and compiled code) with another classifier
        temperature; 1.0 gives the untempered probabilities."""
        tempered = copy.copy(self)
        tempered.temperature = loading.checked_temperature(temperature)
        return tempered

    @property
    def hidden_size(self) -> int:
        """Width of the embeddings `encode` returns (the projection's, when there is one)."""
        return self.module.projection_dim or self.model_config.hidden_size

    def describe(self) -> dict:
        return {
            "source": self.source,
            "layers": self.model_config.num_layers,
            "hidden": self.model_config.hidden_size,
            "heads": self.model_config.num_heads,
            "vocab": self.tokenizer.vocab_size,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_tokens": self.max_len,
            "labels": list(self.label_names),
            "compute_dtype": self.model_config.dtype,
            "quantize": self.quantize,
            "temperature": self.temperature,
            "parameters": int(sum(np.prod(x.shape) for x in jax.tree.leaves(self.params))),
        }

    # ------------------------------------------------------------------ tokens

    def tokenize(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """Token ids per text ([CLS] ... [SEP], cut to max_len) and which texts were cut."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is {type(text).__name__}, not str")
            if not text.strip():
                raise EmptyTextError(
                    f"text {i} is empty; every sentence needs at least one non-space character"
                )
        ids = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        truncated = np.array([len(x) > self.max_len for x in ids], dtype=bool)
        if truncated.any():
            log.warning(
                "%d of %d texts are longer than %d tokens and were truncated",
                int(truncated.sum()),
                len(ids),
                self.max_len,
            )
            sep = self.tokenizer.sep_id
            ids = [
                np.concatenate([x[: self.max_len - 1], [sep]]).astype(np.int32) if cut else x
                for x, cut in zip(ids, truncated)
            ]
        return ids, truncated

    def _bucket(self, length: int, rows: int = 1) -> int:
        fine = rows == 1 or rows >= FINE_BUCKET_ROWS
        buckets = self.fine_buckets if fine else self.coarse_buckets
        for bucket in buckets:
            if length <= bucket:
                return bucket
        return buckets[-1]

    def _embed_ids(self, ids: list[np.ndarray], batch_size: int) -> np.ndarray:
        """Embeds token id arrays in length-sorted batches; returns rows in input order.

        The partial batch holds the shortest texts (padding its rows to a power of two costs
        least there). Every batch is dispatched before any result is read, so building the next
        batch on the host overlaps the running one.
        """
        lengths = np.array([len(x) for x in ids])
        order = np.argsort(lengths, kind="stable")
        if len(ids) == 1:  # a single query: no sorting or batching to do
            return np.asarray(self._embed_padded(*self._padded(ids, lengths, order, 1)))
        if len(ids) == 2 and batch_size >= 2 and lengths.sum() <= self.max_len:
            return self._embed_pair(ids)
        first = len(order) % batch_size or batch_size
        ends = range(first, len(order) + 1, batch_size) if len(order) else ()
        pending, start = [], 0
        for end in ends:  # batches [0, first), [first, first + batch_size), ...
            chosen, start = order[start:end], end
            rows = 1 << max(0, int(np.ceil(np.log2(len(chosen)))))  # few distinct shapes
            pending.append((chosen, self._embed_padded(*self._padded(ids, lengths, chosen, rows))))
        out = np.zeros((len(ids), self.hidden_size), np.float32)
        for chosen, embeddings in pending:
            out[chosen] = np.asarray(embeddings)[: len(chosen)]
        return out

    def _padded(self, ids, lengths, chosen, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The texts `chosen` as input_ids and attention_mask [rows, bucket length], int32."""
        length = self._bucket(int(lengths[chosen].max()), rows)
        mask = np.zeros((rows, length), np.int32)
        mask[: len(chosen)] = np.arange(length) < lengths[chosen, None]
        input_ids = np.full((rows, length), self.tokenizer.pad_id, np.int32)
        input_ids[mask.astype(bool)] = np.concatenate([ids[i] for i in chosen])
        return input_ids, mask

    def _embed_pair(self, ids: list[np.ndarray]) -> np.ndarray:
        """Two texts (a pair query) packed in one row, one after the other, each seeing only
        itself (`SentenceBert.encode_packed`): one encoder call on their tokens, no padding to
        the longer one. A call costs several times what a token does on CPU (README
        "Performance" / "CPU", "A pair in one call")."""
        n = len(ids[0]) + len(ids[1])
        length = self._bucket(n)
        input_ids = np.full((1, length), self.tokenizer.pad_id, np.int32)
        texts = np.zeros((1, length), np.int32)
        input_ids[0, :n] = np.concatenate(ids)
        texts[0, : len(ids[0])], texts[0, len(ids[0]) : n] = 1, 2
        executable = self.compiled_encoder(1, length, packed=True)
        return np.asarray(executable(self.encoder_params, input_ids, texts))[0]

    def compiled_encoder(self, rows: int, length: int, packed: bool = False) -> jax.stages.Compiled:
        """The compiled encoder of padded batches [rows, length] (compiled on first use),
        called as `(model.encoder_params, input_ids, attention_mask)`; `packed`: of rows that
        pack two texts each, called with each token's text number (1, 2; 0 padding) instead
        of the mask (`SentenceBert.encode_packed`)."""
        if packed:
            key = (*self._executable_key, "packed", rows, length)
            return _executable(self._encode_packed_fn, key, self.encoder_params, rows, length)
        key = (*self._executable_key, rows, length)
        return _executable(self._encode_fn, key, self.encoder_params, rows, length)

    def _embed_padded(self, input_ids: np.ndarray, mask: np.ndarray) -> jax.Array:
        """The compiled encoder of this shape on one padded batch (dispatched, not awaited)."""
        executable = self.compiled_encoder(*input_ids.shape)
        return executable(self.encoder_params, input_ids, mask)

    # ------------------------------------------------------------------ public API

    def encode(self, texts: str | Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings [n, hidden] (float32); a single string gives one vector [hidden]."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if not items:
            return np.zeros((0, self.hidden_size), np.float32)
        ids, _ = self.tokenize(items)
        vectors = self._embed_ids(ids, max(1, int(batch_size)))
        return vectors[0] if single else vectors

    def pair_embeddings(
        self, first: Sequence[str], second: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of paired texts, u [n, hidden] and v [n, hidden]. Both sides are encoded
        together: one pair is one encoder call (its two texts packed in one row, when together
        they fit in max_len tokens), many pairs share length-sorted batches."""
        first, second = list(first), list(second)
        if len(first) != len(second):
            raise ValueError(f"got {len(first)} first and {len(second)} second texts")
        vectors = self.encode(first + second, batch_size)
        return vectors[: len(first)], vectors[len(first) :]

    def similarity(self, a: str | Sequence[str], b: str | Sequence[str]) -> float | np.ndarray:
        """Cosine similarity of a and b (row by row for lists)."""
        single = _pairing(a, b, "first texts", "second texts")
        u, v = self.pair_embeddings([a] if single else a, [b] if single else b)
        scores = cosine_rows(u, v)
        return float(scores[0]) if single else scores

    def predict_proba(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        """[n, num_labels] probabilities, columns in `label_names` order."""
        if not self.has_classifier:
            raise ValueError(
                "this model has no trained NLI classifier (it was pretrained, imported, or "
                "fine-tuned with a non-softmax objective); use encode/similarity instead"
            )
        if _pairing(premises, hypotheses, "premises", "hypotheses"):
            raise TypeError("predict_proba takes lists of premises and hypotheses; use classify")
        if len(premises) != len(hypotheses):
            raise ValueError(f"got {len(premises)} premises and {len(hypotheses)} hypotheses")
        u, v = self.pair_embeddings(premises, hypotheses, batch_size)
        return self.probabilities_from_embeddings(u, v, batch_size)

    def probabilities_from_embeddings(
        self, u: np.ndarray, v: np.ndarray, batch_size: int = 64
    ) -> np.ndarray:
        """The NLI head on precomputed embeddings u, v [n, hidden] -> [n, num_labels]."""
        if not self.has_classifier:
            raise ValueError("this model has no trained NLI classifier")
        probs, temperature = [], np.float32(self.temperature)
        for start in range(0, len(u), batch_size):
            rows = slice(start, start + batch_size)
            n = len(u[rows])
            padded = 1 << max(0, int(np.ceil(np.log2(n))))
            pu = np.zeros((padded, u.shape[1]), np.float32)
            pv = np.zeros_like(pu)
            pu[:n], pv[:n] = u[rows], v[rows]
            probs.append(np.asarray(self._probabilities_fn(self.params, pu, pv, temperature))[:n])
        return np.concatenate(probs) if probs else np.zeros((0, len(self.label_names)))

    def classify(
        self, premise: str | Sequence[str], hypothesis: str | Sequence[str]
    ) -> dict[str, float] | list[dict[str, float]]:
        """{label: probability} for a pair, or a list of them for lists of pairs."""
        single = _pairing(premise, hypothesis, "premises", "hypotheses")
        premises = [premise] if single else list(premise)
        hypotheses = [hypothesis] if single else list(hypothesis)
        probs = self.predict_proba(premises, hypotheses)
        results = [{name: float(p) for name, p in zip(self.label_names, row)} for row in probs]
        return results[0] if single else results

    def __repr__(self) -> str:
        return f"SentenceModel({json.dumps(self.describe())})"


def _pairing(first, second, first_name: str, second_name: str) -> bool:
    """True for two strings (one pair), False for two sequences (pairs row by row). A string
    with a sequence is an error: a string is a sequence too, and pairing it would pair its
    characters."""
    if isinstance(first, str) != isinstance(second, str):
        raise TypeError(
            f"pass two strings (one pair) or two lists of strings, not a string and a "
            f"{type(second if isinstance(first, str) else first).__name__} "
            f"({first_name} / {second_name})"
        )
    return isinstance(first, str)


def cosine_rows(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosine similarity of u and v [n, dim], row by row."""
    norms = np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-12)
    return (u * v).sum(axis=1) / norms


__all__ = ["SentenceModel", "EmptyTextError"]
