"""The training loop shared by every task, and its device plumbing (mesh, sharded batches,
prefetch).

Pretraining and fine-tuning differ only in the `Task` they hand to `run`: its parameters, loss,
batches and evaluation. Data parallelism is `jax.jit` of `jaxbert.update.make_train_step` over
a 1-D device mesh with the batch sharded on the `data` axis.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbert import checkpoint, plots
from jaxbert.update import (
    LossFn,
    TrainState,
    create_state,
    make_optimizer,
    make_train_step,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- devices


def make_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over every device of every process, axis `data`."""
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def shard_batch(batch: dict, sharding: NamedSharding) -> dict:
    """Host batch -> global arrays sharded on the batch axis.

    Every process builds the same global batch (same seed) and contributes its own rows, so a
    multi-process run sees exactly the batches of a single-process one.
    """
    count, index = jax.process_count(), jax.process_index()

    def put(x):
        x = np.asarray(x)
        rows = x.shape[0] // count
        return jax.make_array_from_process_local_data(
            sharding, x[index * rows : (index + 1) * rows], x.shape
        )

    return jax.tree.map(put, batch)


def prefetch(iterator: Iterator, transform: Callable, size: int = 2) -> Iterator:
    """Runs `transform(next(iterator))` in a background thread, `size` items ahead.

    Host batch building and the host-to-device copy overlap the running step. Items come out in
    order; an exception in the thread is re-raised in the consumer.
    """
    items: queue.Queue = queue.Queue(maxsize=size)
    done = object()
    stop = threading.Event()

    def worker():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                items.put(transform(item))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            items.put(error)
            return
        items.put(done)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class Task:
    """What a training run needs to know about its model and data."""

    name: str
    init_params: Callable[[jax.Array], Any]  # rng -> freshly initialised params (traceable)
    loss_fn: LossFn  # (params, batch, rng) -> (loss, metrics)
    train_batches: Any  # iterator of numpy dict batches with .state() / .restore(state)
    evaluate: Callable[[Any], dict[str, float]]  # params -> metrics (host floats)
    meta: dict  # carried by every checkpoint: model config, tokenizer, label names, ...
    best_metric: str = "eval_loss"
    best_mode: str = "min"
    progress_metrics: tuple[str, ...] = ("loss",)
    # params -> params with the encoder replaced by another run's or imported weights
    init_from: Callable[[Any], Any] | None = None
    count_tokens: Callable[[dict], int] = lambda batch: int(  # noqa: E731
        sum(np.sum(v) for k, v in batch.items() if k.startswith("attention_mask"))
    )


class NonFiniteLossError(FloatingPointError):
    pass


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint and exits at the next step."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _mean_metrics(window: list[dict]) -> dict[str, float]:
    host = jax.device_get(window)
    return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _first_non_finite(window: list[dict], first_step: int) -> int | None:
    """The first step of `window` whose loss or gradient norm is not finite (a finite loss
    with a non-finite gradient still leaves non-finite parameters)."""
    watched = [[m[k] for k in ("loss", "grad_norm") if k in m] for m in window]
    values = np.asarray(jax.device_get(watched), np.float64).reshape(len(window), -1)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    return first_step + int(bad[0]) if bad.size else None


# Architecture fields: a checkpoint's arrays have these shapes. Dtype, attention kernel and
# dropout may change when a run resumes elsewhere.
_SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")
_SHAPE_FIELDS += ("max_position_embeddings", "type_vocab_size")


def check_same_architecture(saved: dict, current: dict, run_dir: str) -> None:
    """A clear error when a run directory is resumed with another model size than it was
    trained with (restoring would fail on every step, which reads like corruption)."""
    changed = [f for f in _SHAPE_FIELDS if f in saved and saved.get(f) != current.get(f)]
    if changed:
        described = ", ".join(f"{f} {saved[f]} (now {current.get(f)})" for f in changed)
        raise ValueError(
            f"{run_dir} was trained with {described}: resume it with the config it was "
            "started with, or start a new --workdir"
        )


