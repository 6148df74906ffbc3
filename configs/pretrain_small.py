"""The real CPU run: a mini BERT (4 layers, hidden 256) on the Wikipedia shards, MLM + NSP.

    python scripts/pretrain.py --config configs/pretrain_small.py --workdir runs/wiki_small \
        --config.data.train_files='../shared/data/pretrain_text/*.jsonl.gz'

Expected (2-core CPU, measured 2026-11-27): tokenizer training + corpus cache ~5 min once (19,217
articles, 64 M tokens), then 2,000 steps of 32 x 128 tokens in ~42 min (~3,100 tokens/s, 1.25 s
per step). Held-out eval at the end: MLM accuracy 13.5 %, perplexity 838, NSP accuracy 65 %.
That is 8 M training tokens, a tiny budget (BERT saw ~130 G): an encoder that has only begun
to learn, good enough to show the pipeline, not to compete with published checkpoints.
"""

from jaxbert.configs import pretrain_config


def get_config():
    config = pretrain_config()
    config.model.size = "mini"
    config.tokenizer.vocab_size = 30522
    config.tokenizer.train_documents = 5000
    config.data.val_documents = 100
    config.data.max_len = 128
    config.data.max_predictions = 20
    config.optim.lr = 5e-4
    config.optim.warmup_fraction = 0.05
    config.train.batch_size = 32
    config.train.num_steps = 2000
    config.train.log_every = 25
    config.train.eval_every = 500
    config.train.checkpoint_every = 250
    config.train.eval_batches = 20
    return config
