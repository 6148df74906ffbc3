"""Throughput benchmarks; each prints one JSON line per measurement.

    python scripts/benchmark.py input \
        --files '../shared/data/pretrain_text/enwiki2015_AA.jsonl.gz' --max-docs 1000 \
        --vocab ../shared/data/bert_uncased_vocab/vocab.txt --batch-size 256 --max-len 128

A sub-command is one `bench_<name>(args)` function plus one `add_parser` block in `main`.
"""

import argparse
import json
import logging
import os
import time

from jaxbert.data import sources
from jaxbert.data.corpus import prepare_corpus
from jaxbert.data.pretraining import MaskingConfig, PretrainingBatches
from jaxbert.data.tokenizer import BertTokenizer


def emit(**record) -> None:
    print(json.dumps({**record, "host": f"{os.cpu_count()} cpu"}), flush=True)


def bench_input(args) -> None:
    """Corpus build (or cache open) time, then steady-state PretrainingBatches throughput."""
    if args.vocab:
        tokenizer = BertTokenizer.from_vocab(args.vocab)
    else:
        tokenizer = BertTokenizer.load(args.tokenizer_dir)
    spec = dict(
        name=args.name, files=args.files, text_field=args.text_field, max_docs=args.max_docs
    )
    start = time.perf_counter()
    corpus, _ = prepare_corpus(
        lambda: sources.iter_documents(**spec),
        tokenizer,
        args.cache_dir,
        key=json.dumps(spec, sort_keys=True),
        val_documents=0,
    )
    emit(
        bench="input_corpus",
        seconds=round(time.perf_counter() - start, 2),
        build_seconds=corpus.meta.get("build_seconds"),  # of the build that made the cache
        documents=corpus.num_documents,
        sentences=corpus.num_sentences,
        tokens=corpus.num_tokens,
        cache=str(corpus.directory),
    )
    for nsp in {"true": [True], "false": [False], "both": [True, False]}[args.nsp]:
        batches = PretrainingBatches(
            corpus,
            tokenizer,
            batch_size=args.batch_size,
            max_len=args.max_len,
            masking=MaskingConfig(whole_word_mask=args.whole_word_mask),
            nsp=nsp,
            seed=args.seed,
        )
        start = time.perf_counter()
        next(batches)  # plans the first epoch
        plan_seconds = time.perf_counter() - start
        num_batches, real_tokens, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            real_tokens += int(next(batches)["attention_mask"].sum())
            num_batches += 1
        seconds = time.perf_counter() - start
        emit(
            bench="input_pretrain",
            sequences_per_s=round(num_batches * args.batch_size / seconds),
            tokens_per_s=round(num_batches * args.batch_size * args.max_len / seconds),
            real_tokens_per_s=round(real_tokens / seconds),
            first_batch_s=round(plan_seconds, 3),
            epochs_seen=batches.state()["epoch"] + 1,
            batch_size=args.batch_size,
            max_len=args.max_len,
            nsp=nsp,
            whole_word_mask=args.whole_word_mask,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("input", help="corpus cache + pretraining batch throughput")
    p.add_argument("--files", default="", help="local files (globs, comma-separated)")
    p.add_argument("--name", default="", help="hub dataset name or tfds:<name>")
    p.add_argument("--text-field", default="text")
    p.add_argument("--max-docs", type=int, default=0)
    p.add_argument("--vocab", default="", help="WordPiece vocab.txt")
    p.add_argument("--tokenizer-dir", default="", help="directory with tokenizer.json")
    p.add_argument("--cache-dir", default=".cache/jaxbert")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--nsp", choices=["true", "false", "both"], default="both")
    p.add_argument("--whole-word-mask", action="store_true")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=bench_input)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.run(args)


if __name__ == "__main__":
    main()
