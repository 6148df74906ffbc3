"""Damaged checkpoints: every array's digest is checked on load, a damaged step is reported in
one line and the previous one is used, and Orbax's aftermath stays off the terminal."""

import glob
import json
import logging
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbert import checkpoint


def save_two_steps(run_dir):
    checkpointer = checkpoint.Checkpointer(str(run_dir), best_metric="loss")
    for step in (1, 2):
        params = {"dense": {"kernel": jnp.arange(4096, dtype=jnp.float32) * step}}
        train = {"step": jnp.int32(step), "mu": jnp.full((64,), 0.5 * step, jnp.bfloat16)}
        meta = {"data_state": {"position": 10 * step}}
        checkpointer.save(step, params=params, train=train, meta=meta, metrics={"loss": 3 - step})
    checkpointer.close()


def largest_file(run_dir, step, item):
    files = glob.glob(str(run_dir / "checkpoints" / str(step) / item / "**"), recursive=True)
    return max((f for f in files if os.path.isfile(f)), key=os.path.getsize)


def flip_byte(path, fraction=0.5):
    data = bytearray(open(path, "rb").read())
    data[int(len(data) * fraction)] ^= 0x01
    open(path, "wb").write(data)


def restore(run_dir):
    template_params = {"dense": {"kernel": jnp.zeros(4096, jnp.float32)}}
    template_train = {"step": jnp.int32(0), "mu": jnp.zeros((64,), jnp.bfloat16)}
    checkpointer = checkpoint.Checkpointer(str(run_dir), best_metric="loss")
    restored = checkpointer.restore(template_params, template_train)
    checkpointer.close()
    return restored


def test_digests_are_saved_and_change_with_any_word():
    a = {"w": jnp.arange(10, dtype=jnp.float32), "b": jnp.array([True, False])}
    digests = checkpoint.array_digests(a)
    assert set(digests) == {"w", "b"} and all(len(d) == 16 for d in digests.values())
    assert checkpoint.array_digests(a) == digests
    for changed in (
        {"w": a["w"].at[7].set(7.000001), "b": a["b"]},
        {"w": a["w"][::-1], "b": a["b"]},  # same words, other order
        {"w": a["w"], "b": jnp.array([True, True])},
    ):
        assert checkpoint.array_digests(changed) != digests


