"""What every entry point shares: the --config/--workdir flags, logging, multi-process start-up."""

from __future__ import annotations

import logging
import os

from absl import flags
from ml_collections import config_flags

COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for multi-process runs (jax.distributed)"
)
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (multi-process)")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process' index (multi-process)")


def define_config_flags(default_config: str | None = None):
    """--config <file.py> (any field overridable as --config.a.b=value) and --workdir."""
    config = config_flags.DEFINE_config_file(
        "config", default_config, "experiment config file (configs/*.py)", lock_config=True
    )
    workdir = flags.DEFINE_string(
        "workdir", None, "run directory; a directory with checkpoints is resumed"
    )
    flags.mark_flags_as_required(["workdir"] + ([] if default_config else ["config"]))
    return config, workdir


def setup() -> None:
    """Logging to the console, and jax.distributed when this is one process of several.

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
