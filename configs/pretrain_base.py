"""BERT-base (12 layers, hidden 768) with the original recipe's shape, for a GPU: bf16, cuDNN
attention, batch 256 x 128 tokens, lr 1e-4, 1% warm-up then linear decay.

    python scripts/pretrain.py --config configs/pretrain_base.py --workdir runs/bert_base \
        --config.data.train_files='../shared/data/pretrain_text/*.jsonl.gz'

Multi-GPU: the batch is sharded over every visible device automatically. Several hosts: start one
process per host with --coordinator_address=host0:1234 --num_processes=N --process_id=i.

Expected: not yet measured here (no GPU run has been made with this config); the throughput of
this shape is measured by `python scripts/benchmark.py pretrain --size base`.
"""

from jaxbert.configs import pretrain_config


def get_config():
    config = pretrain_config()
    config.model.size = "base"
    config.model.dtype = "bfloat16"
    config.model.attention_impl = "cudnn"
    config.tokenizer.vocab_size = 30522
    config.data.val_documents = 500
    config.data.max_len = 128
    config.data.max_predictions = 20
    config.optim.lr = 1e-4
    config.optim.warmup_fraction = 0.01
    config.train.batch_size = 256
    config.train.num_steps = 100_000
    config.train.log_every = 100
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    config.train.eval_batches = 50
    return config
