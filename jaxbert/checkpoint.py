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

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
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


def one_line(error: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, cut to `limit` characters (TensorStore's errors run
    to several lines of JSON specs)."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


# ----------------------------------------------------------------------------- digests
#
# Orbax reads back whatever bytes are on disk: a flipped bit in an array file that still
# decompresses loads silently (often as a finite, wrong number). Every checkpoint's meta holds a
# digest of each array, computed on the device at save time (no host copy of the state) and
# checked after every restore.

DIGESTS_KEY = "digests"
META_DIGEST_KEY = "meta_digest"


def _words(x: jax.Array) -> jax.Array:
    """The array's bytes as a flat uint32 vector (one word per element of up to 4 bytes)."""
    x = jnp.ravel(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size > 4:  # 64-bit values: two words each
        return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def _checksums(tree):
    """Per leaf, [sum of words, sum of words x (2 i + 1)] modulo 2**32 (Fletcher-like: any
    change to one word changes the first, a swap of two changes the second)."""

    def one(x):
        words = _words(x)
        odd = 2 * jnp.arange(words.size, dtype=jnp.uint32) + 1
        return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * odd, dtype=jnp.uint32)])

    return jax.tree.map(one, tree)


def _path_name(path) -> str:
    """`opt_state/1/0/mu/bert/...`: the same for a NamedTuple, a dict or a list holding the
    leaf, so a tree restored without a template (dicts throughout) checks as well."""
    parts = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


_KEYSTR_PART = re.compile(r"\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]|\.(\w+)")


def _plain_key(key: str) -> str:
    """Digest keys of the first checkpoints with digests were jax keystr paths
    (`['opt_state'][1][0].mu`); read them as plain paths."""
    if not key.startswith(("[", ".")):
        return key
    return "/".join(
        next(g for g in m.groups() if g is not None) for m in _KEYSTR_PART.finditer(key)
    )


def array_digests(tree) -> dict[str, str]:
    """{path: 16 hex digits} for every array of `tree` (computed where the arrays live)."""
    sums = jax.device_get(_checksums(tree))
    return {
        _path_name(path): f"{int(s[0]):08x}{int(s[1]):08x}"
        for path, s in jax.tree_util.tree_leaves_with_path(sums)
    }


def meta_digest(meta: dict) -> str:
    """sha256 of the meta's JSON without its own digest (a flipped digit in the data position
    or in an array digest would otherwise go unnoticed)."""
    body = {k: v for k, v in meta.items() if k != META_DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def with_digests(meta: dict, items: dict[str, Any]) -> dict:
    """`meta` plus the digests of every array of each item and of the meta itself."""
    meta = dict(meta, **{DIGESTS_KEY: {name: array_digests(t) for name, t in items.items()}})
    meta[META_DIGEST_KEY] = meta_digest(meta)
    return meta


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (the previous ones are intact)."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint's files read back, but not as they were written."""


def verify(meta: dict, items: dict[str, Any]) -> None:
    """Raises DamagedCheckpointError naming what does not match its saved digest. Checkpoints
    written before digests existed pass unchecked."""
    if META_DIGEST_KEY in meta and meta[META_DIGEST_KEY] != meta_digest(meta):
        raise DamagedCheckpointError("its meta does not match its digest")
    saved = meta.get(DIGESTS_KEY)
    if not saved:
        return
    for name, tree in items.items():
        expected = {_plain_key(k): v for k, v in saved.get(name, {}).items()}
        actual = array_digests(tree)
        bad = [path for path in actual if expected.get(path) != actual[path]]
        bad += [path for path in expected if path not in actual]
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise DamagedCheckpointError(f"{name}/{bad[0]}{more} do not match their digests")


def _report_unusable(step: int, error: BaseException, reported: set | None = None) -> None:
    """One warning line per unusable step, and Orbax's aftermath kept off the terminal."""
    _quiet_failed_reads()
    if reported is not None:
        if step in reported:
            return
        reported.add(step)
    log.warning(
        "checkpoint at step %d is unusable (%s); trying an older one", step, one_line(error)
    )


def _is_orbax_aftermath(exc_type, exc_value, tb) -> bool:
    """Errors left behind by a restore that failed: TensorStore reads still in flight when
    Orbax's event loop closed call back into it ("Event loop is closed", reported through
    sys.unraisablehook), and the loop's other tasks end with exceptions nobody retrieves
    (about 190 lines for one damaged step of a tiny model)."""
    if exc_type is RuntimeError and str(exc_value) == "Event loop is closed":
        return True
    while tb is not None:
        if "orbax" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


class _AftermathFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_orbax_aftermath(*record.exc_info))