@pytest.mark.parametrize("item", ["params", "train"])
def test_a_flipped_byte_is_caught_and_the_previous_step_used(tmp_path, item, caplog):
    save_two_steps(tmp_path)
    flip_byte(largest_file(tmp_path, 2, item))
    with caplog.at_level(logging.WARNING, logger="jaxbert.checkpoint"):
        step, params, train, meta = restore(tmp_path)
    assert step == 1 and meta["data_state"] == {"position": 10}
    np.testing.assert_array_equal(params["dense"]["kernel"], np.arange(4096, dtype=np.float32))
    unusable = [r.getMessage() for r in caplog.records if "is unusable" in r.getMessage()]
    assert len(unusable) == 1 and "checkpoint at step 2 is unusable" in unusable[0]
    assert "\n" not in unusable[0]
    assert os.listdir(tmp_path / "checkpoints_unreadable") == ["2"]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_truncated_or_missing_array_file_is_caught(tmp_path, damage):
    save_two_steps(tmp_path)
    path = largest_file(tmp_path, 2, "params")
    if damage == "truncate":
        os.truncate(path, os.path.getsize(path) // 2)
    else:
        os.remove(path)
    params, _, step = checkpoint.load_params(str(tmp_path), which="latest")
    assert step == 1


def test_an_edited_meta_is_caught(tmp_path):
    save_two_steps(tmp_path)
    path = tmp_path / "checkpoints" / "2" / "meta" / "metadata"
    meta = json.loads(path.read_text())
    meta["data_state"]["position"] = 21  # still valid JSON, a wrong data position
    path.write_text(json.dumps(meta))
    assert checkpoint.load_meta(str(tmp_path))["data_state"] == {"position": 10}
    assert restore(tmp_path)[0] == 1


def test_a_damaged_metrics_file_does_not_stop_loading_or_resuming(tmp_path):
    # Orbax's CheckpointManager parses every step's metrics when it starts: one bad file
    # used to end every load and resume with a JSONDecodeError.
    save_two_steps(tmp_path)
    metrics = tmp_path / "checkpoints" / "2" / "metrics" / "metrics"
    os.truncate(metrics, os.path.getsize(metrics) // 2)
    _, _, step = checkpoint.load_params(str(tmp_path), which="latest")
    assert step == 2  # serving reads params and meta, which are intact
    assert restore(tmp_path)[0] == 1  # training needs the metrics: the step is set aside


def test_digests_do_not_depend_on_the_container_types():
    import optax

    state = optax.adam(1e-3).init({"w": jnp.ones(3)})  # NamedTuples inside a tuple
    as_dicts = [{"count": state[0].count, "mu": state[0].mu, "nu": state[0].nu}, {}]
    assert checkpoint.array_digests(state) == checkpoint.array_digests(as_dicts)


def test_checkpoints_without_digests_still_load(tmp_path):
    save_two_steps(tmp_path)
    for step in (1, 2):
        path = tmp_path / "checkpoints" / str(step) / "meta" / "metadata"
        meta = json.loads(path.read_text())
        del meta[checkpoint.DIGESTS_KEY], meta[checkpoint.META_DIGEST_KEY]
        path.write_text(json.dumps(meta))
    assert restore(tmp_path)[0] == 2


def test_orbax_aftermath_is_dropped_and_nothing_else():
    script = """
import logging
logging.basicConfig()
from jaxbert import checkpoint
checkpoint._quiet_failed_reads()
class Raises:  # an exception in __del__ goes to sys.unraisablehook, as TensorStore's do
    def __init__(self, message):
        self.message = message
    def __del__(self):
        raise RuntimeError(self.message)
Raises("Event loop is closed")
Raises("something else")
logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=(
    RuntimeError, RuntimeError("Event loop is closed"), None))
logging.getLogger("asyncio").error("another asyncio error")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "something else" in result.stderr and "another asyncio error" in result.stderr
    assert "Event loop is closed" not in result.stderr
    assert "never retrieved" not in result.stderr


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path):
    # RLIMIT_FSIZE makes writes past 1 MB fail with EFBIG, as a full disk fails them.
    script = f"""
import logging, resource, jax.numpy as jnp
logging.basicConfig()  # as the scripts log (jaxbert.cli.setup)
from jaxbert import checkpoint
checkpointer = checkpoint.Checkpointer({str(tmp_path)!r})
checkpointer.save(1, params={{"w": jnp.ones(16)}}, train={{"step": jnp.int32(1)}}, meta={{}})
checkpointer.wait()
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
big = jnp.arange(1_000_000, dtype=jnp.float32)  # 4 MB of distinct values
checkpointer.save(2, params={{"w": big}}, train={{"step": jnp.int32(2)}}, meta={{}})
try:
    checkpointer.close()
except checkpoint.CheckpointWriteError as error:
    print("ERROR", error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("ERROR")]
    assert "could not write the checkpoint of step 2" in line and "(step 1) is intact" in line
    # Orbax's own report of the failed write (its thread's traceback, TensorStore callbacks into
    # a closed event loop: ~660 lines in a tiny fine-tuning run) stays off the terminal.
    assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr
    params, _, step = checkpoint.load_params(str(tmp_path), which="latest")
    assert step == 1 and params["w"].shape == (16,)


def test_digests_written_as_keystr_paths_still_check(tmp_path):
    # The first checkpoints with digests keyed them by jax's keystr (['dense']['kernel']).
    save_two_steps(tmp_path)
    path = tmp_path / "checkpoints" / "2" / "meta" / "metadata"
    meta = json.loads(path.read_text())
    for item in meta[checkpoint.DIGESTS_KEY].values():
        for key in list(item):
            item["".join(f"['{part}']" for part in key.split("/"))] = item.pop(key)
    meta[checkpoint.META_DIGEST_KEY] = checkpoint.meta_digest(meta)
    path.write_text(json.dumps(meta))
    assert restore(tmp_path)[0] == 2
