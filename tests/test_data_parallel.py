"""Data parallelism does not change the math: 1 device, 8 simulated devices and two
jax.distributed processes train to the same losses for the same global batch.

Each run is a subprocess (the device count is fixed when JAX starts). Simulated CPU devices can
deadlock on collectives on small machines; the loop waits for every step on CPU, and a hang
fails within 10 s instead of blocking the suite.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxbert import checkpoint

WORKER = os.path.join(os.path.dirname(__file__), "dp_worker.py")
TIMEOUT_FLAG = "--xla_cpu_collective_call_terminate_timeout_seconds=10"


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {TIMEOUT_FLAG}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _result(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def _run(run_dir, devices: int) -> dict:
    done = subprocess.run(
        [sys.executable, WORKER, str(run_dir)],
        env=_env(devices),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return _result(done.stdout)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one")
    return dict(_run(run_dir, devices=1), run_dir=str(run_dir))


def _same_params(run_dir: str, reference_dir: str) -> None:
    # Saved with the shardings of 8 devices or 2 processes, loaded here on one device.
    params, _, step = checkpoint.load_params(run_dir, which="latest")
    reference, _, reference_step = checkpoint.load_params(reference_dir, which="latest")
    assert step == reference_step
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), params, reference
    )


@pytest.mark.slow
def test_eight_devices_match_one(single_device, tmp_path):
    eight = _run(tmp_path, devices=8)
    assert single_device["devices"] == 1 and eight["devices"] == 8
    assert len(eight["losses"]) == 4
    # Only the order of floating-point reductions differs between the layouts.
    np.testing.assert_allclose(eight["losses"], single_device["losses"], rtol=2e-5)
    np.testing.assert_allclose(eight["eval_loss"], single_device["eval_loss"], rtol=2e-5)
    _same_params(str(tmp_path), single_device["run_dir"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(single_device, tmp_path):
    address = f"localhost:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(tmp_path), str(i), "2", address],
            env=_env(devices=1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    two = _result(outputs[0][0])
    assert two["devices"] == 2
    np.testing.assert_allclose(two["losses"], single_device["losses"], rtol=2e-5)
    np.testing.assert_allclose(two["eval_loss"], single_device["eval_loss"], rtol=2e-5)
    _same_params(str(tmp_path), single_device["run_dir"])