class MetricsWriter:
    """metrics.jsonl (one JSON object per record) and TensorBoard event files."""

    def __init__(self, run_dir: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")
        for key, value in metrics.items():
            self._tb.add_scalar(f"{split}/{key}", value, step)
        self._tb.flush()

    def truncate_after(self, step: int) -> None:
        """On resume, drop records written after the restored checkpoint (they will be redone)."""
        if not (self.enabled and os.path.exists(self.path)):
            return
        with open(self.path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(kept)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def run(task: Task, config, run_dir: str) -> dict:
    """Trains `task` for `config.train.num_steps` steps in `run_dir`; returns the summary.

    Start-up order:
      (1) resume this run directory if it holds a checkpoint (params, optimizer, data position);
      (2) otherwise `task.init_params`, which initialises the encoder from another run or from
          imported weights when the config says so,
      (3) or from scratch.
    """
    train_cfg, optim = config.train, config.optim
    is_main = jax.process_index() == 0
    summary_path = os.path.join(run_dir, "summary.json")
    if checkpoint.has_checkpoint(run_dir):
        saved = checkpoint.load_meta(run_dir).get("model_config")
        if saved and "model_config" in task.meta:
            check_same_architecture(saved, task.meta["model_config"], run_dir)
    os.makedirs(run_dir, exist_ok=True)
    if is_main:  # the resolved experiment config, as this run saw it
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))
    mesh = make_mesh()
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    if train_cfg.batch_size % (jax.device_count() * optim.grad_accum):
        raise ValueError(
            f"train.batch_size {train_cfg.batch_size} must be divisible by the device count "
            f"({jax.device_count()}) times optim.grad_accum ({optim.grad_accum})"
        )
    # Simulated CPU devices can deadlock when collectives are queued back to back; waiting for
    # each step costs nothing that matters on CPU. Never done on accelerators.
    sync_every_step = jax.default_backend() == "cpu" and jax.device_count() > 1

    total_steps = train_cfg.num_steps
    tx, plateau_tx, schedule = make_optimizer(optim, total_steps)
    rng = jax.random.key(config.seed)
    init_rng, step_rng = jax.random.split(rng)

    def init_state(key):
        return create_state(task.init_params(key), tx, plateau_tx)

    def state_from_params(params):
        return create_state(params, tx, plateau_tx)

    checkpointer = checkpoint.Checkpointer(
        run_dir,
        keep=train_cfg.keep_checkpoints,
        best_metric=task.best_metric,
        best_mode=task.best_mode,
    )
    abstract_state = jax.eval_shape(init_state, init_rng)
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_state
    )
    restored = checkpointer.restore(
        abstract_state.params,
        {
            "step": abstract_state.step,
            "opt_state": abstract_state.opt_state,
            "plateau": abstract_state.plateau,
        },
    )
    best = {"value": None, "step": None}
    evals_without_improvement = 0
    if restored is not None:  # (1)
        step, params, train, meta = restored
        state = TrainState(
            step=train["step"],
            params=params,
            opt_state=train["opt_state"],
            plateau=train["plateau"],
        )
        task.train_batches.restore(meta["data_state"])
        best = {"value": meta.get("best_value"), "step": meta.get("best_step")}
        evals_without_improvement = meta.get("evals_without_improvement", 0)
        log.info("resumed %s from step %d", run_dir, step)
        if step >= train_cfg.num_steps and os.path.exists(summary_path):
            checkpointer.close()
            log.info("%s has already finished; its summary stays as it is", run_dir)
            with open(summary_path) as f:
                return json.load(f)
    else:
        params = jax.jit(task.init_params, out_shardings=replicated)(init_rng)  # (3)
        if task.init_from is not None:  # (2)
            params = jax.device_put(task.init_from(params), replicated)
        state = jax.jit(state_from_params, out_shardings=replicated)(params)
        step = 0
    writer = MetricsWriter(run_dir, enabled=is_main)
    writer.truncate_after(step)

    train_step = jax.jit(
        make_train_step(
            task.loss_fn, tx, grad_accum=optim.grad_accum, use_plateau=plateau_tx is not None
        ),
        in_shardings=(replicated, batch_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )

    def stop_if_non_finite():
        bad_step = _first_non_finite(window, step - len(window) + 1) if window else None
        if bad_step is not None:
            progress.close()
            checkpointer.close()
            raise NonFiniteLossError(
                f"non-finite loss at step {bad_step}; stopping without saving. The last "
                f"good checkpoint is in {checkpointer.directory}. Lower optim.lr or "
                "raise optim.warmup_fraction."
            )

    def save(step_now: int, metrics: dict | None = None):
        stop_if_non_finite()  # checks the steps not yet logged: never save diverged params
        meta = dict(
            task.meta,
            step=step_now,
            data_state=data_state,
            best_value=best["value"],
            best_step=best["step"],
            evals_without_improvement=evals_without_improvement,
        )
        checkpointer.save(
            step_now,
            params=state.params,
            train={"step": state.step, "opt_state": state.opt_state, "plateau": state.plateau},
            meta=meta,
            metrics=metrics,
        )

    def evaluate_and_track(step_now: int) -> dict:
        nonlocal best, evals_without_improvement, state
        started = time.perf_counter()
        metrics = task.evaluate(state.params)
        metrics["eval_seconds"] = time.perf_counter() - started
        writer.write(step_now, "eval", metrics)
        value = metrics[task.best_metric]
        better = best["value"] is None or (
            value < best["value"] if task.best_mode == "min" else value > best["value"]
        )
        if better:
            best = {"value": value, "step": step_now}
            evals_without_improvement = 0
        else:
            evals_without_improvement += 1
        if plateau_tx is not None:
            signed = value if task.best_mode == "min" else -value
            _, new_plateau = plateau_tx.update(
                updates=jnp.zeros(()), state=state.plateau, value=jnp.asarray(signed)
            )
            state = state.replace(plateau=jax.device_put(new_plateau, replicated))
        return metrics

    data_state = task.train_batches.state()
    batches = prefetch(
        ((batch, task.train_batches.state()) for batch in task.train_batches),
        lambda item: (shard_batch(item[0], batch_sharding), item[1], task.count_tokens(item[0])),
    )
    start_step = step
    window: list[dict] = []
    window_tokens = 0
    window_start = time.perf_counter()
    run_start = time.perf_counter()
    tokens_total = 0
    last_eval: dict = {}
    stop_reason = "finished"
    progress = _progress_bar(start_step, total_steps, enabled=is_main)
    if step == 0 and train_cfg.eval_at_start:  # the starting point, e.g. imported weights
        last_eval = evaluate_and_track(0)
        log.info(_format_eval(0, last_eval))
        save(0, metrics=last_eval)  # it may stay the best: fine-tuning can make a model worse
    with _StopRequest() as stop:
        while step < total_steps:
            if stop.signal_name:
                stop_reason = f"stopped by {stop.signal_name}"
                break
            device_batch, data_state, tokens = next(batches)
            state, metrics = train_step(state, device_batch, step_rng)
            if sync_every_step:
                metrics["loss"].block_until_ready()
            step += 1
            window.append(metrics)
            window_tokens += tokens
            tokens_total += tokens
            if step % train_cfg.log_every == 0 or step == total_steps:
                stop_if_non_finite()
                summary = _mean_metrics(window)
                elapsed = time.perf_counter() - window_start
                summary["tokens_per_s"] = window_tokens / max(elapsed, 1e-9)
                summary["steps_per_s"] = len(window) / max(elapsed, 1e-9)
                scale = float(state.plateau.scale) if plateau_tx is not None else 1.0
                summary["lr"] = float(schedule(step)) * scale
                writer.write(step, "train", summary)
                progress.set_postfix(
                    {k: f"{summary[k]:.4g}" for k in task.progress_metrics if k in summary}
                    | {"tok/s": f"{summary['tokens_per_s']:.0f}"}
                )
                window, window_tokens, window_start = [], 0, time.perf_counter()
            progress.update(1)
            is_eval = step % train_cfg.eval_every == 0 or step == total_steps
            if is_eval:
                last_eval = evaluate_and_track(step)
                progress.write(_format_eval(step, last_eval))
            if is_eval or step % train_cfg.checkpoint_every == 0:
                save(step, metrics=last_eval if is_eval else None)
            patience = train_cfg.early_stop_patience
            if is_eval and patience and evals_without_improvement >= patience:
                stop_reason = f"early stop: no better {task.best_metric} in {patience} evaluations"
                break
    progress.close()
    if not checkpointer.all_steps() or checkpointer.latest_step() != step:
        save(step)
    checkpointer.close()
    writer.close()
    wall = time.perf_counter() - run_start
    summary = {
        "task": task.name,
        "stop_reason": stop_reason,
        "steps": step,
        "steps_this_session": step - start_step,
        "wall_seconds": round(wall, 1),
        "tokens_per_s": round(tokens_total / max(wall, 1e-9), 1),
        "best_step": best["step"],
        f"best_{task.best_metric}": best["value"],
        "final_eval": last_eval,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
    }
    if is_main:
        with open(summary_path, "w") as f:
            json.dump(summary, f, indent=2)
        if os.path.exists(writer.path):
            plots.plot_training_curves(writer.path, os.path.join(run_dir, "curves.png"))
        log.info("summary: %s", json.dumps(summary))
    return summary


def _format_eval(step: int, metrics: dict) -> str:
    shown = ", ".join(
        f"{k}={v:.4g}" for k, v in metrics.items() if k != "eval_seconds" and np.isscalar(v)
    )
    return f"eval @ step {step}: {shown}"


def _progress_bar(start: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=start,
        disable=not enabled,
        dynamic_ncols=True,
        desc="train",
        mininterval=1.0,
        smoothing=0.1,
    )
