"""Budget pretraining in the Cramming / MosaicBERT manner, for the from-scratch recipe: no NSP,
30 % masking, packed 128-token sequences, a 16k WordPiece trained on the corpus, a high peak
learning rate with warm-up and linear decay to zero. BERT-mini size (4 layers, hidden 256).

    python scripts/pretrain.py --config configs/pretrain_budget.py --workdir runs/budget \
        --config.data.train_files='../shared/data/pretrain_text/*.jsonl.gz'

Scale it with --config.train.num_steps (the schedule follows); on a GPU with --config.model.size
and a bigger batch. `bash scripts/reproduce.sh scratch WORKDIR` runs it and the fine-tuning
stages after it. Expected (2-core CPU): see the README's from-scratch rows (the time of each
stage and its dev scores are there). Measured (2026-12-05, shared CPU, load 5-12): ~4.6 s per
step; stopped at step 675 of 900 after 51 min: held-out MLM accuracy
13.2 %, perplexity 715 at step 600; mean-pooled STS-B dev 50.1.
"""

from jaxbert.configs import pretrain_config


def get_config():
    config = pretrain_config()
    config.model.size = "mini"
    config.model.hidden_dropout = 0.0  # Cramming: no dropout when every token is seen once
    config.model.attention_dropout = 0.0
    config.tokenizer.vocab_size = 16384
    config.tokenizer.train_documents = 5000
    config.data.nsp = False
    config.data.masked_lm_prob = 0.3
    config.data.max_predictions = 40
    config.data.max_len = 128
    config.data.val_documents = 100
    config.optim.lr = 1e-3
    config.optim.warmup_fraction = 0.06
    config.optim.schedule = "linear"
    config.optim.weight_decay = 0.01
    config.optim.b2 = 0.98
    config.train.batch_size = 64
    config.train.num_steps = 900
    config.train.log_every = 25
    config.train.eval_every = 300
    config.train.checkpoint_every = 150
    config.train.eval_batches = 10
    return config
