"""The NLI classifier of a trained sentence encoder: softmax over [u, v, |u-v|, u*v] through an
MLP (1,024 tanh units), trained on the SNLI train subset (20,000 pairs) with the encoder frozen
(`optim.freeze="bert"`), so its embeddings, and its similarity scores, stay exactly as they were.
A stage of the recipes in scripts/reproduce.sh; it needs an encoder to start from.

    python scripts/finetune.py --config configs/sbert_nli_head.py --workdir runs/nli_head \
        --config.init_from=runs/sts

Add --config.optim.freeze= --config.optim.lr=1e-4 to go on training the encoder too (starting
from a trained head: init_from a run of this config); alone that raises NLI accuracy and costs
STS, so the recipes mix CoSENT on scored pairs into it (--config.data.train_scores=...
--config.sbert.cosent_weight=0.3). Expected (2-core CPU, 2026-12-06; times vary 1.7x with the
machine's speed): on all-MiniLM-L6-v2, 2 epochs in 5.2 min, SNLI dev (first 3,000 pairs) 70.5 %;
then head and encoder together (lr 1e-4, 2 epochs) with CoSENT on STS-B train mixed in (the
`nli` recipe; 27.4 min beside other work) 78.83 %, full dev sets SNLI 78.54 %, MNLI 53.61 /
56.19 %, STS-B 86.72 -> 88.30, SICK-R 81.57 (without the CoSENT loss: 79.40 %, STS-B 85.49).
The scratch recipe uses it twice: the head on its frozen encoder (59.47 % on the first 3,000
SNLI dev pairs, 1.9 min idle), then head and encoder together at lr 3e-4 with CoSENT on STS-B +
SICK train mixed in (--config.data.train_scores=stsb_train,sick_train_sts
--config.sbert.cosent_weight=0.3; 8.4 min): 71.43 %, STS-B 79.40 -> 80.30; full dev sets SNLI
70.43 %, MNLI 47.92 / 48.87 % (without the CoSENT loss the stage reaches 71.73 % but STS-B falls
to 76.75, and winning it back costs 2.7 points of SNLI).
"""

from jaxbert.configs import finetune_config


def get_config():
    config = finetune_config()
    config.model.size = "mini"  # used only from scratch; init_from brings its own shapes
    config.sbert.objective = "softmax"
    config.sbert.pooling = "mean"
    config.sbert.features = "u,v,|u-v|,u*v"
    config.sbert.head_hidden = 1024
    config.optim.freeze = "bert"
    config.optim.lr = 1e-3
    config.optim.weight_decay = 0.01
    config.data.train = "snli_train_subset,snli_train_subset_2k"
    config.data.eval_nli = "snli_dev"
    config.data.eval_sts = "stsb_dev"
    config.data.max_eval_pairs = 3000
    config.data.max_len = 64
    config.train.batch_size = 64
    config.train.num_steps = 0
    config.train.epochs = 3.0
    config.train.log_every = 25
    config.train.eval_every = 300
    config.train.checkpoint_every = 300
    config.train.keep_checkpoints = 1
    config.train.eval_at_start = False
    config.train.primary_metric = "nli_accuracy"
    return config
