"""Tiny BERT (2 layers, hidden 128) pretrained for a minute on CPU: a smoke run of the pipeline.

    python scripts/pretrain.py --config configs/pretrain_tiny.py --workdir runs/pretrain_tiny
    # offline, on local files instead of the Hugging Face dataset:
    python scripts/pretrain.py --config configs/pretrain_tiny.py --workdir runs/pretrain_tiny \
        --config.data.train_files='../shared/data/pretrain_text/enwiki2015_AA.jsonl.gz'

Expected (2-core CPU, first 1,000 articles of Wikipedia shard AA, measured 2026-11-27): about
50 s end to end (tokenizer training + corpus cache ~10 s, 300 steps ~40 s at ~25k tokens/s);
final eval MLM accuracy ~5.5 %, perplexity ~1,150, NSP accuracy ~50 %. A smoke run of the
pipeline, not a useful encoder.
"""

from jaxbert.configs import pretrain_config


def get_config():
    config = pretrain_config()
    config.model.size = "tiny"
    config.tokenizer.vocab_size = 8192
    config.tokenizer.train_documents = 1000
    config.data.max_documents = 1000
    config.data.val_documents = 20
    config.data.max_len = 64
    config.data.max_predictions = 10
    config.optim.lr = 1e-3
    config.train.batch_size = 32
    config.train.num_steps = 300
    config.train.log_every = 20
    config.train.eval_every = 100
    config.train.checkpoint_every = 100
    config.train.eval_batches = 5
    return config
