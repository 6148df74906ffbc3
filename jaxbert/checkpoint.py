"""One small Orbax wrapper: save, restore (falling back past corrupt steps), load params only.

A run directory looks like

    run/
      config.json             resolved experiment config (written at start)
      tokenizer.json          the tokenizer every later stage reads
      checkpoints/<step>/     params, train (step, optimizer state), meta (JSON)

`meta` carries the model config, the tokenizer, label names and the data position, so a run
directory alone rebuilds the model for serving.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import BertConfig

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
# Unreadable steps newer than the one a run resumed from are moved here: left in place, the
# resumed run would fail when it reached their step number (Orbax refuses to overwrite a step).
UNREADABLE_DIR = "checkpoints_unreadable"


class CheckpointError(RuntimeError):
    """No usable checkpoint in a directory that should have one."""


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Keeps the last `keep` checkpoints plus the best one by `best_metric`."""

    def __init__(
        self,
        run_dir: str,
        *,
        keep: int = 3,
        best_metric: str | None = None,
        best_mode: str = "min",
        read_only: bool = False,
    ):
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
        self.directory = os.path.abspath(os.path.join(run_dir, CHECKPOINT_DIR))
        policies = [checkpoint_managers.LatestN(n=keep)]
        best_fn = None
        if best_metric:

            def best_fn(metrics):
                return float(metrics[best_metric])

            # BestN sorts ascending and keeps the last n: descending when lower is better.
            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=best_fn,
                    reverse=best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            best_fn=best_fn,
            best_mode=best_mode,
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            create=not read_only,
            read_only=read_only,
        )
        self.read_only = read_only
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        return self._manager.best_step()

    def save(
        self,
        step: int,
        *,
        params: Any,
        train: Any,
        meta: dict,
        metrics: dict | None = None,
    ) -> None:
        """Saves asynchronously; call `wait()` before reading it back or exiting."""
        self._manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params),
                train=ocp.args.StandardSave(train),
                meta=ocp.args.JsonSave(meta),
            ),
            metrics=metrics,
            force=True,
        )

    def restore(self, params_template: Any, train_template: Any, step: int | None = None):
        """Restores (step, params, train, meta), newest first, skipping unreadable checkpoints.

        Templates give the structure, shapes and shardings (optax states come back as their
        NamedTuples, not dicts). Returns None when the directory holds no checkpoint.
        """
        steps = [step] if step is not None else list(reversed(self.all_steps()))
        errors = []
        for candidate in steps:
            try:
                restored = self._manager.restore(
                    candidate,
                    args=ocp.args.Composite(
                        params=ocp.args.StandardRestore(_abstract(params_template)),
                        train=ocp.args.StandardRestore(_abstract(train_template)),
                        meta=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as error:  # noqa: BLE001 - any read failure means "try the previous"
                log.warning(
                    "checkpoint at step %d is unreadable (%s); trying an older one",
                    candidate,
                    error,
                )
                errors.append(f"step {candidate}: {type(error).__name__}: {error}")
                continue
            if errors and not self.read_only:
                self._set_aside([s for s in steps if s > candidate])
            return candidate, restored["params"], restored["train"], restored["meta"]
        if errors:
            raise CheckpointError(
                f"no readable checkpoint in {self.directory}:\n  "
                + "\n  ".join(errors)
                + "\nDelete the broken step folders or start a new --workdir."
            )
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Moves unreadable step folders to UNREADABLE_DIR beside the checkpoints (kept, not
        deleted: an unreadable step may still be worth a look)."""
        if jax.process_index() == 0:
            target_root = os.path.join(os.path.dirname(self.directory), UNREADABLE_DIR)
            os.makedirs(target_root, exist_ok=True)
            for step in steps:
                target, n = os.path.join(target_root, str(step)), 1
                while os.path.exists(target):
                    target, n = os.path.join(target_root, f"{step}.{n}"), n + 1
                shutil.move(os.path.join(self.directory, str(step)), target)
                log.warning("moved the unreadable checkpoint of step %d to %s", step, target)
        self._manager.reload()

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def has_checkpoint(run_dir: str) -> bool:
    directory = os.path.join(run_dir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return False
    return any(name.isdigit() for name in os.listdir(directory))


def load_params(run_dir: str, which: str = "best") -> tuple[Any, dict, int]:
    """Params (a plain nested dict of arrays), meta and step of a run, without optimizer state.

    `which` is "best" (falls back to the latest when no checkpoint has metrics) or "latest".
    """
    if not has_checkpoint(run_dir):
        raise CheckpointError(
            f"{run_dir!r} has no checkpoints (expected {os.path.join(run_dir, CHECKPOINT_DIR)}/"
            "<step>/). Train one with scripts/pretrain.py or scripts/finetune.py."
        )
    manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(run_dir, CHECKPOINT_DIR)),
        options=ocp.CheckpointManagerOptions(read_only=True, create=False),
        # Every saved item named (train is not read here; unnamed, Orbax warns on each load).
        item_handlers={
            "params": ocp.StandardCheckpointHandler(),
            "train": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )
    steps = sorted(manager.all_steps(), reverse=True)
    if which == "best":
        best = _best_step_from_meta(manager, steps)
        if best is not None:
            steps = [best] + [s for s in steps if s != best]
    errors = []
    for step in steps:
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    params=ocp.args.StandardRestore(_on_this_device(manager, step)),
                    meta=ocp.args.JsonRestore(),
                ),
            )
            _check_finite(restored["params"])
        except Exception as error:  # noqa: BLE001
            log.warning(
                "checkpoint at step %d is unreadable (%s); trying an older one", step, error
            )
            errors.append(f"step {step}: {type(error).__name__}: {error}")
            continue
        manager.close()
        return restored["params"], restored["meta"], step
    manager.close()
    raise CheckpointError(f"no readable checkpoint in {run_dir!r}:\n  " + "\n  ".join(errors))


def _on_this_device(manager, step: int):
    """The saved params' shapes and dtypes, placed on this process' first device: without a
    target Orbax restores the shardings they were saved with, and a checkpoint written on 8
    GPUs would not load on a laptop ("Topology mismatch")."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        manager.item_metadata(step)["params"],
    )


def _check_finite(params) -> None:
    """Training never saves non-finite parameters, so any means the files were damaged."""
    bad = [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if not bool(jnp.isfinite(leaf).all())
    ]
    if bad:
        raise ValueError(f"non-finite values in {', '.join(bad[:3])}" + (" ..." if bad[3:] else ""))


def _newest_meta(manager, steps: list[int]) -> dict | None:
    """The meta of the newest readable step (no arrays are read)."""
    for step in sorted(steps, reverse=True):
        try:
            return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
                "meta"
            ]
        except Exception:  # noqa: BLE001
            continue
    return None


