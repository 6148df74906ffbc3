"""The training loop shared by every task, and its device plumbing (mesh, sharded batches,
prefetch).

Pretraining and fine-tuning differ only in the `Task` they hand to `run`: its parameters, loss,
batches and evaluation. Data parallelism is `jax.jit` of `jaxbert.update.make_train_step` over
a 1-D device mesh with the batch sharded on the `data` axis. `run` reads as its parts: the
setup (`_Setup`, `_start`), the step loop (`_StepLoop`), evaluation (`_Evaluation`,
`BestTracker`) and the checkpoint policy (`_CheckpointPolicy`).
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

    Start-up order (`_start`):
      (1) resume this run directory if it holds a checkpoint (params, optimizer, data position);
      (2) otherwise `task.init_params`, which initialises the encoder from another run or from
          imported weights when the config says so,
      (3) or from scratch.
    """
    setup = _Setup(task, config, run_dir)
    state, step, tracker, resumed = _start(task, setup)
    summary_path = os.path.join(run_dir, "summary.json")
    if resumed and step >= config.train.num_steps and os.path.exists(summary_path):
        setup.checkpointer.close()
        log.info("%s has already finished; its summary stays as it is", run_dir)
        with open(summary_path) as f:
            return json.load(f)
    writer = MetricsWriter(run_dir, enabled=setup.is_main)
    writer.truncate_after(step)
    window = _MetricsWindow()
    evaluation = _Evaluation(task, writer, tracker, setup.plateau_tx, setup.replicated)
    saver = _CheckpointPolicy(setup.checkpointer, task.meta, tracker, window, config.train)
    loop = _StepLoop(task, setup, writer, window, evaluation, saver)
    start_step = step
    progress = _progress_bar(step, config.train.num_steps, enabled=setup.is_main)
    try:
        state, step, last_eval = loop.run(state, step, progress)
        progress.close()
        if not setup.checkpointer.all_steps() or setup.checkpointer.latest_step() != step:
            saver.save(step, state, loop.data_state)
    except NonFiniteLossError:
        progress.close()
        setup.checkpointer.close()
        raise
    setup.checkpointer.close()
    writer.close()
    wall = time.perf_counter() - loop.started
    summary = {
        "task": task.name,
        "stop_reason": loop.stop_reason,
        "steps": step,
        "steps_this_session": step - start_step,
        "wall_seconds": round(wall, 1),
        "tokens_per_s": round(loop.tokens / max(wall, 1e-9), 1),
        "best_step": tracker.step,
        f"best_{task.best_metric}": tracker.value,
        "final_eval": last_eval,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
    }
    if setup.is_main:
        with open(summary_path, "w") as f:
            json.dump(summary, f, indent=2)
        if os.path.exists(writer.path):
            plots.plot_training_curves(writer.path, os.path.join(run_dir, "curves.png"))
        log.info("summary: %s", json.dumps(summary))
    return summary


# ----------------------------------------------------------------------------- setup


class _Setup:
    """What a run fixes before its first step: the run directory, shardings, optimizer, rngs,
    checkpointer and the compiled step."""

    def __init__(self, task: Task, config, run_dir: str):
        train_cfg, optim = config.train, config.optim
        self.config, self.run_dir = config, run_dir
        self.is_main = jax.process_index() == 0
        if checkpoint.has_checkpoint(run_dir):
            saved = checkpoint.load_meta(run_dir).get("model_config")
            if saved and "model_config" in task.meta:
                check_same_architecture(saved, task.meta["model_config"], run_dir)
        os.makedirs(run_dir, exist_ok=True)
        if self.is_main:  # the resolved experiment config, as this run saw it
            with open(os.path.join(run_dir, "config.json"), "w") as f:
                f.write(config.to_json(indent=2))
        mesh = make_mesh()
        self.replicated = NamedSharding(mesh, P())
        self.batch_sharding = NamedSharding(mesh, P("data"))
        if train_cfg.batch_size % (jax.device_count() * optim.grad_accum):
            raise ValueError(
                f"train.batch_size {train_cfg.batch_size} must be divisible by the device count "
                f"({jax.device_count()}) times optim.grad_accum ({optim.grad_accum})"
            )
        # Simulated CPU devices can deadlock when collectives are queued back to back; waiting
        # for each step costs nothing that matters on CPU. Never done on accelerators.
        self.sync_every_step = jax.default_backend() == "cpu" and jax.device_count() > 1
        self.tx, self.plateau_tx, self.schedule = make_optimizer(optim, train_cfg.num_steps)
        self.init_rng, self.step_rng = jax.random.split(jax.random.key(config.seed))
        self.checkpointer = checkpoint.Checkpointer(
            run_dir,
            keep=train_cfg.keep_checkpoints,
            best_metric=task.best_metric,
            best_mode=task.best_mode,
        )
        self.train_step = jax.jit(
            make_train_step(
                task.loss_fn,
                self.tx,
                grad_accum=optim.grad_accum,
                use_plateau=self.plateau_tx is not None,
            ),
            in_shardings=(self.replicated, self.batch_sharding, self.replicated),
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=(0,),
        )


