"""The shared training loop on a toy regression task: resume, stops, schedules, accumulation."""

import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbert import checkpoint, train, update
from jaxbert.configs import pretrain_config

TRUE_W = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


class ToyBatches:
    """Deterministic regression batches; batch i depends only on (seed, i). Optionally sends
    SIGINT to this process when batch `interrupt_at` is produced, or poisons one batch."""

    def __init__(self, batch_size=8, seed=0, interrupt_at=None, nan_at=None):
        self.batch_size, self.seed, self.index = batch_size, seed, 0
        self.interrupt_at, self.nan_at = interrupt_at, nan_at

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.index])
        x = rng.normal(size=(self.batch_size, 4)).astype(np.float32)
        y = x @ TRUE_W + 0.01 * rng.normal(size=self.batch_size).astype(np.float32)
        if self.index == self.nan_at:
            y[0] = np.nan
        if self.index == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        self.index += 1
        return {"x": x, "y": y}

    def state(self):
        return {"index": self.index}

    def restore(self, state):
        self.index = state["index"]


def toy_task(batches, best_metric="eval_loss"):
    def init_params(rng):
        return {"dense": {"kernel": 0.1 * jax.random.normal(rng, (4,)), "bias": jnp.zeros(())}}

    def loss_fn(params, batch, rng):
        prediction = batch["x"] @ params["dense"]["kernel"] + params["dense"]["bias"]
        return jnp.mean((prediction - batch["y"]) ** 2), {
            "abs_w": jnp.abs(params["dense"]["kernel"]).sum()
        }

    eval_batch = ToyBatches(batch_size=64, seed=99).__next__()

    def evaluate(params):
        loss, _ = loss_fn(params, eval_batch, None)
        return {"eval_loss": float(loss), "neg_loss": -float(loss)}

    return train.Task(
        name="toy",
        init_params=init_params,
        loss_fn=loss_fn,
        train_batches=batches,
        evaluate=evaluate,
        meta={"kind": "toy"},
        best_metric=best_metric,
        best_mode="min" if best_metric == "eval_loss" else "max",
        count_tokens=lambda batch: batch["x"].size,
    )


def toy_config(num_steps=20, **train_overrides):
    config = pretrain_config()
    config.optim.lr = 0.3
    config.optim.warmup_fraction = 0.1
    config.optim.weight_decay = 0.0
    config.train.batch_size = 8
    config.train.num_steps = num_steps
    config.train.log_every = 5
    config.train.eval_every = 5
    config.train.checkpoint_every = 5
    for key, value in train_overrides.items():
        setattr(config.train, key, value)
    return config


def final_params(run_dir):
    params, _, _ = checkpoint.load_params(run_dir, which="latest")
    return params


def test_loss_falls_and_run_dir_has_everything(tmp_path):
    summary = train.run(toy_task(ToyBatches()), toy_config(num_steps=40), str(tmp_path))
    assert summary["steps"] == 40 and summary["stop_reason"] == "finished"
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < 0.1 * train_losses[0]
    for name in ("config.json", "summary.json", "curves.png", "metrics.jsonl"):
        assert (tmp_path / name).exists(), name
    assert os.listdir(tmp_path / "tensorboard")


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    train.run(toy_task(ToyBatches()), toy_config(num_steps=20), str(tmp_path / "straight"))
    interrupted = tmp_path / "interrupted"
    first = train.run(
        toy_task(ToyBatches(interrupt_at=7)), toy_config(num_steps=20), str(interrupted)
    )
    assert first["stop_reason"] == "stopped by SIGINT"
    assert first["steps"] < 20
    second = train.run(toy_task(ToyBatches()), toy_config(num_steps=20), str(interrupted))
    assert second["steps"] == 20 and second["steps_this_session"] == 20 - first["steps"]
    straight, resumed = final_params(tmp_path / "straight"), final_params(interrupted)
    jax.tree.map(np.testing.assert_array_equal, straight, resumed)
    # The resumed log holds every step once.
    steps = [json.loads(line)["step"] for line in open(interrupted / "metrics.jsonl")]
    train_steps = [s for s in steps]
    assert train_steps == sorted(train_steps)


def test_non_finite_loss_stops_naming_the_step(tmp_path):
    with pytest.raises(train.NonFiniteLossError, match="non-finite loss at step 4;"):
        train.run(toy_task(ToyBatches(nan_at=3)), toy_config(num_steps=10), str(tmp_path))


def test_early_stopping_and_best_checkpoint(tmp_path):
    config = toy_config(num_steps=200, early_stop_patience=2)
    config.optim.lr = 0.0  # nothing improves after the first evaluation
    config.optim.schedule = "constant"
    summary = train.run(toy_task(ToyBatches()), config, str(tmp_path))
    assert summary["stop_reason"].startswith("early stop")
    assert summary["steps"] == 15  # evaluations at 5 (best), 10 and 15 (no better)
    _, meta, step = checkpoint.load_params(str(tmp_path), which="best")
    assert step == 5 and meta["best_step"] == 5


