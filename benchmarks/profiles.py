"""Where device time goes: a jax.profiler trace summarised by kernel and kind of op."""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os

# Kernel-name patterns -> the kind of work, for the profile summary (first match wins).
OP_KINDS = (
    ("attention", ("cudnn", "fmha", "flash", "attention", "sdpa")),
    ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "cublas", "wgmma", "dot", "matmul")),
    ("rng", ("rng", "philox", "threefry", "random")),
    ("reduce", ("reduce", "reduction")),
    ("copy/transpose", ("copy", "transpose", "memcpy", "memset")),
    ("scatter/gather", ("scatter", "gather")),
)


def op_kind(name: str) -> str:
    lower = name.lower()
    for kind, patterns in OP_KINDS:
        if any(p in lower for p in patterns):
            return kind
    return "elementwise/other fusion"


def profile_summary(trace_dir: str, steps: int, top: int = 15) -> dict:
    """Where device time goes in a `jax.profiler.trace` of `steps` steps: milliseconds per step
    by kernel (the top `top`) and by kind of op (`op_kind`).

    Reads the trace's `*.trace.json.gz`. Kernels are the events of the device processes'
    stream lines (`/device:GPU:0` ... `Stream #N`), which are what the chip ran; on CPU, where
    no device process exists, the XLA thunks on the host's XLA threads stand in.
    """
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
    if not paths:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}")
    with gzip.open(paths[-1], "rt") as f:
        events = json.load(f)["traceEvents"]
    processes, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[e["pid"], e["tid"]] = e["args"]["name"]

    def on_device(e):
        process, thread = processes.get(e["pid"], ""), threads.get((e["pid"], e.get("tid")), "")
        return process.startswith("/device:") and thread.lower().startswith("stream")

    def on_cpu_xla(e):  # thunks, not the executor/thread-pool spans that enclose them
        thread = threads.get((e["pid"], e.get("tid")), "")
        return ("XLAEigen" in thread or "XLACpu" in thread) and "::" not in e["name"]

    spans = [e for e in events if e.get("ph") == "X"]
    kernels = [e for e in spans if on_device(e)] or [e for e in spans if on_cpu_xla(e)]
    by_name, by_kind = collections.Counter(), collections.Counter()
    for e in kernels:
        by_name[e["name"]] += e["dur"]
    for name, us in by_name.items():
        by_kind[op_kind(name)] += us
    total = sum(by_name.values()) or 1.0

    def per_step(us):
        return round(us / 1e3 / steps, 3)

    return dict(
        kernel_ms_per_step=per_step(total),
        kernels_per_step=round(len(kernels) / steps, 1),
        by_kind={
            k: dict(ms=per_step(v), share=round(v / total, 3)) for k, v in by_kind.most_common()
        },
        top=[
            dict(name=name[:120], kind=op_kind(name), ms=per_step(us), share=round(us / total, 3))
            for name, us in by_name.most_common(top)
        ],
    )
