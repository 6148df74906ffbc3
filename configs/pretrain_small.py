"""The real CPU run: a mini BERT (4 layers, hidden 256) on the Wikipedia shards, MLM + NSP.

    python scripts/pretrain.py --config configs/pretrain_small.py --workdir runs/wiki_small \
        --config.data.train_files='../shared/data/pretrain_text/*.jsonl.gz'

Expected (2-core CPU): EXPECTED_SMALL
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