def _best_step_from_meta(manager, steps: list[int]) -> int | None:
    """The step whose saved meta marks it best (meta['best_step'] of the newest readable step)."""
    meta = _newest_meta(manager, steps)
    best = meta.get("best_step") if meta else None
    return best if best in steps else None


def load_meta(run_dir: str) -> dict:
    """The newest readable checkpoint's meta (model config, tokenizer, labels, ...) alone."""
    manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(run_dir, CHECKPOINT_DIR)),
        options=ocp.CheckpointManagerOptions(read_only=True, create=False),
    )
    meta = _newest_meta(manager, list(manager.all_steps()))
    manager.close()
    if meta is None:
        raise CheckpointError(f"no readable checkpoint in {run_dir!r}")
    return meta


def model_and_tokenizer(meta: dict) -> tuple[BertConfig, BertTokenizer]:
    """The model config and tokenizer every checkpoint's meta carries."""
    return BertConfig.from_dict(meta["model_config"]), BertTokenizer.from_json_str(
        meta["tokenizer"]
    )


def load_encoder(init_from: str):
    """(BertConfig, BertTokenizer, params) to start a run from: another run directory (its
    `bert` subtree, plus pretraining heads `cls` when it has them) or `hf:<folder>` (a Hugging
    Face BERT / sentence-transformers folder, safetensors only)."""
    if init_from.startswith("hf:"):
        from jaxbert import hf

        loaded = hf.load_pretrained(init_from[3:])
        return loaded.config, loaded.tokenizer, loaded.params
    params, meta, step = load_params(init_from, which="best")
    if "bert" not in params:
        raise CheckpointError(f"{init_from!r} (step {step}) holds no BERT encoder")
    log.info("initialising the encoder from %s, step %d", init_from, step)
    kept = {k: v for k, v in params.items() if k in ("bert", "cls")}
    return (*model_and_tokenizer(meta), kept)