def _start(task: Task, setup: _Setup) -> tuple[TrainState, int, BestTracker, bool]:
    """(state, step, best tracker, resumed), in the start-up order of `run`."""

    def init_state(key):
        return create_state(task.init_params(key), setup.tx, setup.plateau_tx)

    def state_from_params(params):
        return create_state(params, setup.tx, setup.plateau_tx)

    abstract_state = jax.eval_shape(init_state, setup.init_rng)
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=setup.replicated),
        abstract_state,
    )
    restored = setup.checkpointer.restore(
        abstract_state.params,
        {
            "step": abstract_state.step,
            "opt_state": abstract_state.opt_state,
            "plateau": abstract_state.plateau,
        },
    )
    if restored is not None:  # (1)
        step, params, train, meta = restored
        state = TrainState(
            step=train["step"],
            params=params,
            opt_state=train["opt_state"],
            plateau=train["plateau"],
        )
        task.train_batches.restore(meta["data_state"])
        tracker = BestTracker.from_meta(task.best_mode, meta)
        log.info("resumed %s from step %d", setup.run_dir, step)
        return state, step, tracker, True
    params = jax.jit(task.init_params, out_shardings=setup.replicated)(setup.init_rng)  # (3)
    if task.init_from is not None:  # (2)
        params = jax.device_put(task.init_from(params), setup.replicated)
    state = jax.jit(state_from_params, out_shardings=setup.replicated)(params)
    return state, 0, BestTracker(task.best_mode), False


# ----------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class BestTracker:
    """The best evaluation value so far, its step, and the evaluations since (early stop)."""

    mode: str  # "min" or "max"
    value: float | None = None
    step: int | None = None
    evals_without_improvement: int = 0

    @classmethod
    def from_meta(cls, mode: str, meta: dict) -> BestTracker:
        return cls(
            mode,
            meta.get("best_value"),
            meta.get("best_step"),
            meta.get("evals_without_improvement", 0),
        )

    def meta(self) -> dict:
        """The fields a checkpoint carries so a resumed run keeps tracking."""
        return dict(
            best_value=self.value,
            best_step=self.step,
            evals_without_improvement=self.evals_without_improvement,
        )

    def update(self, step: int, value: float) -> None:
        better = self.value is None or (
            value < self.value if self.mode == "min" else value > self.value
        )
        if better:
            self.value, self.step, self.evals_without_improvement = value, step, 0
        else:
            self.evals_without_improvement += 1

    def patience_exhausted(self, patience: int) -> bool:
        """Whether `patience` (> 0) evaluations in a row have not improved on the best."""
        return bool(patience) and self.evals_without_improvement >= patience


class _Evaluation:
    """Runs the task's evaluation, logs it, tracks the best value and feeds the plateau
    schedule (which sees the evaluation loss, not the noisy step loss)."""

    def __init__(
        self, task: Task, writer: MetricsWriter, tracker: BestTracker, plateau_tx, sharding
    ):
        self.task, self.writer, self.tracker = task, writer, tracker
        self.plateau_tx, self.sharding = plateau_tx, sharding

    def __call__(self, state: TrainState, step: int) -> tuple[TrainState, dict]:
        started = time.perf_counter()
        metrics = self.task.evaluate(state.params)
        metrics["eval_seconds"] = time.perf_counter() - started
        self.writer.write(step, "eval", metrics)
        value = metrics[self.task.best_metric]
        self.tracker.update(step, value)
        if self.plateau_tx is not None:
            signed = value if self.task.best_mode == "min" else -value
            _, new_plateau = self.plateau_tx.update(
                updates=jnp.zeros(()), state=state.plateau, value=jnp.asarray(signed)
            )
            state = state.replace(plateau=jax.device_put(new_plateau, self.sharding))
        return state, metrics


# ----------------------------------------------------------------------------- checkpoints


class _CheckpointPolicy:
    """When to save (every evaluation, every `checkpoint_every` steps, the last step) and what
    a checkpoint carries; never saves parameters from a diverged step."""

    def __init__(self, checkpointer, task_meta: dict, tracker: BestTracker, window, train_cfg):
        self.checkpointer, self.task_meta, self.tracker = checkpointer, task_meta, tracker
        self.window, self.every = window, train_cfg.checkpoint_every

    def due(self, step: int, is_eval: bool) -> bool:
        return is_eval or step % self.every == 0

    def check_finite(self, step: int) -> None:
        """Raises NonFiniteLossError naming the first diverged step not yet logged."""
        bad_step = self.window.first_non_finite(step)
        if bad_step is not None:
            raise NonFiniteLossError(
                f"non-finite loss at step {bad_step}; stopping without saving. The last "
                f"good checkpoint is in {self.checkpointer.directory}. Lower optim.lr or "
                "raise optim.warmup_fraction."
            )

    def save(self, step: int, state: TrainState, data_state, metrics: dict | None = None):
        self.check_finite(step)
        meta = dict(self.task_meta, step=step, data_state=data_state, **self.tracker.meta())
        self.checkpointer.save(
            step,
            params=state.params,
            train={"step": state.step, "opt_state": state.opt_state, "plateau": state.plateau},
            meta=meta,
            metrics=metrics,
        )


