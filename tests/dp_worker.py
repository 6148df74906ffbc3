"""Trains a tiny BERT for a few MLM + NSP steps through `train.run` and prints its losses as JSON.

Run by tests/test_data_parallel.py in subprocesses: on 1 or 8 simulated CPU devices, and as two
`jax.distributed` processes on localhost. Not collected by pytest (no test_ prefix).

    python tests/dp_worker.py RUN_DIR [PROCESS_ID NUM_PROCESSES COORDINATOR]
"""

import json
import sys

import jax

if len(sys.argv) > 2:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=sys.argv[4],
        num_processes=int(sys.argv[3]),
        process_id=int(sys.argv[2]),
    )

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxbert import pretrain, train  # noqa: E402
from jaxbert.configs import pretrain_config  # noqa: E402
from jaxbert.model import BertConfig, BertForPreTraining  # noqa: E402

BATCH, SEQ, PREDICTIONS, VOCAB = 8, 16, 4, 64


class RandomBatches:
    """MLM + NSP batches of random tokens; batch i depends only on i. Rows are right-padded."""

    def __init__(self):
        self.index = 0

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng(self.index)
        self.index += 1
        lengths = rng.integers(SEQ // 2, SEQ + 1, BATCH)
        mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
        positions = np.stack([rng.choice(n, PREDICTIONS, replace=False) for n in lengths])
        return {
            "input_ids": (rng.integers(5, VOCAB, (BATCH, SEQ)) * mask).astype(np.int32),
            "segment_ids": (np.arange(SEQ)[None, :] >= lengths[:, None] // 2).astype(np.int32)
            * mask,
            "attention_mask": mask,
            "masked_lm_positions": positions.astype(np.int32),
            "masked_lm_ids": rng.integers(5, VOCAB, (BATCH, PREDICTIONS)).astype(np.int32),
            "masked_lm_weights": np.ones((BATCH, PREDICTIONS), np.float32),
            "next_sentence_labels": rng.integers(0, 2, BATCH).astype(np.int32),
        }

    def state(self):
        return {"index": self.index}

    def restore(self, state):
        self.index = state["index"]


def main():
    run_dir = sys.argv[1]
    model = BertForPreTraining(
        BertConfig.from_size("tiny", vocab_size=VOCAB, max_position_embeddings=SEQ)
    )

    def init_params(rng):
        ids = jnp.zeros((1, SEQ), jnp.int32)
        return model.init(rng, ids, ids, ids + 1, jnp.zeros((1, PREDICTIONS), jnp.int32))["params"]

    eval_batches = [RandomBatches().__next__()]
    task = train.Task(
        name="dp-check",
        init_params=init_params,
        loss_fn=pretrain.pretraining_loss_fn(model, use_nsp=True),
        train_batches=RandomBatches(),
        evaluate=pretrain.make_evaluator(model, eval_batches, use_nsp=True),
        meta={"kind": "dp-check"},
    )
    config = pretrain_config()
    config.optim.lr = 1e-3
    config.train.batch_size = BATCH
    config.train.num_steps = 4
    config.train.log_every = 1
    config.train.eval_every = 4
    config.train.checkpoint_every = 4
    summary = train.run(task, config, run_dir)
    if jax.process_index() == 0:
        with open(f"{run_dir}/metrics.jsonl") as f:
            records = [json.loads(line) for line in f]
        losses = [r["loss"] for r in records if r["split"] == "train"]
        print(
            "RESULT "
            + json.dumps(
                {
                    "losses": losses,
                    "devices": summary["devices"],
                    "eval_loss": summary["final_eval"]["eval_loss"],
                }
            )
        )


if __name__ == "__main__":
    main()
