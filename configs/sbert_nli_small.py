"""The real CPU run: SBERT fine-tuning of the Wikipedia-pretrained mini encoder on the SNLI
train subset, softmax objective over [u, v, |u-v|], mean pooling.

    python scripts/finetune.py --config configs/sbert_nli_small.py --workdir runs/sbert_small \
        --config.init_from=runs/wiki_small

Expected (2-core CPU, measured 2026-11-27, from the pretrain_small encoder): 1,686 steps (3
epochs) in ~6 min; SNLI dev accuracy 61.9 %, MultiNLI dev 41.7 / 40.7 % (matched /
mismatched), STS-B dev Spearman 49.5, SICK trial relatedness Spearman 50.2.
"""

from jaxbert.configs import finetune_config


def get_config():
    config = finetune_config()
    config.model.size = "mini"
    config.data.train = "snli_train_subset"
    config.data.eval_nli = "snli_dev"
    config.data.eval_sts = "stsb_dev"
    config.data.max_eval_pairs = 0
    config.data.max_len = 64
    config.optim.lr = 1e-4
    config.train.batch_size = 32
    config.train.num_steps = 0  # derived from epochs
    config.train.epochs = 3.0
    config.train.log_every = 25
    config.train.eval_every = 250
    config.train.checkpoint_every = 250
    config.train.primary_metric = "nli_accuracy"
    return config
