"""Serving speed: SentenceModel.encode / classify throughput and latency, beside the same
model quantised, sentence-transformers, and ONNX Runtime float32 / int8 (benchmarks/onnx_peer.py;
its packages are the `peers` extra, not jaxbert's)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

import jax
import numpy as np

from benchmarks.common import (
    ONNX_PEER_MODULES,
    SETTLE_S,
    export_for_peer,
    latency_summary,
    peer_st_model,
    require_peer,
    sentence_encoder,
    split_list,
    use_cpus,
)
from benchmarks.profiles import fusion_kinds, profile_summary
from jaxbert import evaluate
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


def _round(fn, items) -> float:
    """items/s of one call of fn(items)."""
    start = time.perf_counter()
    fn(items)
    return len(items) / (time.perf_counter() - start)


def _latencies(fn, items) -> list[float]:
    for item in items:  # warm-up: every shape compiled, caches filled
        fn(item)
    seconds = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        seconds.append(time.perf_counter() - start)
    return seconds


def _interleaved_latencies(sides: dict, items, chunk: int = 25) -> dict[str, list[float]]:
    """Seconds per item of each side's fn(item), the sides taking turns every `chunk` items,
    so a change in the machine's load hits them alike."""
    for fn in sides.values():
        for item in items:  # warm-up: every shape compiled, caches filled
            fn(item)
    seconds = {name: [] for name in sides}
    for start in range(0, len(items), chunk):
        for name, fn in sides.items():
            time.sleep(SETTLE_S)
            for item in items[start : start + chunk]:
                begin = time.perf_counter()
                fn(item)
                seconds[name].append(time.perf_counter() - begin)
    return seconds


def single_query_breakdown(model: SentenceModel, sentences) -> dict:
    """Where one sentence's `encode` goes: median ms of each stage over `sentences`, the stages
    taking turns sentence by sentence. `executable_*`: the compiled encoder alone on a padded
    input (dispatch and compute, awaited), at the fine length bucket a single query uses now and
    at the coarse one (powers of two) it used before; `jit_coarse`: the previous path, jax.jit's
    dispatch at the coarse bucket; `encode`: the whole call, the difference being Python."""
    model.encode(sentences[0])
    stages = {}
    for text in sentences:
        for name, call in _stages(model, text).items():
            call()  # compiles a new shape outside the clock
            start = time.perf_counter()
            call()
            stages.setdefault(name, []).append(time.perf_counter() - start)
    return {f"{name}_ms": round(1e3 * float(np.median(s)), 3) for name, s in stages.items()}


def call_cost(model: SentenceModel, lengths=(8, 16, 32, 64), calls: int = 50) -> dict:
    """What one compiled-encoder call costs at 1 and 2 rows: median ms at each length (the
    executable alone, awaited) and, per row count, a least-squares line ms = fixed + per_token
    x rows x length. `fixed_in_tokens`: a one-row call's fixed cost in tokens' worth, what
    packing a pair in one row (`SentenceModel.pair_embeddings`) saves over two calls."""
    lengths = [n for n in lengths if n <= model.max_len]
    record = {}
    for rows in (1, 2):
        ms = []
        for length in lengths:
            executable = model.compiled_encoder(rows, length)
            ids = np.full((rows, length), model.tokenizer.cls_id, np.int32)
            mask = np.ones((rows, length), np.int32)
            args = (model.encoder_params, ids, mask)

            def call(_, executable=executable, args=args):
                executable(*args).block_until_ready()

            seconds = _latencies(call, range(calls))
            ms.append(1e3 * float(np.median(seconds)))
        per_token, fixed = np.polyfit(rows * np.asarray(lengths, float), ms, 1)
        record[f"ms_{rows}_rows"] = dict(zip(map(str, lengths), np.round(ms, 3).tolist()))
        record[f"fixed_ms_{rows}_rows"] = round(float(fixed), 3)
        record[f"per_token_ms_{rows}_rows"] = round(float(per_token), 4)
    record["fixed_in_tokens"] = round(record["fixed_ms_1_rows"] / record["per_token_ms_1_rows"], 1)
    return record


def single_query_profile(model: SentenceModel, text: str, trace_dir: str, calls: int = 100):
    """Where the compiled encoder's time goes on one sentence (`text`, padded to the length
    bucket a single query uses): a jax.profiler trace of `calls` calls, in ms per call by
    kernel and kind: "matmul" the dense layers, "attention" the heads' batched matmuls,
    "reduce" LayerNorm, softmax and activation-quantisation statistics (`fusion_kinds`)."""
    ids, _ = model.tokenize([text])
    input_ids, mask = model._padded(ids, np.array([len(ids[0])]), np.zeros(1, np.int64), 1)
    executable = model.compiled_encoder(*input_ids.shape)

    def call():
        return executable(model.encoder_params, input_ids, mask).block_until_ready()

    for _ in range(20):
        call()
    with jax.profiler.trace(trace_dir):
        for _ in range(calls):
            call()
    kinds = fusion_kinds(executable.as_text())
    summary = profile_summary(trace_dir, steps=calls, top=8, kinds=kinds)
    return dict(tokens=len(ids[0]), length=input_ids.shape[1], profile=trace_dir, **summary)