def test_plateau_schedule_cuts_the_rate_on_flat_eval_loss(tmp_path):
    config = toy_config(num_steps=40)
    config.optim.schedule = "plateau"
    config.optim.plateau_patience = 1
    config.optim.plateau_factor = 0.5
    config.optim.lr = 1e-7  # too small to move the eval loss: the plateau rule must react
    train.run(toy_task(ToyBatches()), config, str(tmp_path))
    lrs = [
        json.loads(line)["lr"]
        for line in open(tmp_path / "metrics.jsonl")
        if json.loads(line)["split"] == "train"
    ]
    assert lrs[-1] < 0.2 * 1e-7


def test_schedule_warmup_then_linear_decay():
    config = pretrain_config().optim
    config.lr, config.warmup_fraction, config.schedule = 1.0, 0.1, "linear"
    schedule = update.make_schedule(config, 100)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(55)) == pytest.approx(0.5)
    assert float(schedule(100)) == pytest.approx(0.0)
    config.schedule = "sideways"
    with pytest.raises(ValueError, match="unknown schedule"):
        update.make_schedule(config, 100)


def test_weight_decay_skips_biases_and_layer_norm():
    params = {
        "dense": {"kernel": 1, "bias": 1},
        "LayerNorm": {"scale": 1, "bias": 1},
        "embeddings": {"word_embeddings": {"embedding": 1}},
    }
    mask = update.decay_mask(params)
    assert mask == {
        "dense": {"kernel": True, "bias": False},
        "LayerNorm": {"scale": False, "bias": False},
        "embeddings": {"word_embeddings": {"embedding": True}},
    }


