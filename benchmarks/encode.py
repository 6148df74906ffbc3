"""Serving speed: SentenceModel.encode / classify throughput and latency."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator

import numpy as np

from benchmarks.common import (
    export_for_peer,
    latency_summary,
    peer_st_model,
    sentence_encoder,
)
from jaxbert.data import nli
from jaxbert.serve import SentenceModel


def serving_model(model: str, vocab: str = "", max_len: int = 128, seed: int = 0):
    """`random:<size>` (random weights and NLI head, tokenizer of `vocab`: for latency only),
    a run directory, or `hf:<dir>`."""
    if not model.startswith("random:"):
        return SentenceModel.load(model)
    module, params, tokenizer = sentence_encoder(model.split(":", 1)[1], vocab, seed=seed)
    return SentenceModel(
        model_config=module.config,
        params=params,
        tokenizer=tokenizer,
        label_names=nli.NLI_LABELS,
        max_len=max_len,
        has_classifier=True,
        source=model,
    )


def _rounds(fn, items) -> list[float]:
    """[items/s] of one call of fn(items)."""
    start = time.perf_counter()
    fn(items)
    return [len(items) / (time.perf_counter() - start)]


def _latencies(fn, items) -> list[float]:
    for item in items:  # warm-up: every shape compiled, caches filled
        fn(item)
    seconds = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_encode(
    *,
    model,
    vocab="",
    data="snli_dev",
    data_root="",
    num_sentences=1000,
    batch_size=64,
    queries=200,
    rounds=3,
    max_len=128,
    peer=False,
    seed=0,
) -> Iterator[dict]:
    """`SentenceModel.encode` sentences/s at `batch_size` and single-sentence latency on real
    sentences (the premises of `data`), `classify` pairs/s and latency when the model has an
    NLI head; with `peer`, sentence-transformers' `encode` of the same weights, its rounds
    interleaved with ours, and `ratio` (ours / peer) on our lines."""
    ours = serving_model(model, vocab, max_len, seed)
    dataset = nli.read_pairs(nli.resolve(data, root=data_root or None))
    sentences = dataset.sentence1[:num_sentences]
    pairs = list(zip(dataset.sentence1, dataset.sentence2))[:queries]
    premises, hypotheses = [p for p, _ in pairs], [h for _, h in pairs]
    sides = {"jaxbert": ours.encode}
    with tempfile.TemporaryDirectory() as directory:
        if peer:
            if model.startswith("hf:"):
                directory = model[3:]
            else:  # the same weights, exported
                export_for_peer(ours.module, ours.params, ours.tokenizer, ours.max_len, directory)
            sides["sentence-transformers"] = peer_st_model(directory)[0].encode
        # Warm-up: compiles every (rows, length) shape of the set.
        warm = {name: np.asarray(e(sentences, batch_size=batch_size)) for name, e in sides.items()}
        rates = {name: [] for name in sides}
        for _ in range(rounds):  # interleaved, so a change in load hits both sides alike
            for name, encode in sides.items():
                rates[name] += _rounds(lambda s, e=encode: e(s, batch_size=batch_size), sentences)
        single = {
            name: latency_summary(_latencies(lambda s, e=encode: e([s], batch_size=1), premises))
            for name, encode in sides.items()
        }
    info = dict(model=model, data=dataset.name)
    median = {name: float(np.median(r)) for name, r in rates.items()}
    for name in sides:
        many = dict(bench="encode", impl=name, **info, batch=batch_size, sentences=len(sentences))
        many.update(sentences_per_s=round(median[name], 1), rounds=[round(r) for r in rates[name]])
        one = dict(bench="encode", impl=name, **info, batch=1, queries=len(premises))
        one.update(single[name], sentences_per_s=single[name]["per_s"])
        del one["per_s"]
        if peer and name == "jaxbert":
            many["ratio"] = round(median[name] / median["sentence-transformers"], 2)
            # Same model, same work: the embeddings must agree.
            difference = np.abs(warm[name] - warm["sentence-transformers"]).max()
            many["max_abs_diff_vs_peer"] = float(f"{difference:.2g}")
            one["ratio"] = round(
                single[name]["per_s"] / single["sentence-transformers"]["per_s"], 2
            )
        yield many
        yield one
    if not ours.has_classifier:
        yield dict(bench="classify", impl="jaxbert", **info, skipped="the model has no NLI head")
        return
    ours.classify(premises, hypotheses)
    rate = [_rounds(lambda _: ours.classify(premises, hypotheses), pairs)[0] for _ in range(rounds)]
    many = dict(bench="classify", impl="jaxbert", **info, batch=64, pairs=len(pairs))
    yield dict(many, pairs_per_s=round(float(np.median(rate)), 1))
    one = latency_summary(_latencies(lambda pair: ours.classify(*pair), pairs))
    one["pairs_per_s"] = one.pop("per_s")
    yield dict(bench="classify", impl="jaxbert", **info, batch=1, queries=len(pairs), **one)
