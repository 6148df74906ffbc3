"""Fault injection for the README's "Reliability" table (`scripts/faults.py`).

Runs the real entry points (`scripts/pretrain.py`, `scripts/finetune.py`) as subprocesses on
tiny configs and checks what a user would: the same command twice gives the same bits; a run
killed at a random moment and rerun ends bit-identical to an uninterrupted one; SIGTERM saves
a checkpoint; damaged checkpoint files are caught; a full disk leaves the previous checkpoint
intact and ends with one clear line.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 30
SMALL_RUN = [  # a few dozen steps with a checkpoint every 5 and an evaluation every 10
    f"--config.train.num_steps={NUM_STEPS}",
    "--config.train.batch_size=8",
    "--config.train.log_every=5",
    "--config.train.eval_every=10",
    "--config.train.checkpoint_every=5",
]
COMMANDS = {
    "pretraining": [
        "scripts/pretrain.py",
        "--config=configs/pretrain_tiny.py",
        "--config.data.max_documents=300",
        "--config.tokenizer.vocab_size=2000",
        "--config.train.eval_batches=2",
        *SMALL_RUN,
    ],
    "fine-tuning": [
        "scripts/finetune.py",
        "--config=configs/sbert_nli_tiny.py",
        "--config.data.max_train_pairs=400",
        "--config.data.max_eval_pairs=100",
        *SMALL_RUN,
    ],
}


@dataclasses.dataclass
class Result:
    ok: bool
    seconds: float
    output: str
    returncode: int


def command(task: str, workdir: str) -> list[str]:
    """The task's command line; its data cache lives in the run directory, so every run
    tokenizes (and trains its tokenizer) from scratch."""
    extra = []
    if task == "pretraining":
        extra = [f"--config.data.cache_dir={workdir}/cache"]
    return [sys.executable, *COMMANDS[task], f"--workdir={workdir}", *extra]


def _env(scratch: str) -> dict:
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        JAXBERT_COMPILATION_CACHE=os.path.join(scratch, "xla"),
    )


def start(task: str, workdir: str, scratch: str, file_size_limit: int | None = None):
    def limit():
        os.nice(19)
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    log = open(workdir + ".log", "ab")
    return subprocess.Popen(
        command(task, workdir),
        cwd=ROOT,
        env=_env(scratch),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=limit,
    )


def run(task: str, workdir: str, scratch: str, **kwargs) -> Result:
    started = time.perf_counter()
    process = start(task, workdir, scratch, **kwargs)
    returncode = process.wait()
    with open(workdir + ".log", errors="replace") as f:
        output = f.read()
    return Result(returncode == 0, time.perf_counter() - started, output, returncode)


# ----------------------------------------------------------------------------- reading runs


def _steps(workdir: str) -> list[int]:
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def _saving(workdir: str) -> bool:
    return bool(glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*")))


def final_state(workdir: str) -> dict[str, bytes]:
    """{path: bytes} of the newest checkpoint's params and train state (optimizer included),
    plus the data position and the vocabulary."""
    import orbax.checkpoint as ocp

    step = _steps(workdir)[-1]
    path = os.path.join(workdir, "checkpoints", str(step))
    out = {}
    with ocp.StandardCheckpointer() as reader:
        for item in ("params", "train"):
            import jax

            tree = reader.restore(os.path.join(path, item))
            for key, leaf in jax.tree_util.tree_leaves_with_path(tree):
                leaf = np.asarray(leaf)
                out[item + jax.tree_util.keystr(key)] = leaf.dtype.str.encode() + leaf.tobytes()
    with open(os.path.join(path, "meta", "metadata"), "rb") as f:
        import json

        out["data_state"] = json.dumps(json.loads(f.read())["data_state"]).encode()
    vocab = os.path.join(workdir, "vocab.txt")
    if os.path.exists(vocab):
        out["vocab.txt"] = open(vocab, "rb").read()
    out["step"] = str(step).encode()
    return out


def differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# ----------------------------------------------------------------------------- experiments


def reproducibility(task: str, scratch: str) -> tuple[str, dict]:
    """Two uninterrupted runs of the same command; returns (verdict, the first run's state)."""
    states, seconds = [], []
    for name in ("same_a", "same_b"):
        workdir = os.path.join(scratch, task, name)
        timing = workdir + ".seconds"
        if not os.path.exists(timing):  # an earlier call with this --scratch ran it already
            result = run(task, workdir, scratch)
            if not result.ok:
                raise RuntimeError(f"{task} run failed:\n{result.output[-3000:]}")
            with open(timing, "w") as f:
                f.write(str(result.seconds))
        states.append(final_state(workdir))
        seconds.append(float(open(timing).read()))
    diff = differences(*states)
    verdict = "identical" if not diff else f"{len(diff)} arrays differ ({', '.join(diff[:3])})"
    return verdict, states[0], float(np.mean(seconds))


def kill_trials(
    task, scratch, reference, run_seconds, trials, rng, log, by_step: bool = True
) -> list[dict]:
    """kill -9 at random moments, then the same command again to the end; compares with the
    uninterrupted run. by_step: a moment is a training step drawn uniformly from 1..29, the kill
    comes once the progress bar shows it (every third trial: at the first checkpoint write from
    that step on); otherwise a time drawn from 5-95 % of an uninterrupted run's wall time (which
    on a loaded machine mostly falls in start-up). A run that ends before its moment is not a
    trial: it is discarded and another moment drawn, at most `trials` times."""
    rows, discarded = [], 0
    while len(rows) < trials:
        trial = len(rows)
        workdir = os.path.join(scratch, task, f"kill_{trial}")
        on_save = trial % 3 == 2
        target = int(rng.integers(1, NUM_STEPS)) if by_step else None
        delay = rng.uniform(0.05, 0.95) * run_seconds
        process = start(task, workdir, scratch)
        started, phase = time.perf_counter(), None
        while process.poll() is None:
            if by_step:
                due = _progress(workdir) >= target and (_saving(workdir) or not on_save)
            else:
                elapsed = time.perf_counter() - started
                due = (on_save and _saving(workdir)) or (not on_save and elapsed >= delay)
            if due:
                phase = _phase(workdir)
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005 if by_step else 0.002)
        process.wait()
        if phase is not None:
            phase += f" (step {_progress(workdir)})" if by_step else ""
        if phase is None and discarded < trials:  # it finished first: not a kill
            discarded += 1
            finished = time.perf_counter() - started
            log(f"  {task} kill {trial}: the run ended first ({finished:.0f} s); drawn again")
            run_seconds = min(run_seconds, finished)
            shutil.rmtree(workdir)
            os.remove(workdir + ".log")
            continue
        if phase is None:
            phase = "after the end"
        result = run(task, workdir, scratch)
        diff = differences(reference, final_state(workdir)) if result.ok else ["rerun failed"]
        resumed = re.findall(r"resumed \S+ from step (\d+)", result.output)
        resumed = int(resumed[-1]) if resumed else None  # None: no complete checkpoint yet
        ok = result.ok and not diff
        rows.append(dict(trial=trial, phase=phase, ok=ok, diff=diff[:3], resumed=resumed))
        log(
            f"  {task} kill {trial}: {phase}, rerun resumed from "
            f"{'nothing' if resumed is None else f'step {resumed}'} -> "
            f"{'identical' if not diff else diff[:3]}"
        )
    return rows


