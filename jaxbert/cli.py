"""What every entry point shares: the --config/--workdir flags, logging, multi-process start-up,
and one-line errors for bad input."""

from __future__ import annotations

import difflib
import functools
import logging
import os
import runpy
import sys
import traceback

from absl import app, flags
from ml_collections import config_flags

COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for multi-process runs (jax.distributed)"
)
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (multi-process)")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process' index (multi-process)")


def unknown_overrides(argv: list[str]) -> list[str]:
    """Messages for `--config.a.b=value` arguments that name no field of the config file.

    Checked before absl parses the flags, whose own error for a typo is a bare AttributeError.
    """
    path, overrides = None, []
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config."):
            overrides.append(arg[len("--config.") :].split("=", 1)[0])
    if not path or not overrides or not os.path.exists(path):
        return []
    config = runpy.run_path(path)["get_config"]()
    fields = set()

    def collect(node, prefix):
        for key, value in node.items():
            fields.add(prefix + key)
            if hasattr(value, "items"):
                collect(value, prefix + key + ".")

    collect(config, "")
    messages = []
    for name in overrides:
        if name not in fields:
            section = name.rsplit(".", 1)[0] if "." in name else ""
            siblings = sorted(
                f[len(section) + 1 :] if section else f
                for f in fields
                if f.startswith(section + ".") == bool(section) and f.count(".") == name.count(".")
            )
            where = f"{section}" if section else "the config"
            if not siblings:  # the section itself is misspelt: list the config's sections
                where = "the config"
                siblings = sorted(f for f in fields if "." not in f)
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hint = f"; did you mean --config.{close[0]}?" if close else ""
            shown = repr(name)[1:-1]  # control characters escaped: the message stays one line
            messages.append(
                f"--config.{shown}: {path} has no field {name!r}{hint} "
                f"({where} has: {', '.join(siblings)})"
            )
    return messages


def define_config_flags(default_config: str | None = None):
    """--config <file.py> (any field overridable as --config.a.b=value) and --workdir."""
    problems = unknown_overrides(sys.argv)
    if problems:
        sys.exit("error: " + "\n       ".join(problems))
    config = config_flags.DEFINE_config_file(
        "config", default_config, "experiment config file (configs/*.py)", lock_config=True
    )
    workdir = flags.DEFINE_string(
        "workdir", None, "run directory; a directory with checkpoints is resumed"
    )
    flags.mark_flags_as_required(["workdir"] + ([] if default_config else ["config"]))
    return config, workdir


# Compiled programs are kept here across runs (JAX's persistent compilation cache), so a
# resumed or repeated run need not compile its steps again (a BERT-base train step took ~30 s
# to compile on an H200). JAXBERT_COMPILATION_CACHE="" turns it off.
DEFAULT_COMPILATION_CACHE = os.path.join(".cache", "jaxbert", "xla")


def setup() -> None:
    """Logging to the console, the persistent compilation cache, and jax.distributed when this
    is one process of several.

    Multi-process runs pass --coordinator_address/--num_processes/--process_id, or run under a
    cluster manager that JAX detects itself (SLURM, Open MPI, TPU pods) with
    JAXBERT_DISTRIBUTED=1.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("absl", "jax._src", "orbax", "etils", "datasets", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import jax

    cache = os.environ.get("JAXBERT_COMPILATION_CACHE", DEFAULT_COMPILATION_CACHE)
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if COORDINATOR.value or os.environ.get("JAXBERT_DISTRIBUTED") == "1":
        # CPU processes reduce across each other through gloo (GPUs use NCCL regardless).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if COORDINATOR.value:
        jax.distributed.initialize(
            coordinator_address=COORDINATOR.value,
            num_processes=NUM_PROCESSES.value,
            process_id=PROCESS_ID.value,
        )
    elif os.environ.get("JAXBERT_DISTRIBUTED") == "1":
        jax.distributed.initialize()
    if jax.process_count() > 1:
        logging.getLogger("jaxbert").info(
            "process %d of %d, %d local / %d global devices",
            jax.process_index(),
            jax.process_count(),
            jax.local_device_count(),
            jax.device_count(),
        )


def is_input_error(error: BaseException) -> bool:
    """True for errors that say the input is wrong (a missing or malformed file, an unreachable
    source, an unknown label, a corrupt checkpoint, a diverged run), not that the code is."""
    from jaxbert.checkpoint import CheckpointError
    from jaxbert.data.sources import SourceUnavailableError
    from jaxbert.train import NonFiniteLossError

    input_errors = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
    input_errors += (SourceUnavailableError, CheckpointError, NonFiniteLossError)
    return isinstance(error, input_errors)


def input_error_message(error: BaseException) -> str:
    """`error: <message>` and, on a second line, the exception type and where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames:
        path, root = frames[-1].filename, os.path.dirname(os.path.dirname(__file__))
        if path.startswith(root + os.sep):  # jaxbert/..., scripts/... rather than a long path
            path = os.path.relpath(path, root)
        where = f" at {path}:{frames[-1].lineno}"
    return (
        f"error: {error}\n({type(error).__name__}{where}; JAXBERT_TRACEBACK=1 shows the traceback)"
    )


def exit_on_input_error(main):
    """Wraps an entry point's main: bad input ends the program with its one-line message (exit
    status 1) instead of a traceback through the libraries underneath; other errors, or any with
    JAXBERT_TRACEBACK=1, keep their traceback."""

    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as error:
            if os.environ.get("JAXBERT_TRACEBACK") == "1" or not is_input_error(error):
                raise
            sys.exit(input_error_message(error))

    return guarded


def run(main) -> None:
    """`absl.app.run(main)` with `exit_on_input_error`."""
    app.run(exit_on_input_error(main))
