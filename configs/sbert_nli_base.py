"""SBERT-base recipe for a GPU (Reimers & Gurevych 2019): BERT-base encoder, SNLI + MultiNLI,
softmax over [u, v, |u-v|], batch 16 per device, lr 2e-5, 10 % warm-up, 1 epoch, bf16.

    python scripts/finetune.py --config configs/sbert_nli_base.py --workdir runs/sbert_base \
        --config.init_from=runs/bert_base

Expected: not measured here (no GPU run has been made with this config); the published SBERT
recipe reaches ~77 STS-B test Spearman with a Google BERT-base encoder, which our own small
pretraining runs do not match.
"""

from jaxbert.configs import finetune_config


def get_config():
    config = finetune_config()
    config.model.size = "base"
    config.model.dtype = "bfloat16"
    config.model.attention_impl = "cudnn"
    config.data.train = "snli,multi_nli"
    config.data.eval_nli = "snli_dev"
    config.data.eval_sts = "stsb_dev"
    config.data.max_eval_pairs = 0
    config.data.max_len = 128
    config.data.buckets = "16,32,64,128"
    config.optim.lr = 2e-5
    config.train.batch_size = 16
    config.train.num_steps = 0
    config.train.epochs = 1.0
    config.train.log_every = 100
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    return config