# The training loop's bar only ("train: ... 14/30 [..."), not the data preparation's.
_PROGRESS = re.compile(rb"train:[^\r\n]*?(\d+)/\d+ \[")


def _progress(workdir: str) -> int:
    """The last step the run's training progress bar shows (0 before training starts)."""
    try:
        with open(workdir + ".log", "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4000))
            found = _PROGRESS.findall(f.read())
    except OSError:
        return 0
    return int(found[-1]) if found else 0


def _phase(workdir: str) -> str:
    if _saving(workdir):
        return "checkpoint write"
    try:
        with open(workdir + ".log", errors="replace") as f:
            tail = f.read()[-400:]
    except OSError:
        return "start-up"
    if "train:" not in tail and not _steps(workdir):
        return "start-up"
    return "training"


def sigterm(task: str, scratch: str, reference: dict, twice: bool) -> dict:
    """SIGTERM once training runs; `twice`: a second SIGTERM as soon as the save it causes is
    seen. Then the same command again to the end."""
    workdir = os.path.join(scratch, task, "sigterm2" if twice else "sigterm")
    process = start(task, workdir, scratch)
    while process.poll() is None and 10 not in _steps(workdir):
        time.sleep(0.01)
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    second = False
    if twice:
        while process.poll() is None and not _saving(workdir):
            time.sleep(0.001)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            second = True
    process.wait()
    seconds = time.perf_counter() - sent
    summary_path = os.path.join(workdir, "summary.json")
    stopped_at = None
    if os.path.exists(summary_path):
        import json

        stopped_at = json.load(open(summary_path))["steps"]
    steps = _steps(workdir)
    result = run(task, workdir, scratch)
    diff = differences(reference, final_state(workdir)) if result.ok else ["rerun failed"]
    return dict(
        exit_seconds=seconds,
        stopped_at=stopped_at,
        saved_at=steps[-1] if steps else None,
        second_sent=second,
        rerun_identical=not diff,
    )


def corruption(task: str, scratch: str, source: str, modes=("flip", "truncate", "delete")):
    """Damages each file of the newest checkpoint of `source` in each way, in a copy, and
    restores it as a resumed run does (params and optimizer state): caught (the previous step
    is used), harmless (the damaged bytes are never read: same arrays), or missed."""
    import jax

    from jaxbert import checkpoint

    step = _steps(source)[-1]
    files = sorted(
        os.path.relpath(p, source)
        for p in glob.glob(os.path.join(source, "checkpoints", str(step), "**"), recursive=True)
        if os.path.isfile(p)
    )
    shapes = _templates(source)
    reference = _restore_all(source, shapes)
    rng = np.random.default_rng(0)
    counts = dict(caught=0, unread=0, missed=0, crashed=0)
    missed = []
    for mode in modes:
        for rel in files:
            copy = os.path.join(scratch, task, "damaged")
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("cache"))
            path = os.path.join(copy, rel)
            size = os.path.getsize(path)
            if mode == "flip":
                if size == 0:
                    continue
                with open(path, "r+b") as f:
                    offset = int(rng.integers(size))
                    f.seek(offset)
                    byte = f.read(1)[0]
                    f.seek(offset)
                    f.write(bytes([byte ^ (1 << int(rng.integers(8)))]))
            elif mode == "truncate":
                os.truncate(path, size // 2)
            else:
                os.remove(path)
            try:
                got = _restore_all(copy, shapes)
            except Exception as error:  # noqa: BLE001
                counts["crashed"] += 1
                missed.append(f"{mode} {rel}: {checkpoint.one_line(error)}")
                continue
            if got is None or got[0] != step:
                counts["caught"] += 1
            elif all(
                jax.tree.leaves(
                    jax.tree.map(lambda a, b: np.array_equal(a, b), reference[1], got[1])
                )
            ):
                counts["unread"] += 1
            else:
                counts["missed"] += 1
                missed.append(f"{mode} {rel}")
    return counts, missed


def _templates(workdir: str) -> dict:
    """Shapes and dtypes of the newest step's params and train state."""
    import jax

    from jaxbert import checkpoint

    path = os.path.join(workdir, "checkpoints", str(_steps(workdir)[-1]))
    with checkpoint._step_reader() as reader:
        items = reader.metadata(path).item_metadata
    return {
        name: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), items[name])
        for name in ("params", "train")
    }


