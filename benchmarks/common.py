"""Shared by the benchmarks: where and how a record was measured, steady-state timing, and
the randomly initialised encoders and sentence-transformers peers that several of them use."""

from __future__ import annotations

import importlib.util
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxbert import checkpoint, configs, quantize
from jaxbert.data import nli
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import SIZES, BertConfig, padded_vocab_size
from jaxbert.sbert import SentenceBert

# Length buckets of the SBERT fine-tuning benchmarks: the fine-tuning config's.
DEFAULT_BUCKETS = configs.finetune_config().data.buckets

# The peer scripts (peer_st.py, bench_common.py), used when present.
PEER_DIR = os.environ.get("JAXBERT_PEER_DIR", os.path.join("..", "shared", "bench"))


# Between one side's timed block and the next side's: long enough for the thread pools that
# spin after their work (OpenMP in PyTorch, ONNX Runtime's) to go to sleep, so one side's
# spinning threads do not slow the next side down on the 2-core machine.
SETTLE_S = 0.3


# What the ONNX Runtime peer imports: the `peers` extra, not jaxbert's install.
ONNX_PEER_MODULES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime")


def require_peer(modules: tuple[str, ...], what: str) -> None:
    """One clear error, before any work, when a peer's packages are not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(
            f"{what} needs {', '.join(missing)}, not installed: pip install -e .[peers]"
        )


def use_cpus(count: int) -> int:
    """Runs this process on its first `count` CPUs (0: all it may use); returns how many it
    runs on. XLA:CPU sizes its thread pool to the CPUs it may use when JAX starts its backend,
    so this must come before any JAX computation: afterwards the pool would keep its threads
    on fewer cores. Timing each runtime on one core tells its kernels apart from how it spreads
    a small matmul over several (README "Performance" / "CPU")."""
    available = sorted(os.sched_getaffinity(0))
    if count == 0 or count == len(available):
        return len(available)
    if not 1 <= count < len(available):
        raise ValueError(f"cpus={count}: this process may use {len(available)} CPUs")
    # JAX has no public way to ask whether its backend has started; if this private one moves,
    # the check is skipped rather than --cpus broken.
    started = getattr(
        importlib.import_module("jax._src.xla_bridge"), "backends_are_initialized", None
    )
    if started is not None and started():
        raise RuntimeError(
            f"cpus={count} must be set before JAX starts its backend (it sizes its thread "
            "pool then); run it in a fresh process, e.g. scripts/benchmark.py --cpus"
        )
    os.sched_setaffinity(0, available[:count])
    return count


def cpu_model() -> str:
    """The host CPU's model name, with its family and model numbers (a virtual machine's name
    can be as vague as "Intel(R) Xeon(R) Processor"; the 2-core machine has been an AMD EPYC
    on some days and an Intel Xeon on others, and CPU timings differ between them)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip():  # the first processor's block ends
                    break
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def environment() -> dict:
    """Where and under what load a record was measured."""
    devices = jax.devices()
    return dict(
        host=f"{len(os.sched_getaffinity(0))} cpu",  # the CPUs this process may use
        cpu=cpu_model(),
        loadavg=[round(x, 2) for x in os.getloadavg()],
        backend=jax.default_backend(),
        device=devices[0].device_kind,
        devices=len(devices),
        jax=jax.__version__,
        # how int8 matmuls take their activations on this CPU (jaxbert.quantize)
        int8_activations=quantize.int8_activations(),
    )


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def device_peak_gib() -> float | None:
    """Peak bytes in use on the first device (GPU/TPU); None where the backend has no stats."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**30, 3)


def latency_summary(seconds: list[float]) -> dict:
    ms = 1e3 * np.asarray(seconds)
    return dict(
        latency_ms_p50=round(float(np.percentile(ms, 50)), 2),
        latency_ms_p95=round(float(np.percentile(ms, 95)), 2),
        per_s=round(len(ms) / (ms.sum() / 1e3), 1),
    )


def steady_state(step, state, batches, *, warmup: int, steps: int):
    """Runs `warmup`, then `steps` calls of `state, metrics = step(state, next(batches))`.

    Returns (state, metrics, warm-up seconds, seconds of the timed steps). The device is
    synchronised before each clock read, and after every step on simulated CPU devices, where
    back-to-back collectives can deadlock (NOTES.md); never per step on accelerators.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    block_each = jax.default_backend() == "cpu" and jax.device_count() > 1

    def run(state, count):
        metrics = None
        for _ in range(count):
            state, metrics = step(state, next(batches))
            if block_each:
                jax.block_until_ready(metrics)
        return jax.block_until_ready((state, metrics))

    start = time.perf_counter()
    state, metrics = run(state, warmup)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    state, metrics = run(state, steps)
    return state, metrics, warmup_s, time.perf_counter() - start


def split_list(value: str) -> list[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()]


def tokenizer_from(vocab: str = "", tokenizer_dir: str = "") -> BertTokenizer:
    if vocab:
        return BertTokenizer.from_vocab(vocab)
    if tokenizer_dir:
        return BertTokenizer.load(tokenizer_dir)
    raise ValueError("pass --vocab (a WordPiece vocab.txt) or --tokenizer-dir")


def sentence_encoder(model: str, vocab: str = "", *, dtype="float32", attention="xla", seed=0):
    """(SentenceBert with an NLI head, params, tokenizer): a named size with random weights and
    the tokenizer of `vocab`, or the encoder of a run directory / `hf:<dir>`."""
    if model in SIZES:
        if not vocab:
            raise ValueError(f"a random {model!r} model needs --vocab (a WordPiece vocab.txt)")
        tokenizer = BertTokenizer.from_vocab(vocab)
        config = BertConfig.from_size(
            model,
            vocab_size=padded_vocab_size(tokenizer.vocab_size, 128),
            dtype=dtype,
            attention_impl=attention,
        )
        encoder = None
    else:
        loaded, tokenizer, weights = checkpoint.load_encoder(model)
        config = BertConfig.from_dict(dict(loaded.to_dict(), dtype=dtype, attention_impl=attention))
        encoder = weights["bert"]
    module = SentenceBert(config, num_labels=len(nli.NLI_LABELS))
    ids = jnp.zeros((1, 8), jnp.int32)
    params = module.init(jax.random.key(seed), ids, jnp.ones_like(ids))["params"]
    if encoder is not None:
        params = dict(params, bert=jax.tree.map(jnp.asarray, encoder))
    return module, params, tokenizer


def peer_st_model(directory: str):
    """A sentence-transformers model from `directory` on the GPU if torch has one, built the way
    ../shared/bench/peer_st.py builds it when that script is present."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if os.path.isfile(os.path.join(PEER_DIR, "peer_st.py")):
        import argparse

        if os.path.abspath(PEER_DIR) not in sys.path:
            sys.path.insert(0, os.path.abspath(PEER_DIR))
        import peer_st

        return peer_st.build_model(argparse.Namespace(model=directory), device), device
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(directory, device=device), device


def export_for_peer(module: SentenceBert, params, tokenizer, max_len: int, directory: str):
    from jaxbert import hf

    hf.export_pretrained(
        directory,
        config=module.config,
        params={"bert": jax.device_get(params["bert"])},
        tokenizer=tokenizer,
        pooling=module.pooling,
        normalize=module.normalize,
        max_seq_length=max_len,
    )
    return directory