def _stages(model: SentenceModel, text: str) -> dict:
    ids, _ = model.tokenize([text])
    n = len(ids[0])
    lengths, order = np.array([n]), np.zeros(1, np.int64)
    fine = model._padded(ids, lengths, order, 1)
    length = next(b for b in model.coarse_buckets if b >= n or b == model.max_len)
    coarse = np.full((1, length), model.tokenizer.pad_id, np.int32), np.zeros((1, length), np.int32)
    coarse[0][0, :n], coarse[1][0, :n] = ids[0], 1
    return {
        "tokenize": lambda: model.tokenize([text]),
        "pad": lambda: model._padded(ids, lengths, order, 1),
        "executable_fine": lambda: model._embed_padded(*fine).block_until_ready(),
        "executable_coarse": lambda: model._embed_padded(*coarse).block_until_ready(),
        "jit_coarse": lambda: model._encode_fn(model.encoder_params, *coarse).block_until_ready(),
        "encode": lambda: model.encode([text], batch_size=1),
    }


def _spearman(encode, dataset) -> float:
    u, v = encode(dataset.sentence1), encode(dataset.sentence2)
    cosine = (u * v).sum(1) / np.maximum(
        np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-12
    )
    return round(100 * evaluate.spearman(cosine, dataset.labels), 2)


def _peer_list(peer) -> list[str]:
    """--peer: True (the flag alone: sentence-transformers) or "st,onnx" -> names."""
    if peer is True:
        return ["st"]
    names = split_list(peer or "")
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}; choose from {PEERS}")
    return names


