"""Tiny SBERT fine-tuning (softmax over [u, v, |u-v|]) for a minute on CPU; used by the tests.

    python scripts/finetune.py --config configs/sbert_nli_tiny.py --workdir runs/sbert_tiny \
        --config.init_from=runs/pretrain_tiny

Without init_from it trains a tiny encoder from scratch on the bert-base-uncased vocab.
Expected (2-core CPU, measured 2026-11-27, from scratch, with other jobs running): about a
minute; SNLI dev accuracy (first 1,000 pairs) ~48 % after 120 steps of 32 pairs. A smoke run.
"""

from jaxbert.configs import finetune_config


def get_config():
    config = finetune_config()
    config.model.size = "tiny"
    config.tokenizer.vocab_file = "../shared/data/bert_uncased_vocab/vocab.txt"
    config.data.train = "snli_train_subset"
    config.data.max_train_pairs = 4000
    config.data.max_eval_pairs = 1000
    config.data.max_len = 64
    config.optim.lr = 5e-4
    config.train.batch_size = 32
    config.train.num_steps = 120
    config.train.log_every = 20
    config.train.eval_every = 60
    config.train.checkpoint_every = 60
    return config
