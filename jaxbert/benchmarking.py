"""Benchmarks: training-step, input-pipeline, fine-tuning and serving throughput.

Each `bench_<name>(...)` is a generator of records (plain dicts), one per measurement;
`scripts/benchmark.py` prints each as a JSON line merged with `environment()` (host, load
average, backend, devices). Timings are steady state: compilation and warm-up steps run before
the clock starts, and the device is synchronised (`jax.block_until_ready`) before it stops.
Peers (sentence-transformers) run in the same process on the same data, so a ratio compares
like with like on one machine at one load.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import gzip
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbert import checkpoint, configs, finetune, pretrain, train
from jaxbert.data import nli, sources
from jaxbert.data.corpus import prepare_corpus
from jaxbert.data.pair_batches import PairBatches, TokenizedPairs
from jaxbert.data.pretraining import MaskingConfig, PretrainingBatches
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import SIZES, BertConfig, BertForPreTraining, padded_vocab_size
from jaxbert.sbert import SentenceBert
from jaxbert.serve import SentenceModel

# The peer scripts (peer_st.py, bench_common.py), used when present.
PEER_DIR = os.environ.get("JAXBERT_PEER_DIR", os.path.join("..", "shared", "bench"))

# ----------------------------------------------------------------------------- measuring


def environment() -> dict:
    """Where and under what load a record was measured."""
    devices = jax.devices()
    return dict(
        host=f"{os.cpu_count()} cpu",
        loadavg=[round(x, 2) for x in os.getloadavg()],
        backend=jax.default_backend(),
        device=devices[0].device_kind,
        devices=len(devices),
        jax=jax.__version__,
    )


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def device_peak_gib() -> float | None:
    """Peak bytes in use on the first device (GPU/TPU); None where the backend has no stats."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**30, 3)


def latency_summary(seconds: list[float]) -> dict:
    ms = 1e3 * np.asarray(seconds)
    return dict(
        latency_ms_p50=round(float(np.percentile(ms, 50)), 2),
        latency_ms_p95=round(float(np.percentile(ms, 95)), 2),
        per_s=round(len(ms) / (ms.sum() / 1e3), 1),
    )