PEERS = ("st", "onnx")
ST = "sentence-transformers"


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
    quantize="",
    quality="",
    profile="",
    cpus=0,
    seed=0,
) -> Iterator[dict]:
    """`SentenceModel.encode` sentences/s at `batch_size` (best of `rounds`) and single-sentence
    latency on real sentences (the first sentences of `data`), `classify` pairs/s and latency
    when the model has an NLI head.

    Every side runs in this process on the same sentences, its rounds and queries interleaved
    with ours: our float32 model; `quantize` ("int8,bfloat16"): the same model quantised
    (`SentenceModel(quantize=...)`); `peer` ("st", "onnx" or both): sentence-transformers'
    `encode` of the same weights, and ONNX Runtime float32 and int8 (benchmarks/onnx_peer.py).
    `encode-pair` records: the latency of a pair of sentences (`pairs` of `data`) embedded in
    one call, every side, and ours also as two one-sentence calls (how pairs ran before).
    `quality` (an STS set, e.g. stsb_dev) adds each side's Spearman x 100 on it. `profile` (a
    directory): our sides' single-query encoder traced there and summarised by kind of op
    (`single_query_profile`), on the sentence of median length. `cpus`: every side on that
    many cores, its thread pool sized to match (0: all; before JAX starts, `common.use_cpus`).
    """
    peers = _peer_list(peer)
    if "onnx" in peers:
        require_peer(ONNX_PEER_MODULES, "encode --peer onnx")
    threads = use_cpus(cpus) if cpus else 0  # 0: each peer's default
    ours = serving_model(model, vocab, max_len, seed)
    dataset = nli.read_pairs(nli.resolve(data, root=data_root or None))
    sentences = dataset.sentence1[:num_sentences]
    if len(sentences) < num_sentences:  # an STS set: both columns
        sentences = (dataset.sentence1 + dataset.sentence2)[:num_sentences]
    pairs = list(zip(dataset.sentence1, dataset.sentence2))[:queries]
    premises, hypotheses = [p for p, _ in pairs], [h for _, h in pairs]
    sides = {"jaxbert": ours.encode}
    quantized_models = {}
    for mode in split_list(quantize):
        quantized = SentenceModel(**dict(_arguments(ours), quantize=mode))
        quantized_models[f"jaxbert-{mode}"] = quantized
        sides[f"jaxbert-{mode}"] = quantized.encode
    with tempfile.TemporaryDirectory() as directory:
        folder = model[3:] if model.startswith("hf:") else os.path.join(directory, "model")
        if peers and not model.startswith("hf:"):  # the same weights, exported
            export_for_peer(ours.module, ours.params, ours.tokenizer, ours.max_len, folder)
        if "st" in peers:
            sides[ST] = peer_st_model(folder)[0].encode
            if threads:
                import torch

                torch.set_num_threads(threads)
        if "onnx" in peers:
            from benchmarks import onnx_peer

            sides.update(
                onnx_peer.onnx_encoders(ours, folder, os.path.join(directory, "onnx"), threads)
            )
        # Warm-up: compiles every (rows, length) shape of the set.
        warm = {name: np.asarray(e(sentences, batch_size=batch_size)) for name, e in sides.items()}
        rates = {name: [] for name in sides}
        for _ in range(rounds):  # interleaved, so a change in load hits every side alike
            for name, encode in sides.items():
                time.sleep(SETTLE_S)
                rates[name].append(
                    _round(lambda s, e=encode: e(s, batch_size=batch_size), sentences)
                )
        single = _interleaved_latencies(
            {name: lambda s, e=encode: e([s], batch_size=1) for name, encode in sides.items()},
            premises,
        )
        single = {name: latency_summary(seconds) for name, seconds in single.items()}
        # A pair query (what classify, similarity and the app run): both sentences in one
        # call on every side; ours also the way it ran before, two one-sentence calls.
        pair_sides = {
            name: lambda p, e=encode: e(list(p), batch_size=2) for name, encode in sides.items()
        }
        for name, model_ in [("jaxbert", ours), *quantized_models.items()]:
            pair_sides[f"{name} (two calls)"] = lambda p, m=model_: [m.encode([s], 1) for s in p]
        pair = _interleaved_latencies(pair_sides, pairs)
        scores = {}
        if quality:
            sts = nli.read_pairs(nli.resolve(quality, root=data_root or None))
            scores = {name: _spearman(encode, sts) for name, encode in sides.items()}
    info = dict(model=model, data=dataset.name)
    best = {name: float(np.max(r)) for name, r in rates.items()}
    for name in sides:
        many = dict(bench="encode", impl=name, **info, batch=batch_size, sentences=len(sentences))
        many.update(sentences_per_s=round(best[name], 1), rounds=[round(r) for r in rates[name]])
        one = dict(bench="encode", impl=name, **info, batch=1, queries=len(premises))
        one.update(single[name], sentences_per_s=single[name]["per_s"])
        del one["per_s"]
        if name in scores:
            many["sts_spearman"] = one["sts_spearman"] = scores[name]
            many["sts"] = one["sts"] = sts.name
        if name != "jaxbert":  # how far its embeddings are from our float32 ones
            cosine = (warm[name] * warm["jaxbert"]).sum(1) / np.maximum(
                np.linalg.norm(warm[name], axis=1) * np.linalg.norm(warm["jaxbert"], axis=1), 1e-12
            )
            many["min_cosine_vs_float32"] = round(float(cosine.min()), 5)
        if ST in sides and name == "jaxbert":
            many["ratio"] = round(best[name] / best[ST], 2)
            # Same model, same work: the embeddings must agree.
            difference = np.abs(warm[name] - warm[ST]).max()
            many["max_abs_diff_vs_peer"] = float(f"{difference:.2g}")
            one["ratio"] = round(single[name]["per_s"] / single[ST]["per_s"], 2)
        yield many
        yield one
    for name, seconds in pair.items():
        record = dict(bench="encode-pair", impl=name, **info, batch=2, queries=len(pairs))
        summary = latency_summary(seconds)
        yield dict(record, **summary, pairs_per_s=summary.pop("per_s"))
    for name, model_ in [("jaxbert", ours), *quantized_models.items()]:
        record = dict(bench="encode-breakdown", impl=name, **info, batch=1, queries=len(premises))
        yield dict(record, **single_query_breakdown(model_, premises))
        yield dict(bench="encode-call-cost", impl=name, **info, **call_cost(model_))
    if profile:
        by_length = sorted(premises, key=lambda text: len(ours.tokenize([text])[0]))
        median = by_length[len(by_length) // 2]
        for name, model_ in [("jaxbert", ours), *quantized_models.items()]:
            trace_dir = os.path.join(profile, name)
            record = dict(bench="encode-profile", impl=name, **info, batch=1)
            yield dict(record, **single_query_profile(model_, median, trace_dir))
    if not ours.has_classifier:
        yield dict(bench="classify", impl="jaxbert", **info, skipped="the model has no NLI head")
        return
    ours.classify(premises, hypotheses)
    rate = [_round(lambda _: ours.classify(premises, hypotheses), pairs) for _ in range(rounds)]
    many = dict(bench="classify", impl="jaxbert", **info, batch=64, pairs=len(pairs))
    yield dict(many, pairs_per_s=round(float(np.max(rate)), 1))
    one = latency_summary(_latencies(lambda pair: ours.classify(*pair), pairs))
    one["pairs_per_s"] = one.pop("per_s")
    yield dict(bench="classify", impl="jaxbert", **info, batch=1, queries=len(pairs), **one)


def _arguments(model: SentenceModel) -> dict:
    """The keyword arguments that rebuild `model` (float32)."""
    return dict(
        model_config=model.model_config,
        params=model.params,
        tokenizer=model.tokenizer,
        pooling=model.pooling,
        normalize=model.normalize,
        label_names=model.label_names,
        features=model.module.features,
        max_len=model.max_len,
        has_classifier=model.has_classifier,
        source=model.source,
        projection_dim=model.module.projection_dim,
        head_hidden=model.module.head_hidden,
    )
