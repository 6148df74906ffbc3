"""Host input pipeline throughput: MLM + NSP batches and bucketed NLI pair batches."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from benchmarks.common import (
    DEFAULT_BUCKETS,
    split_list,
    tokenizer_from,
)
from jaxbert.data import nli, sources
from jaxbert.data.corpus import prepare_corpus
from jaxbert.data.masking import MaskingConfig
from jaxbert.data.pair_batches import PairBatches, TokenizedPairs
from jaxbert.data.pretraining import PretrainingBatches


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
    tokenizer = tokenizer_from(vocab, tokenizer_dir)
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
    buckets=DEFAULT_BUCKETS,
    max_len=64,
    seconds=10.0,
    seed=0,
    target=0.0,
) -> Iterator[dict]:
    """Reading + tokenizing an NLI set, then steady-state `PairBatches` pairs/s and padding."""
    tokenizer = tokenizer_from(vocab, tokenizer_dir)
    start = time.perf_counter()
    dataset = nli.read_pairs(nli.resolve(pairs, root=data_root or None))
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    tokenized = TokenizedPairs.build(dataset, tokenizer, max_len)
    tokenize_s = time.perf_counter() - start
    batches = PairBatches(
        tokenized,
        batch_size=batch_size,
        buckets=[int(b) for b in split_list(buckets)],
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