_quieted = False


def _quiet_failed_reads() -> None:
    """Installed once, before the first save or when a checkpoint first fails to read: drops
    only the aftermath above, everything else goes to the hooks that were there before. A
    failed write is also logged by Orbax's writer thread (absl, with its traceback) before
    `wait` raises it again here as one CheckpointWriteError line: that log is dropped too."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    previous = sys.unraisablehook

    def hook(unraisable):
        if not _is_orbax_aftermath(
            unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
        ):
            previous(unraisable)

    sys.unraisablehook = hook
    for name in ("asyncio", "absl"):
        logging.getLogger(name).addFilter(_AftermathFilter())


def _move_aside(directory: str, steps: list[int]) -> None:
    """Moves step folders to UNREADABLE_DIR beside the checkpoints (kept, not deleted: an
    unreadable step may still be worth a look)."""
    if jax.process_index() != 0:
        return
    target_root = os.path.join(os.path.dirname(directory), UNREADABLE_DIR)
    os.makedirs(target_root, exist_ok=True)
    for step in steps:
        target, n = os.path.join(target_root, str(step)), 1
        while os.path.exists(target):
            target, n = os.path.join(target_root, f"{step}.{n}"), n + 1
        shutil.move(os.path.join(directory, str(step)), target)
        log.warning("moved the unusable checkpoint of step %d to %s", step, target)


def _unreadable_metrics(directory: str) -> list[int]:
    """Steps whose metrics file does not parse: a CheckpointManager reads every step's metrics
    when it starts, and one damaged file would stop it (JSONDecodeError) before any restore."""
    bad = []
    for step in _step_numbers(directory):
        path = os.path.join(directory, str(step), "metrics", "metrics")
        if os.path.exists(path):
            try:
                with open(path, "rb") as f:
                    json.loads(f.read())
            except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
                _report_unusable(step, error)
                bad.append(step)
    return bad


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
        if not read_only:
            damaged = _unreadable_metrics(self.directory)
            if damaged:
                _move_aside(self.directory, damaged)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._saving: int | None = None  # the step of the save in flight

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
        """Saves asynchronously; call `wait()` before reading it back or exiting. The meta gets
        a digest of every array (checked by `restore`)."""
        meta = with_digests(meta, {"params": params, "train": train})
        _quiet_failed_reads()  # a write that fails is reported once, by `wait`
        self.wait()  # Orbax waits for the previous save anyway; its failure is named here
        self._saving = step
        with self._writing():
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

    @contextlib.contextmanager
    def _writing(self):
        """A failed write (a full disk, a file-size limit, a lost mount) as one CheckpointError
        line naming the step and the newest complete checkpoint, which Orbax's atomic
        rename leaves as it was."""
        try:
            yield
        except Exception as error:
            _quiet_failed_reads()
            complete = [s for s in _step_numbers(self.directory) if s != self._saving]
            kept = f"step {complete[-1]}" if complete else "none"
            raise CheckpointWriteError(
                f"could not write the checkpoint of step {self._saving} in {self.directory} "
                f"({one_line(error)}); the newest complete checkpoint ({kept}) is intact: free "
                "some space and rerun the same command to resume from it"
            ) from error

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
                verify(restored["meta"], {"params": restored["params"], "train": restored["train"]})
            except Exception as error:  # noqa: BLE001 - any read failure means "try the previous"
                _report_unusable(candidate, error)
                errors.append(f"step {candidate}: {one_line(error)}")
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
        _move_aside(self.directory, steps)
        self._manager.reload()

    def wait(self) -> None:
        with self._writing():
            self._manager.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._manager.close()


def has_checkpoint(run_dir: str) -> bool:
    return bool(_step_numbers(os.path.join(run_dir, CHECKPOINT_DIR)))


def _step_numbers(directory: str) -> list[int]:
    """Finished steps, oldest first (a save in progress is `<step>.orbax-checkpoint-tmp...`)."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _step_reader() -> ocp.Checkpointer:
    """Reads one step folder. Serving and `init_from` read steps one by one rather than through
    a CheckpointManager, which parses every step's metrics when it starts and fails as a whole
    on one damaged metrics file. Every saved item is named (Orbax warns on unnamed ones)."""
    return ocp.Checkpointer(
        ocp.CompositeCheckpointHandler(
            params=ocp.StandardCheckpointHandler(),
            train=ocp.StandardCheckpointHandler(),
            meta=ocp.JsonCheckpointHandler(),
            metrics=ocp.JsonCheckpointHandler(),
        )
    )


