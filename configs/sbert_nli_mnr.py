"""A sentence encoder fine-tuned with multiple-negatives ranking on the SNLI train subset's
entailment pairs (each premise must pick its own entailed hypothesis among the batch's). A
stage of the recipes in scripts/reproduce.sh; it needs an encoder to start from.

    python scripts/finetune.py --config configs/sbert_nli_mnr.py --workdir runs/nli_mnr \
        --config.init_from=runs/budget

Expected (2-core CPU, 2026-12-06): from the budget pretraining run (1,200 steps, co-occurrence
token embeddings), 208 steps in 1.7 min idle; STS-B dev 68.4 -> 76.5 (from the run before, with
BERT's random token embeddings: 54.1 -> 68.4).
"""

from jaxbert.configs import finetune_config


def get_config():
    config = finetune_config()
    config.model.size = "mini"  # used only from scratch; init_from brings its own shapes
    config.sbert.objective = "mnr"
    config.sbert.pooling = "mean"
    config.data.train = "snli_train_subset,snli_train_subset_2k"
    config.data.eval_nli = ""
    config.data.eval_sts = "stsb_dev"
    config.data.max_eval_pairs = 0
    config.data.max_len = 64
    config.optim.lr = 1e-4
    config.train.batch_size = 64
    config.train.num_steps = 0
    config.train.epochs = 2.0
    config.train.log_every = 25
    config.train.eval_every = 100
    config.train.checkpoint_every = 100
    config.train.keep_checkpoints = 1
    config.train.primary_metric = "sts_spearman"
    return config