def _restore_all(workdir: str, shapes: dict):
    """(step, (params, train)) as numpy, read the way a resumed run reads them."""
    import jax

    from jaxbert import checkpoint

    # Not read_only: a resumed run sets aside a step whose metrics file is damaged (Orbax's
    # manager parses every step's metrics when it opens), and `workdir` here is a copy.
    checkpointer = checkpoint.Checkpointer(workdir)
    try:
        restored = checkpointer.restore(shapes["params"], shapes["train"])
    finally:
        checkpointer.close()
    if restored is None:
        return None
    step, params, train, _ = restored
    return step, jax.tree.map(np.asarray, (params, train))


def disk_full(task: str, scratch: str, limit_bytes: int) -> dict:
    """Runs to step 15, then resumes to 30 with a file-size limit below the checkpoint's
    largest file (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk)."""
    workdir = os.path.join(scratch, task, "disk_full")
    first = run_with(task, workdir, scratch, ["--config.train.num_steps=15"])
    if not first.ok:
        raise RuntimeError(first.output[-2000:])
    before = final_state(workdir)
    open(workdir + ".log", "w").close()
    second = run(task, workdir, scratch, file_size_limit=limit_bytes)
    after_steps = _steps(workdir)
    intact = False
    try:
        state = final_state(workdir)
        intact = not differences(
            {k: v for k, v in before.items() if k != "vocab.txt"},
            {k: v for k, v in state.items() if k != "vocab.txt"},
        )
    except Exception:  # noqa: BLE001
        intact = False
    lines = [line for line in second.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error" in line]
    return dict(
        returncode=second.returncode,
        steps_after=after_steps,
        previous_intact=intact,
        last_lines=lines[-2:],
        error_lines=len(errors),
        traceback="Traceback" in second.output,
    )


def run_with(task, workdir, scratch, overrides) -> Result:
    saved = COMMANDS[task]
    COMMANDS[task] = [*saved, *overrides]
    try:
        return run(task, workdir, scratch)
    finally:
        COMMANDS[task] = saved
