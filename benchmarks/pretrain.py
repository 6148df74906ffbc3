"""Pretraining-step throughput: sequences/s, model FLOPs and MFU of the real jitted step."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks.common import (
    device_peak_gib,
    peak_rss_gib,
    split_list,
    steady_state,
)
from benchmarks.profiles import fusion_kinds, profile_summary
from jaxbert import configs, pretrain, train, update
from jaxbert.data import sources
from jaxbert.data.corpus import prepare_corpus
from jaxbert.data.masking import MaskingConfig
from jaxbert.data.pretraining import PretrainingBatches
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import BertConfig, BertForPreTraining, padded_vocab_size


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


def benchmark_model(size, vocab_size, seq_len, dtype, attention) -> BertForPreTraining:
    """The BERT with pretraining heads that the step benchmarks time: a named size, the vocab
    padded to a multiple of 128, positions for at least 512 tokens."""
    config = BertConfig.from_size(
        size,
        vocab_size=padded_vocab_size(vocab_size, 128),
        max_position_embeddings=max(512, seq_len),
        dtype=dtype,
        attention_impl=attention,
    )
    return BertForPreTraining(config)


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
    profile="",
    max_docs=2000,
    cache_dir=".cache/jaxbert",
    seed=0,
) -> Iterator[dict]:
    """Steps/s of the real jitted pretraining step (`update.make_train_step` over the pretraining
    loss, state donated, batch sharded on the mesh) for each size x attention (comma lists).
    With `profile`, 3 more steps are traced there and summarised (`profile_summary`)."""
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
    tx, _, _ = update.make_optimizer(optim, total_steps=100_000)
    example = {k: v[:1] for k, v in host_batches[0].items()}
    step_rng = jax.random.key(seed + 1)
    for size_name, impl in itertools.product(split_list(size), split_list(attention)):
        model = benchmark_model(size_name, vocab_size, seq_len, dtype, impl)
        config = model.config

        def init_state(key, model=model):
            inputs = ("input_ids", "segment_ids", "attention_mask", "masked_lm_positions")
            params = model.init(key, *(example[k] for k in inputs))["params"]
            return update.create_state(params, tx, None)

        state = jax.jit(init_state, out_shardings=replicated)(jax.random.key(seed))
        step = jax.jit(
            update.make_train_step(
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
        trace_dir = os.path.join(profile, f"{size_name}_{impl}") if profile else None
        if trace_dir:
            with jax.profiler.trace(trace_dir):
                state = steady_state(step_fn, state, batches, warmup=0, steps=3)[0]
            # XLA:CPU's thunks are named after their fusions, not the kernels they call: the
            # compiled HLO says which ones multiply matrices (GPU kernels' names say it).
            kinds = fusion_kinds(compiled.as_text())
            summary = profile_summary(trace_dir, steps=3, kinds=kinds)
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
