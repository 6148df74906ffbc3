"""SBERT fine-tuning throughput (ours and sentence-transformers' loop) and host memory."""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import tempfile
import time
from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks.common import (
    DEFAULT_BUCKETS,
    device_peak_gib,
    export_for_peer,
    peak_rss_gib,
    peer_st_model,
    sentence_encoder,
    split_list,
    steady_state,
)
from jaxbert import configs, finetune, train, update
from jaxbert.data import nli
from jaxbert.data.pair_batches import PairBatches, TokenizedPairs


def bench_finetune(
    *,
    model="small",
    vocab="",
    data="snli_train_subset",
    data_root="",
    batch_size=64,
    buckets=DEFAULT_BUCKETS,
    max_len=64,
    dtype="float32",
    attention="xla",
    max_pairs=0,
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
    bucket_list = sorted(int(b) for b in split_list(buckets))
    max_len = min(max_len, bucket_list[-1])
    start = time.perf_counter()
    tokenized = TokenizedPairs.build(dataset, tokenizer, max_len)
    tokenize_s = time.perf_counter() - start
    batches = PairBatches(
        tokenized, batch_size=batch_size, buckets=bucket_list, seed=seed, pad_id=tokenizer.pad_id
    )
    mesh = train.make_mesh()
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    config = configs.finetune_config()  # the softmax objective, as sentence-transformers' peer
    tx, _, _ = update.make_optimizer(config.optim, total_steps=100_000)
    initial = jax.device_get(params)
    state = jax.jit(lambda p: update.create_state(p, tx, None), out_shardings=replicated)(params)
    step = jax.jit(
        update.make_train_step(finetune.make_loss_fn(module, config), tx),
        in_shardings=(replicated, sharded, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    step_rng = jax.random.key(seed + 1)
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
            export_for_peer(module, initial, tokenizer, max_len, directory)
            peer_record = _peer_st_finetune(directory, dataset, batch_size, warmup, steps, seed)
            yield dict(peer_record, model=model)


def _peer_st_finetune(directory, dataset, batch_size, warmup, steps, seed) -> dict:
    """peer_st.py's loop: tokenize inside the step, SoftmaxLoss over [u, v, |u-v|], AdamW;
    bf16 autocast on a GPU."""
    import torch
    from sentence_transformers import losses

    st_model, device = peer_st_model(directory)
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
    buckets=DEFAULT_BUCKETS,
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