# ----------------------------------------------------------------------------- the step loop


class _MetricsWindow:
    """The step metrics since the last log line (left on the device until then) and the
    tokens they saw."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.metrics: list[dict] = []
        self.tokens = 0
        self.started = time.perf_counter()

    def add(self, metrics: dict, tokens: int) -> None:
        self.metrics.append(metrics)
        self.tokens += tokens

    def first_non_finite(self, step: int) -> int | None:
        """The first diverged step of the window, which ends at `step`."""
        if not self.metrics:
            return None
        return _first_non_finite(self.metrics, step - len(self.metrics) + 1)

    def summary(self) -> dict[str, float]:
        summary = _mean_metrics(self.metrics)
        elapsed = time.perf_counter() - self.started
        summary["tokens_per_s"] = self.tokens / max(elapsed, 1e-9)
        summary["steps_per_s"] = len(self.metrics) / max(elapsed, 1e-9)
        return summary


class _StepLoop:
    """Steps until `num_steps`, a stop signal or early stopping: train, log every `log_every`
    steps, evaluate every `eval_every` steps, save as the checkpoint policy says."""

    def __init__(self, task, setup, writer, window, evaluation, saver):
        self.task, self.setup, self.writer, self.window = task, setup, writer, window
        self.evaluation, self.saver = evaluation, saver
        self.data_state = task.train_batches.state()
        self.stop_reason = "finished"
        self.tokens = 0
        self.started = time.perf_counter()

    def _batches(self) -> Iterator:
        batches = self.task.train_batches
        return prefetch(
            ((batch, batches.state()) for batch in batches),
            lambda item: (
                shard_batch(item[0], self.setup.batch_sharding),
                item[1],
                self.task.count_tokens(item[0]),
            ),
        )

    def _log(self, step: int, state: TrainState, progress) -> None:
        self.saver.check_finite(step)
        summary = self.window.summary()
        scale = float(state.plateau.scale) if self.setup.plateau_tx is not None else 1.0
        summary["lr"] = float(self.setup.schedule(step)) * scale
        self.writer.write(step, "train", summary)
        progress.set_postfix(
            {k: f"{summary[k]:.4g}" for k in self.task.progress_metrics if k in summary}
            | {"tok/s": f"{summary['tokens_per_s']:.0f}"}
        )
        self.window.reset()

    def run(self, state: TrainState, step: int, progress) -> tuple[TrainState, int, dict]:
        """(state, step, last evaluation) when the loop stops."""
        train_cfg, setup = self.setup.config.train, self.setup
        total_steps = train_cfg.num_steps
        batches = self._batches()
        last_eval: dict = {}
        # The starting point, e.g. imported weights; a run resumed from its step-0 checkpoint
        # (killed before step 1's save) has evaluated and saved it already.
        if step == 0 and train_cfg.eval_at_start and not setup.checkpointer.all_steps():
            state, last_eval = self.evaluation(state, 0)
            log.info(_format_eval(0, last_eval))
            # It may stay the best: fine-tuning can make a model worse.
            self.saver.save(0, state, self.data_state, metrics=last_eval)
        with _StopRequest() as stop:
            while step < total_steps:
                if stop.signal_name:
                    self.stop_reason = f"stopped by {stop.signal_name}"
                    break
                device_batch, self.data_state, tokens = next(batches)
                state, metrics = setup.train_step(state, device_batch, setup.step_rng)
                if setup.sync_every_step:
                    metrics["loss"].block_until_ready()
                step += 1
                self.window.add(metrics, tokens)
                self.tokens += tokens
                if step % train_cfg.log_every == 0 or step == total_steps:
                    self._log(step, state, progress)
                progress.update(1)
                is_eval = step % train_cfg.eval_every == 0 or step == total_steps
                if is_eval:
                    state, last_eval = self.evaluation(state, step)
                    progress.write(_format_eval(step, last_eval))
                if self.saver.due(step, is_eval):
                    self.saver.save(step, state, self.data_state, last_eval if is_eval else None)
                patience = train_cfg.early_stop_patience
                if is_eval and self.evaluation.tracker.patience_exhausted(patience):
                    self.stop_reason = (
                        f"early stop: no better {self.task.best_metric} in {patience} evaluations"
                    )
                    break
        return state, step, last_eval


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