def test_gradient_accumulation_equals_the_full_batch():
    task = toy_task(ToyBatches())
    params = task.init_params(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, ToyBatches(batch_size=16).__next__())
    config = pretrain_config().optim
    tx, _, _ = update.make_optimizer(config, 10)
    state = update.create_state(params, tx, None)
    full = update.make_train_step(task.loss_fn, tx, grad_accum=1)
    accumulated = update.make_train_step(task.loss_fn, tx, grad_accum=4)
    rng = jax.random.key(1)
    state_full, metrics_full = jax.jit(full)(state, batch, rng)
    state_acc, metrics_acc = jax.jit(accumulated)(state, batch, rng)
    np.testing.assert_allclose(metrics_full["loss"], metrics_acc["loss"], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        state_full.params,
        state_acc.params,
    )


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    train.run(toy_task(ToyBatches()), toy_config(num_steps=10), str(tmp_path))
    latest = tmp_path / "checkpoints" / "10"
    for root, _, files in os.walk(latest / "params"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    params, _, step = checkpoint.load_params(str(tmp_path), which="latest")
    assert step == 5
    assert optax.tree.norm(params) > 0


@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_best_checkpoint_survives_the_keep_limit(tmp_path, mode):
    checkpointer = checkpoint.Checkpointer(
        str(tmp_path), keep=1, best_metric="score", best_mode=mode
    )
    scores = {1: 0.1, 2: 0.9, 3: 0.5, 4: 0.2, 5: 0.3}
    for step, score in scores.items():
        params = {"w": jnp.full((2,), float(step))}
        train_state = {"step": jnp.int32(step)}
        checkpointer.save(step, params=params, train=train_state, meta={}, metrics={"score": score})
        checkpointer.wait()
    best = 2 if mode == "max" else 1
    assert checkpointer.all_steps() == [best, 5]  # the best and the latest
    assert checkpointer.best_step() == best
    checkpointer.close()


def test_no_checkpoint_holds_diverged_params(tmp_path):
    # Checkpoints more often than the loss is looked at: each save checks the steps before it.
    config = toy_config(num_steps=10, log_every=10, checkpoint_every=2)
    with pytest.raises(train.NonFiniteLossError, match="non-finite loss at step 4;"):
        train.run(toy_task(ToyBatches(nan_at=3)), config, str(tmp_path))
    assert checkpoint.Checkpointer(str(tmp_path), read_only=True).all_steps() == [2]
    params, _, _ = checkpoint.load_params(str(tmp_path), which="latest")
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


def test_resuming_past_an_unreadable_step_sets_it_aside(tmp_path):
    config = toy_config(num_steps=10)
    train.run(toy_task(ToyBatches()), config, str(tmp_path / "straight"))
    run_dir = tmp_path / "run"
    train.run(toy_task(ToyBatches()), config, str(run_dir))
    os.remove(run_dir / "summary.json")  # as if it had been stopped right after its last save
    for root, _, files in os.walk(run_dir / "checkpoints" / "10" / "params"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    # Resumes from step 5 and saves step 10 again (Orbax refuses to overwrite a step).
    summary = train.run(toy_task(ToyBatches()), config, str(run_dir))
    assert summary["steps"] == 10 and summary["steps_this_session"] == 5
    assert os.listdir(run_dir / "checkpoints_unreadable") == ["10"]
    jax.tree.map(
        np.testing.assert_array_equal, final_params(tmp_path / "straight"), final_params(run_dir)
    )


def test_rerunning_a_finished_run_keeps_its_summary(tmp_path):
    config = toy_config(num_steps=10)
    first = train.run(toy_task(ToyBatches()), config, str(tmp_path))
    again = train.run(toy_task(ToyBatches()), config, str(tmp_path))
    assert again == json.loads(json.dumps(first)) and again["final_eval"]
    assert json.load(open(tmp_path / "summary.json"))["final_eval"] == again["final_eval"]


def test_a_best_starting_point_is_kept(tmp_path):
    config = toy_config(num_steps=15, keep_checkpoints=1, eval_at_start=True)
    config.optim.lr = -0.01  # gradient ascent: every later evaluation is worse than step 0's
    config.optim.schedule = "constant"
    summary = train.run(toy_task(ToyBatches()), config, str(tmp_path))
    assert summary["best_step"] == 0
    assert checkpoint.Checkpointer(str(tmp_path), read_only=True).all_steps() == [0, 15]
    _, _, step = checkpoint.load_params(str(tmp_path), which="best")
    assert step == 0


def test_a_run_stopped_right_after_its_starting_point_resumes(tmp_path):
    # Found by scripts/faults.py: kill -9 between the step-0 save and step 1 made every rerun
    # evaluate and save step 0 again, and Orbax refuses to overwrite a step.
    config = toy_config(num_steps=10, eval_at_start=True)
    train.run(toy_task(ToyBatches()), config, str(tmp_path / "straight"))
    run_dir = tmp_path / "run"
    train.run(toy_task(ToyBatches()), config, str(run_dir))
    # As a kill -9 before step 5's save leaves it: only the starting point's checkpoint.
    os.remove(run_dir / "summary.json")
    for step in ("5", "10"):
        shutil.rmtree(run_dir / "checkpoints" / step)
    assert checkpoint.Checkpointer(str(run_dir), read_only=True).all_steps() == [0]
    summary = train.run(toy_task(ToyBatches()), config, str(run_dir))
    assert summary["steps"] == 10 and summary["steps_this_session"] == 10
    jax.tree.map(
        np.testing.assert_array_equal, final_params(tmp_path / "straight"), final_params(run_dir)
    )
    steps = [json.loads(line)["step"] for line in open(run_dir / "metrics.jsonl")]
    assert steps.count(0) == 1  # the starting point is evaluated once


def test_resuming_with_another_model_size_says_so(tmp_path):
    task = toy_task(ToyBatches())
    task.meta = {"kind": "toy", "model_config": {"hidden_size": 4, "dtype": "float32"}}
    train.run(task, toy_config(num_steps=5), str(tmp_path))
    task = toy_task(ToyBatches())
    task.meta = {"kind": "toy", "model_config": {"hidden_size": 8, "dtype": "bfloat16"}}
    with pytest.raises(ValueError, match=r"trained with hidden_size 4 \(now 8\): resume it"):
        train.run(task, toy_config(num_steps=10), str(tmp_path))


def test_a_checkpoint_with_non_finite_params_is_read_as_damaged(tmp_path):
    checkpointer = checkpoint.Checkpointer(str(tmp_path))
    for step, value in ((1, 1.0), (2, np.nan)):  # as damaged bytes can decode
        params = {"dense": {"kernel": jnp.full((3,), value)}}
        checkpointer.save(step, params=params, train={"step": jnp.int32(step)}, meta={})
    checkpointer.close()
    params, _, step = checkpoint.load_params(str(tmp_path), which="latest")
    assert step == 1 and np.all(params["dense"]["kernel"] == 1.0)


def test_a_frozen_path_gets_no_update_and_its_siblings_do():
    config = toy_config()
    config.optim.weight_decay = 0.1
    config.optim.freeze = "bert/embeddings/word_embeddings"
    params = {
        "bert": {
            "embeddings": {
                "word_embeddings": {"embedding": jnp.ones((3, 2))},
                "LayerNorm": {"scale": jnp.ones(2)},
            },
            "encoder": {"kernel": jnp.ones((2, 2))},
        },
        "head": {"kernel": jnp.ones(2)},
    }
    tx, _, _ = update.make_optimizer(config.optim, total_steps=10)
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(params["bert"]["embeddings"]["word_embeddings"]["embedding"], 1.0)
    assert (params["bert"]["embeddings"]["LayerNorm"]["scale"] < 1).all()
    assert (params["bert"]["encoder"]["kernel"] < 1).all() and (params["head"]["kernel"] < 1).all()
    config.optim.freeze = "bert/embeddings/position_embeddings"
    tx, _, _ = update.make_optimizer(config.optim, total_steps=10)
    with pytest.raises(ValueError, match="optim.freeze names"):
        tx.init(params)