def load_params(run_dir: str, which: str = "best") -> tuple[Any, dict, int]:
    """Params (a plain nested dict of arrays), meta and step of a run, without optimizer state.

    `which` is "best" (falls back to the latest when no checkpoint has metrics) or "latest".
    A step whose files do not match their digests, or do not read, is reported in one line and
    the next newest is used.
    """
    directory = os.path.abspath(os.path.join(run_dir, CHECKPOINT_DIR))
    steps = _step_numbers(directory)[::-1]
    if not steps:
        raise CheckpointError(
            f"{run_dir!r} has no checkpoints (expected {directory}/<step>/). Train one with "
            "scripts/pretrain.py or scripts/finetune.py."
        )
    errors, reported = [], set()
    with _step_reader() as reader:
        if which == "best":
            best = _best_step_from_meta(reader, directory, steps, reported)
            if best is not None:
                steps = [best] + [s for s in steps if s != best]
        for step in steps:
            path = os.path.join(directory, str(step))
            try:
                restored = reader.restore(
                    path,
                    args=ocp.args.Composite(
                        params=ocp.args.StandardRestore(_on_this_device(reader, path)),
                        meta=ocp.args.JsonRestore(),
                    ),
                )
                verify(restored["meta"], {"params": restored["params"]})
                _check_finite(restored["params"])
            except Exception as error:  # noqa: BLE001 - any failure means "try the previous"
                _report_unusable(step, error, reported)
                errors.append(f"step {step}: {one_line(error)}")
                continue
            return restored["params"], restored["meta"], step
    raise CheckpointError(f"no readable checkpoint in {run_dir!r}:\n  " + "\n  ".join(errors))


def _on_this_device(reader: ocp.Checkpointer, path: str):
    """The saved params' shapes and dtypes, placed on this process' first device: without a
    target Orbax restores the shardings they were saved with, and a checkpoint written on 8
    GPUs would not load on a laptop ("Topology mismatch")."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        reader.metadata(path).item_metadata["params"],
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


def _newest_meta(
    reader: ocp.Checkpointer, directory: str, steps: list[int], reported: set | None = None
) -> dict | None:
    """The meta of the newest step whose meta reads and matches its digest (no arrays read)."""
    for step in sorted(steps, reverse=True):
        try:
            meta = reader.restore(
                os.path.join(directory, str(step)),
                args=ocp.args.Composite(meta=ocp.args.JsonRestore()),
            )["meta"]
            verify(meta, {})
            return meta
        except Exception as error:  # noqa: BLE001
            _report_unusable(step, error, reported)
            continue
    return None


def _best_step_from_meta(reader, directory: str, steps: list[int], reported: set) -> int | None:
    """The step whose saved meta marks it best (meta['best_step'] of the newest readable step)."""
    meta = _newest_meta(reader, directory, steps, reported)
    best = meta.get("best_step") if meta else None
    return best if best in steps else None


def load_meta(run_dir: str) -> dict:
    """The newest readable checkpoint's meta (model config, tokenizer, labels, ...) alone."""
    directory = os.path.abspath(os.path.join(run_dir, CHECKPOINT_DIR))
    with _step_reader() as reader:
        meta = _newest_meta(reader, directory, _step_numbers(directory))
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
    `bert` encoder and whatever heads it has: pretraining's `cls`, a fine-tuning run's projection
    and NLI head; each caller takes the ones its model has) or `hf:<folder>` (a Hugging Face
    BERT / sentence-transformers folder, safetensors only)."""
    if init_from.startswith("hf:"):
        from jaxbert import hf

        loaded = hf.load_pretrained(init_from[3:])
        return loaded.config, loaded.tokenizer, loaded.params
    params, meta, step = load_params(init_from, which="best")
    if "bert" not in params:
        raise CheckpointError(f"{init_from!r} (step {step}) holds no BERT encoder")
    log.info("initialising the encoder from %s, step %d", init_from, step)
    return (*model_and_tokenizer(meta), params)