def steady_state(step, state, batches, *, warmup: int, steps: int):
    """Runs `warmup`, then `steps` calls of `state, metrics = step(state, next(batches))`.

    Returns (state, metrics, warm-up seconds, seconds of the timed steps). The device is
    synchronised before each clock read, and after every step on simulated CPU devices, where
    back-to-back collectives can deadlock (NOTES.md); never per step on accelerators.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    block_each = jax.default_backend() == "cpu" and jax.device_count() > 1

    def run(state, count):
        metrics = None
        for _ in range(count):
            state, metrics = step(state, next(batches))
            if block_each:
                jax.block_until_ready(metrics)
        return jax.block_until_ready((state, metrics))

    start = time.perf_counter()
    state, metrics = run(state, warmup)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    state, metrics = run(state, steps)
    return state, metrics, warmup_s, time.perf_counter() - start


def _split(value: str) -> list[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()]


# Kernel-name patterns -> the kind of work, for the profile summary (first match wins).
OP_KINDS = (
    ("attention", ("cudnn", "fmha", "flash", "attention", "sdpa")),
    ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "cublas", "wgmma", "dot", "matmul")),
    ("rng", ("rng", "philox", "threefry", "random")),
    ("reduce", ("reduce", "reduction")),
    ("copy/transpose", ("copy", "transpose", "memcpy", "memset")),
    ("scatter/gather", ("scatter", "gather")),
)


def op_kind(name: str) -> str:
    lower = name.lower()
    for kind, patterns in OP_KINDS:
        if any(p in lower for p in patterns):
            return kind
    return "elementwise/other fusion"


def profile_summary(trace_dir: str, steps: int, top: int = 15) -> dict:
    """Where device time goes in a `jax.profiler.trace` of `steps` steps: milliseconds per step
    by kernel (the top `top`) and by kind of op (`op_kind`).

    Reads the trace's `*.trace.json.gz`. Kernels are the events of the device processes'
    stream lines (`/device:GPU:0` ... `Stream #N`), which are what the chip ran; on CPU, where
    no device process exists, the XLA thunks on the host's XLA threads stand in.
    """
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
    if not paths:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}")
    with gzip.open(paths[-1], "rt") as f:
        events = json.load(f)["traceEvents"]
    processes, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[e["pid"], e["tid"]] = e["args"]["name"]

    def on_device(e):
        process, thread = processes.get(e["pid"], ""), threads.get((e["pid"], e.get("tid")), "")
        return process.startswith("/device:") and thread.lower().startswith("stream")

    def on_cpu_xla(e):  # thunks, not the executor/thread-pool spans that enclose them
        thread = threads.get((e["pid"], e.get("tid")), "")
        return ("XLAEigen" in thread or "XLACpu" in thread) and "::" not in e["name"]

    spans = [e for e in events if e.get("ph") == "X"]
    kernels = [e for e in spans if on_device(e)] or [e for e in spans if on_cpu_xla(e)]
    by_name, by_kind = {}, {}
    for e in kernels:
        by_name[e["name"]] = by_name.get(e["name"], 0.0) + e["dur"]
        kind = op_kind(e["name"])
        by_kind[kind] = by_kind.get(kind, 0.0) + e["dur"]
    total = sum(by_name.values()) or 1.0

    def per_step(us):
        return round(us / 1e3 / steps, 3)

    ranked = sorted(by_name.items(), key=lambda kv: -kv[1])[:top]
    return dict(
        kernel_ms_per_step=per_step(total),
        kernels_per_step=round(len(kernels) / steps, 1),
        by_kind={
            k: dict(ms=per_step(v), share=round(v / total, 3))
            for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])
        },
        top=[
            dict(name=name[:120], kind=op_kind(name), ms=per_step(us), share=round(us / total, 3))
            for name, us in ranked
        ],
    )


# ----------------------------------------------------------------------------- FLOPs


def model_flops_per_seq(num_layers, hidden, intermediate, vocab, seq_len, num_masked) -> float:
    """Training FLOPs per sequence (forward + backward = 3 x forward) that the model needs.

    The same formula as `model_flops_per_seq` in ../shared/bench/bench_common.py, which the peer
    benchmarks use, so MFU compares like for like: dense matmuls and attention scores per token
    and layer, the MLM head (transform + tied decoder) only at the masked positions, and the
    pooler + NSP head. `vocab` is the tokenizer's vocabulary (padding rows are not useful work).
    """
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = 2 * 2 * seq_len * hidden  # QK^T and AV, per token per layer
    encoder = seq_len * num_layers * (per_token_layer + attention)
    head = num_masked * 2 * (hidden * hidden + hidden * vocab)
    pooler = 2 * (hidden * hidden + 2 * hidden)
    return 3 * (encoder + head + pooler)


# ----------------------------------------------------------------------------- pretraining


def random_pretraining_batch(rng, batch_size, seq_len, vocab_size, max_predictions) -> dict:
    """A batch like `PretrainingBatches`' with random tokens and no padding (the peers' case):
    15 % of the positions masked (as the pipeline does for a full-length pair)."""
    num_masked = min(max_predictions, max(1, round(0.15 * (seq_len - 3))))
    input_ids = rng.integers(5, vocab_size, (batch_size, seq_len)).astype(np.int32)
    segment_ids = np.zeros_like(input_ids)
    segment_ids[:, seq_len // 2 :] = 1
    positions = np.zeros((batch_size, max_predictions), np.int32)
    for row in range(batch_size):
        positions[row, :num_masked] = np.sort(
            rng.choice(np.arange(1, seq_len - 1), num_masked, replace=False)
        )
    weights = np.zeros((batch_size, max_predictions), np.float32)
    weights[:, :num_masked] = 1.0
    return dict(
        input_ids=input_ids,
        segment_ids=segment_ids,
        attention_mask=np.ones_like(input_ids),
        masked_lm_positions=positions,
        masked_lm_ids=np.take_along_axis(input_ids, positions, axis=1) * (weights > 0),
        masked_lm_weights=weights,
        next_sentence_labels=rng.integers(0, 2, batch_size).astype(np.int32),
    )


def corpus_pretraining_batches(
    files, vocab, batch_size, seq_len, max_predictions, nsp, count, *, max_docs, cache_dir, seed
) -> tuple[list[dict], int]:
    """`count` real batches from the pretraining pipeline over local files, and the vocab size."""
    tokenizer = BertTokenizer.from_vocab(vocab)
    spec = dict(files=files, text_field="text", max_docs=max_docs)
    corpus, _ = prepare_corpus(
        lambda: sources.iter_documents(**spec), tokenizer, cache_dir, key=json.dumps(spec)
    )
    batches = PretrainingBatches(
        corpus,
        tokenizer,
        batch_size=batch_size,
        max_len=seq_len,
        masking=MaskingConfig(max_predictions=max_predictions),
        nsp=nsp,
        seed=seed,
    )
    return [next(batches) for _ in range(count)], tokenizer.vocab_size


def bench_pretrain(
    *,
    size="mini",
    batch_size=32,
    seq_len=128,
    dtype="float32",
    attention="xla",
    data="random",
    files="",
    vocab="",
    vocab_size=30522,
    max_predictions=20,
    nsp=True,
    moment_dtype="float32",
    grad_accum=1,
    warmup=3,
    steps=10,
    peak_tflops=0.0,
    dropout_rng="threefry2x32",
    profile="",
    max_docs=2000,
    cache_dir=".cache/jaxbert",
    seed=0,
) -> Iterator[dict]:
    """Steps/s of the real jitted pretraining step (`train.make_train_step` over the pretraining
    loss, state donated, batch sharded on the mesh) for each size x attention x dropout_rng
    (comma lists). With `profile`, 3 more steps are traced there and summarised
    (`profile_summary`)."""
    rng = np.random.default_rng(seed)
    count = max(1, min(warmup + steps, 8))  # distinct batches, cycled
    if data == "random":
        host_batches = [
            random_pretraining_batch(rng, batch_size, seq_len, vocab_size, max_predictions)
            for _ in range(count)
        ]
    elif data == "corpus":
        if not (files and vocab):
            raise ValueError("--data corpus needs --files and --vocab")
        host_batches, vocab_size = corpus_pretraining_batches(
            files, vocab, batch_size, seq_len, max_predictions, nsp, count,
            max_docs=max_docs, cache_dir=cache_dir, seed=seed,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown data {data!r}; choose random or corpus")
    mesh = train.make_mesh()
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    device_batches = [train.shard_batch(b, sharded) for b in host_batches]
    num_masked = float(np.mean([b["masked_lm_weights"].sum() / batch_size for b in host_batches]))
    real_tokens = float(np.mean([b["attention_mask"].sum() for b in host_batches]))
    optim = configs.pretrain_config().optim
    optim.moment_dtype, optim.grad_accum = moment_dtype, grad_accum
    tx, _, _ = train.make_optimizer(optim, total_steps=100_000)
    example = {k: v[:1] for k, v in host_batches[0].items()}
    runs = [(s, a, r) for s in _split(size) for a in _split(attention) for r in _split(dropout_rng)]
    for size_name, impl, rng_impl in runs:
        step_rng = train.dropout_key(jax.random.key(seed + 1), rng_impl)
        config = BertConfig.from_size(
            size_name,
            vocab_size=padded_vocab_size(vocab_size, 128),
            max_position_embeddings=max(512, seq_len),
            dtype=dtype,
            attention_impl=impl,
        )
        model = BertForPreTraining(config)

        def init_state(key, model=model):
            inputs = ("input_ids", "segment_ids", "attention_mask", "masked_lm_positions")
            params = model.init(key, *(example[k] for k in inputs))["params"]
            return train.create_state(params, tx, None)

        state = jax.jit(init_state, out_shardings=replicated)(jax.random.key(seed))
        step = jax.jit(
            train.make_train_step(
                pretrain.pretraining_loss_fn(model, nsp), tx, grad_accum=grad_accum
            ),
            in_shardings=(replicated, sharded, replicated),
            out_shardings=(replicated, replicated),
            donate_argnums=(0,),
        )
        start = time.perf_counter()
        compiled = step.lower(state, device_batches[0], step_rng).compile()
        compile_s = time.perf_counter() - start
        memory = compiled.memory_analysis()
        batches = itertools.cycle(device_batches)

        def step_fn(state, batch, compiled=compiled, step_rng=step_rng):
            return compiled(state, batch, step_rng)

        state, metrics, warmup_s, elapsed = steady_state(
            step_fn, state, batches, warmup=warmup, steps=steps
        )
        trace_dir = os.path.join(profile, f"{size_name}_{impl}_{rng_impl}") if profile else None
        if trace_dir:
            with jax.profiler.trace(trace_dir):
                state = steady_state(step_fn, state, batches, warmup=0, steps=3)[0]
            summary = profile_summary(trace_dir, steps=3)
        seq_per_s = steps * batch_size / elapsed
        flops = model_flops_per_seq(
            config.num_layers,
            config.hidden_size,
            config.intermediate_size,
            vocab_size,
            seq_len,
            num_masked,
        )
        tflops = flops * seq_per_s / 1e12
        if impl == "cudnn" and not (jax.default_backend() == "gpu" and dtype != "float32"):
            impl = "xla (cudnn needs a GPU and 16-bit compute)"
        step_bytes = (
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
        yield dict(
            bench="pretrain",
            size=size_name,
            batch=batch_size,
            seq=seq_len,
            dtype=dtype,
            attention=impl,
            dropout_rng=rng_impl,
            data=data,
            nsp=nsp,
            moment_dtype=moment_dtype,
            grad_accum=grad_accum,
            steps=steps,
            step_ms=round(1e3 * elapsed / steps, 2),
            seq_per_s=round(seq_per_s, 1),
            tokens_per_s=round(seq_per_s * seq_len),
            real_tokens_per_s=round(real_tokens * steps / elapsed),
            masked_per_seq=round(num_masked, 2),
            model_tflops=round(tflops, 3),
            mfu=round(tflops / peak_tflops, 4) if peak_tflops else None,
            compile_s=round(compile_s, 2),
            warmup_s=round(warmup_s, 2),
            peak_device_memory_gib=device_peak_gib(),
            xla_step_memory_gib=round(step_bytes / 2**30, 3),
            peak_rss_gib=peak_rss_gib(),
            loss=round(float(metrics["loss"]), 4),
            profile=trace_dir,
            **({"profile_summary": summary} if trace_dir else {}),
        )
        del state, compiled, step  # free the device memory before the next configuration


# ----------------------------------------------------------------------------- input pipeline


def _tokenizer(vocab: str = "", tokenizer_dir: str = "") -> BertTokenizer:
    if vocab:
        return BertTokenizer.from_vocab(vocab)
    if tokenizer_dir:
        return BertTokenizer.load(tokenizer_dir)
    raise ValueError("pass --vocab (a WordPiece vocab.txt) or --tokenizer-dir")


def _with_target(record: dict, rate: float, target: float) -> dict:
    if target:
        record.update(target_per_s=target, ratio_to_target=round(rate / target, 2))
    return record


def bench_input(
    *,
    files="",
    name="",
    text_field="text",
    max_docs=0,
    vocab="",
    tokenizer_dir="",
    cache_dir=".cache/jaxbert",
    batch_size=256,
    max_len=128,
    nsp="both",
    whole_word_mask=False,
    seconds=10.0,
    seed=0,
    target=0.0,
) -> Iterator[dict]:
    """Corpus build (or cache open) time, then steady-state `PretrainingBatches` throughput on
    one host thread (the training loop's prefetch thread does the same work)."""
    tokenizer = _tokenizer(vocab, tokenizer_dir)
    spec = dict(name=name, files=files, text_field=text_field, max_docs=max_docs)
    start = time.perf_counter()
    corpus, _ = prepare_corpus(
        lambda: sources.iter_documents(**spec),
        tokenizer,
        cache_dir,
        key=json.dumps(spec, sort_keys=True),
        val_documents=0,
    )
    yield dict(
        bench="input_corpus",
        seconds=round(time.perf_counter() - start, 2),
        build_seconds=corpus.meta.get("build_seconds"),  # of the build that made the cache
        documents=corpus.num_documents,
        sentences=corpus.num_sentences,
        tokens=corpus.num_tokens,
        cache=str(corpus.directory),
    )
    for use_nsp in {"true": [True], "false": [False], "both": [True, False]}[nsp]:
        batches = PretrainingBatches(
            corpus,
            tokenizer,
            batch_size=batch_size,
            max_len=max_len,
            masking=MaskingConfig(whole_word_mask=whole_word_mask),
            nsp=use_nsp,
            seed=seed,
        )
        start = time.perf_counter()
        next(batches)  # plans the first epoch
        plan_seconds = time.perf_counter() - start
        num_batches, real_tokens, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            real_tokens += int(next(batches)["attention_mask"].sum())
            num_batches += 1
        elapsed = time.perf_counter() - start
        rate = num_batches * batch_size / elapsed
        yield _with_target(
            dict(
                bench="input_pretrain",
                sequences_per_s=round(rate),
                tokens_per_s=round(rate * max_len),
                real_tokens_per_s=round(real_tokens / elapsed),
                first_batch_s=round(plan_seconds, 3),
                epochs_seen=batches.state()["epoch"] + 1,
                batch_size=batch_size,
                max_len=max_len,
                nsp=use_nsp,
                whole_word_mask=whole_word_mask,
            ),
            rate,
            target,
        )


def bench_input_pairs(
    *,
    pairs="snli_train_subset",
    data_root="",
    vocab="",
    tokenizer_dir="",
    batch_size=64,
    buckets="16,32,64",
    max_len=64,
    seconds=10.0,
    seed=0,
    target=0.0,
) -> Iterator[dict]:
    """Reading + tokenizing an NLI set, then steady-state `PairBatches` pairs/s and padding."""
    tokenizer = _tokenizer(vocab, tokenizer_dir)
    start = time.perf_counter()
    dataset = nli.read_pairs(nli.resolve(pairs, root=data_root or None))
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    tokenized = TokenizedPairs.build(dataset, tokenizer, max_len)
    tokenize_s = time.perf_counter() - start
    batches = PairBatches(
        tokenized,
        batch_size=batch_size,
        buckets=[int(b) for b in _split(buckets)],
        seed=seed,
        pad_id=tokenizer.pad_id,
    )
    next(batches)  # plans the first epoch
    num_batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(batches)
        num_batches += 1
    elapsed = time.perf_counter() - start
    rate = num_batches * batch_size / elapsed
    yield _with_target(
        dict(
            bench="input_pairs",
            pairs=len(dataset),
            read_pairs_per_s=round(len(dataset) / read_s),
            tokenize_pairs_per_s=round(len(dataset) / tokenize_s),
            pairs_per_s=round(rate),
            padding_fraction=round(batches.padding_fraction(), 4),
            batch_size=batch_size,
            buckets=buckets,
            max_len=max_len,
        ),
        rate,
        target,
    )


# ----------------------------------------------------------------------------- fine-tuning


def sentence_encoder(model: str, vocab: str = "", *, dtype="float32", attention="xla", seed=0):
    """(SentenceBert with an NLI head, params, tokenizer): a named size with random weights and
    the tokenizer of `vocab`, or the encoder of a run directory / `hf:<dir>`."""
    if model in SIZES:
        if not vocab:
            raise ValueError(f"a random {model!r} model needs --vocab (a WordPiece vocab.txt)")
        tokenizer = BertTokenizer.from_vocab(vocab)
        config = BertConfig.from_size(
            model,
            vocab_size=padded_vocab_size(tokenizer.vocab_size, 128),
            dtype=dtype,
            attention_impl=attention,
        )
        encoder = None
    else:
        loaded, tokenizer, weights = checkpoint.load_encoder(model)
        config = BertConfig.from_dict(dict(loaded.to_dict(), dtype=dtype, attention_impl=attention))
        encoder = weights["bert"]
    module = SentenceBert(config, num_labels=len(nli.NLI_LABELS))
    ids = jnp.zeros((1, 8), jnp.int32)
    params = module.init(jax.random.key(seed), ids, jnp.ones_like(ids))["params"]
    if encoder is not None:
        params = dict(params, bert=jax.tree.map(jnp.asarray, encoder))
    return module, params, tokenizer


def _peer_st_model(directory: str):
    """A sentence-transformers model from `directory` on the GPU if torch has one, built the way
    ../shared/bench/peer_st.py builds it when that script is present."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if os.path.isfile(os.path.join(PEER_DIR, "peer_st.py")):
        import argparse

        if os.path.abspath(PEER_DIR) not in sys.path:
            sys.path.insert(0, os.path.abspath(PEER_DIR))
        import peer_st

        return peer_st.build_model(argparse.Namespace(model=directory), device), device
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(directory, device=device), device


def _export_for_peer(module: SentenceBert, params, tokenizer, max_len: int, directory: str):
    from jaxbert import hf

    hf.export_pretrained(
        directory,
        config=module.config,
        params={"bert": jax.device_get(params["bert"])},
        tokenizer=tokenizer,
        pooling=module.pooling,
        normalize=module.normalize,
        max_seq_length=max_len,
    )
    return directory


def bench_finetune(
    *,
    model="small",
    vocab="",
    data="snli_train_subset",
    data_root="",
    batch_size=64,
    buckets="16,32,64",
    max_len=64,
    dtype="float32",
    attention="xla",
    max_pairs=0,
    dropout_rng="threefry2x32",
    warmup=3,
    steps=20,
    peer=False,
    seed=0,
) -> Iterator[dict]:
    """SBERT softmax-objective training pairs/s through the real step and input pipeline
    (`PairBatches` -> prefetch thread -> sharded batch -> jitted step, one compile per bucket);
    with `peer`, sentence-transformers' SoftmaxLoss loop on the same weights and pairs."""
    module, params, tokenizer = sentence_encoder(
        model, vocab, dtype=dtype, attention=attention, seed=seed
    )
    dataset = nli.read_pairs(nli.resolve(data, root=data_root or None), max_rows=max_pairs)
    bucket_list = sorted(int(b) for b in _split(buckets))
    max_len = min(max_len, bucket_list[-1])
    start = time.perf_counter()
    tokenized = TokenizedPairs.build(dataset, tokenizer, max_len)
    tokenize_s = time.perf_counter() - start
    batches = PairBatches(
        tokenized, batch_size=batch_size, buckets=bucket_list, seed=seed, pad_id=tokenizer.pad_id
    )
    mesh = train.make_mesh()
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    tx, _, _ = train.make_optimizer(configs.finetune_config().optim, total_steps=100_000)
    initial = jax.device_get(params)
    state = jax.jit(lambda p: train.create_state(p, tx, None), out_shardings=replicated)(params)
    step = jax.jit(
        train.make_train_step(finetune.make_loss_fn(module, "softmax", 20.0), tx),
        in_shardings=(replicated, sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    step_rng = train.dropout_key(jax.random.key(seed + 1), dropout_rng)
    example = batches.make_batch(batches.epoch_plan(0)[0])

    def abstract(length):
        return {
            k: jax.ShapeDtypeStruct(
                v.shape[:1] + (length,) * (v.ndim - 1), v.dtype, sharding=sharded
            )
            for k, v in example.items()
        }

    start = time.perf_counter()
    compiled = {n: step.lower(state, abstract(n), step_rng).compile() for n in bucket_list}
    compile_s = time.perf_counter() - start
    tokens = []  # real tokens of each batch taken

    def count_tokens(batch):
        return int(batch["attention_mask_a"].sum() + batch["attention_mask_b"].sum())

    def device_batches():
        stream = train.prefetch(batches, lambda b: (train.shard_batch(b, sharded), count_tokens(b)))
        for batch, batch_tokens in stream:
            tokens.append(batch_tokens)
            yield batch

    def step_fn(state, batch):
        return compiled[batch["input_ids_a"].shape[1]](state, batch, step_rng)

    stream = device_batches()
    state, metrics, _, elapsed = steady_state(step_fn, state, stream, warmup=warmup, steps=steps)
    stream.close()
    del state
    config = module.config
    yield dict(
        bench="finetune",
        impl="jaxbert",
        model=model,
        shape=f"L{config.num_layers}-H{config.hidden_size}",
        data=dataset.name,
        pairs=len(dataset),
        batch=batch_size,
        buckets=",".join(map(str, bucket_list)),
        dtype=dtype,
        attention=attention,
        dropout_rng=dropout_rng,
        steps=steps,
        pairs_per_s=round(steps * batch_size / elapsed, 1),
        real_tokens_per_s=round(sum(tokens[warmup:]) / elapsed),
        padding_fraction=round(batches.padding_fraction(), 4),
        tokenize_s=round(tokenize_s, 2),
        compile_s=round(compile_s, 2),
        loss=round(float(metrics["loss"]), 4),
        peak_device_memory_gib=device_peak_gib(),
        peak_rss_gib=peak_rss_gib(),
    )
    if peer:
        with tempfile.TemporaryDirectory() as directory:
            _export_for_peer(module, initial, tokenizer, max_len, directory)
            yield _peer_st_finetune(directory, dataset, batch_size, warmup, steps, seed)


def _peer_st_finetune(directory, dataset, batch_size, warmup, steps, seed) -> dict:
    """peer_st.py's loop: tokenize inside the step, SoftmaxLoss over [u, v, |u-v|], AdamW;
    bf16 autocast on a GPU."""
    import torch
    from sentence_transformers import losses

    st_model, device = _peer_st_model(directory)
    dimension = getattr(st_model, "get_embedding_dimension", None) or (
        st_model.get_sentence_embedding_dimension  # sentence-transformers < 6
    )
    loss = losses.SoftmaxLoss(st_model, dimension(), num_labels=3)
    loss = loss.to(device)
    optimizer = torch.optim.AdamW(loss.parameters(), lr=2e-5)
    rng = np.random.default_rng(seed)

    def step(rows):
        features = [
            st_model.tokenize([column[i] for i in rows])
            for column in (dataset.sentence1, dataset.sentence2)
        ]
        features = [{k: v.to(device) for k, v in f.items() if torch.is_tensor(v)} for f in features]
        labels = torch.tensor(dataset.labels[rows].astype(np.int64), device=device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            value = loss(features, labels)
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return value

    plan = [rng.choice(len(dataset), batch_size, replace=False) for _ in range(warmup + steps)]
    for rows in plan[:warmup]:
        step(rows)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for rows in plan[warmup:]:
        value = step(rows)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return dict(
        bench="finetune",
        impl="sentence-transformers",
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        batch=batch_size,
        steps=steps,
        pairs_per_s=round(steps * batch_size / elapsed, 1),
        loss=round(float(value.detach()), 4),
        bf16=device == "cuda",
    )


def write_pairs_file(*, source="snli_train_subset", data_root="", out, num_pairs=1_000_000):
    """Writes `num_pairs` NLI pairs (a dataset repeated) as csv sentence1,sentence2,label."""
    dataset = nli.read_pairs(nli.resolve(source, root=data_root or None))
    start = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence1", "sentence2", "label"])
        for i in range(num_pairs):
            j = i % len(dataset)
            label = dataset.label_names[dataset.labels[j]]
            writer.writerow([dataset.sentence1[j], dataset.sentence2[j], label])
    yield dict(
        bench="make_pairs",
        path=out,
        pairs=num_pairs,
        source=dataset.name,
        megabytes=round(os.path.getsize(out) / 2**20, 1),
        seconds=round(time.perf_counter() - start, 2),
    )


def bench_finetune_memory(
    *,
    pairs_file,
    model="tiny",
    vocab="",
    data_root="",
    eval_sts="stsb_dev",
    batch_size=64,
    buckets="16,32,64",
    max_len=64,
    max_steps=5,
    seed=0,
) -> Iterator[dict]:
    """Peak host RSS of a real fine-tuning run (`finetune.finetune` in a temp directory) on
    `pairs_file`: reading, tokenizing and batching every pair, then `max_steps` steps and one
    small STS evaluation."""
    rss_before = peak_rss_gib()
    config = configs.finetune_config()
    config.seed = seed
    config.model.size = model
    config.tokenizer.vocab_file = vocab
    config.data.update(dict(train=pairs_file, data_root=data_root, eval_nli="", eval_sts=eval_sts))
    config.data.update(dict(max_eval_pairs=200, max_len=max_len, buckets=buckets))
    config.train.update(dict(batch_size=batch_size, num_steps=max_steps, log_every=max_steps))
    config.train.update(dict(eval_every=max_steps, checkpoint_every=max_steps, eval_at_start=False))
    start = time.perf_counter()
    # The loop's progress lines go to stderr: stdout carries only the JSON records.
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(sys.stderr):
        summary = finetune.finetune(config, run_dir)
    with open(pairs_file, "rb") as f:
        lines = sum(1 for _ in f)
    yield dict(
        bench="finetune_memory",
        pairs_file=pairs_file,
        file_lines=lines,
        model=model,
        batch=batch_size,
        steps=summary["steps"],
        seconds=round(time.perf_counter() - start, 1),
        rss_after_imports_gib=rss_before,
        peak_rss_gib=peak_rss_gib(),
    )


# ----------------------------------------------------------------------------- serving


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
                _export_for_peer(ours.module, ours.params, ours.tokenizer, ours.max_len, directory)
            sides["sentence-transformers"] = _peer_st_model(directory)[0].encode
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


# ----------------------------------------------------------------------------- report


def report(records: list[dict]) -> str:
    """Markdown tables from benchmark JSON lines, ours and the peers' (../shared/bench) mixed:
    pretraining seq/s and MFU with the ratio to the torch.compile peer of the same size, SBERT
    fine-tuning pairs/s against sentence-transformers, and each profile's kinds of work."""
    lines = []
    pretrain = [r for r in records if r.get("bench") == "pretrain" or "peer" in r and "mfu" in r]
    compiled = {
        r["preset"]: r["seq_per_s"]
        for r in pretrain
        if r.get("peer", "").startswith("hf-torch") and r.get("mode") == "compile"
    }
    if pretrain:
        lines += [
            "| impl | size | batch x seq | attention | dropout rng | step ms | seq/s | MFU | "
            "vs torch.compile | peak GiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in pretrain:
            size = r.get("size", r.get("preset"))
            impl = "jaxbert" if r.get("bench") else f"{r['peer']} {r.get('mode', '')}".strip()
            ratio = f"{r['seq_per_s'] / compiled[size]:.2f}x" if size in compiled else ""
            mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else ""
            memory = r.get("peak_device_memory_gib", r.get("peak_mem_gib"))
            lines.append(
                f"| {impl} | {size} | {r['batch']} x {r['seq']} | {r.get('attention', '')} | "
                f"{r.get('dropout_rng', '')} | {r['step_ms']} | {r['seq_per_s']:,.0f} | {mfu} | "
                f"{ratio} | {memory if memory is not None else ''} |"
            )
    finetune = [r for r in records if r.get("bench") == "finetune" or r.get("job") == "finetune"]
    if finetune:
        lines += ["", "| impl | model | batch | pairs/s |", "| --- | --- | --- | --- |"]
        for r in finetune:  # ours, our in-process peer (impl=...), ../shared/bench's (peer=...)
            impl = r.get("peer") or r.get("impl") or "jaxbert"
            model = r.get("model", finetune[0].get("model", ""))
            lines.append(f"| {impl} | {model} | {r['batch']} | {r['pairs_per_s']:,.0f} |")
    for r in records:
        summary = r.get("profile_summary")
        if not summary:
            continue
        kinds = ", ".join(f"{k} {v['ms']} ms" for k, v in summary["by_kind"].items())
        lines += [
            "",
            f"profile {r['size']} {r['attention']} {r['dropout_rng']}: "
            f"{summary['kernel_ms_per_step']} ms of kernels per step ({kinds})",
        ]
        lines += [f"  {t['ms']:8.3f} ms  {t['kind']:<16} {t['name'][:90]}" for t in summary["top"]]
    return "\n".join(lines)
