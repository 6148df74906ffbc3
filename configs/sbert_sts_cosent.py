"""A sentence encoder fine-tuned on graded similarity: CoSENT (a ranking loss on cosines) over
the STS-B and SICK relatedness train sets, 10,249 pairs. A stage of the recipes in
scripts/reproduce.sh; it needs an encoder to start from.

    python scripts/finetune.py --config configs/sbert_sts_cosent.py --workdir runs/sts \
        --config.init_from=runs/nli_mnr

Expected (2-core CPU, 2026-12-06): after the MNR stage of the scratch recipe, 640 steps in 2.4 min
idle; STS-B dev 76.5 -> 79.40 (2026-12-05, the recipe before, with random token embeddings:
68.4 -> 78.18, SICK-R trial 76.31; after 900 pretraining steps:
69.7 -> 78.78, 74.28; after 675 steps, which the comparisons here start from: 77.78 / 74.50). At lr
1e-4: 77.29 / 71.80; plain MSE of cosines instead of CoSENT, lr 1e-4: 77.87 / 70.19; 4 epochs at
2e-4: 78.11 / 75.35 at epoch 2 (the best evaluation), 77.16 at the end. The same pairs and
loss also go into the NLI stages of the scratch and `nli` recipes, mixed in
(configs/sbert_nli_head.py). The `distill` recipe's last stage (STS-B train only, lr 2e-5,
batches of 16, one epoch, normalised embeddings): 86.53 -> 86.94, SICK-R trial 78.70, in 1.1 min.
"""

from jaxbert.configs import finetune_config


def get_config():
    config = finetune_config()
    config.model.size = "mini"  # used only from scratch; init_from brings its own shapes
    config.sbert.objective = "cosent"
    config.sbert.pooling = "mean"
    config.data.train = "stsb_train,sick_train_sts"
    config.data.eval_nli = ""
    config.data.eval_sts = "stsb_dev"
    config.data.max_eval_pairs = 0
    config.data.max_len = 64
    config.optim.lr = 2e-4  # 1e-4: -0.5 STS-B, -2.7 SICK-R
    config.train.batch_size = 32
    config.train.num_steps = 0
    config.train.epochs = 2.0
    config.train.log_every = 25
    config.train.eval_every = 200
    config.train.checkpoint_every = 200
    config.train.keep_checkpoints = 1
    config.train.primary_metric = "sts_spearman"
    return config
