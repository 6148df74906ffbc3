"""Where device time goes: a jax.profiler trace summarised by kernel and kind of op."""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re

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


def fusion_kinds(hlo_text: str) -> dict[str, str]:
    """{fusion name: kind} from a compiled program's HLO (`Compiled.as_text()`). XLA:CPU names
    its thunks after their fusions (`ynn_fusion.27`, `loop_add_fusion.3`), not after the
    library kernel they call, so the names alone do not say which ones multiply matrices: a
    fusion whose computation holds a dot is "matmul", or "attention" when the dot has batch
    dimensions (the heads' scores and context), one holding a reduce is "reduce". The others
    are left to `op_kind`."""
    bodies, current = {}, None
    for line in hlo_text.splitlines():
        if line.startswith("%") and line.rstrip().endswith("{"):
            current = line[1:].split(" ", 1)[0]
            bodies[current] = []
        elif line.startswith("}"):
            current = None
        elif current:
            bodies[current].append(line)
    kinds = {}
    for match in re.finditer(r"%([\w.-]+) = [^\n]*? fusion\([^\n]*?calls=%([\w.-]+)", hlo_text):
        body = "\n".join(bodies.get(match.group(2), ()))
        if " dot(" in body:
            kinds[match.group(1)] = "attention" if "lhs_batch_dims" in body else "matmul"
        elif " reduce(" in body:
            kinds[match.group(1)] = "reduce"
    return kinds


def profile_summary(
    trace_dir: str, steps: int, top: int = 15, kinds: dict[str, str] | None = None
) -> dict:
    """Where device time goes in a `jax.profiler.trace` of `steps` steps: milliseconds per step
    by kernel (the top `top`) and by kind of op (`kinds`, e.g. from `fusion_kinds`, where it
    names the kernel, else `op_kind`).

    Reads the trace's `*.trace.json.gz`. Kernels are the events of the device processes'
    stream lines (`/device:GPU:0` ... `Stream #N`), which are what the chip ran; on CPU, where
    no device process exists, the XLA thunks on the host's XLA threads stand in (the calling
    client thread's and the thread pool's: their times add up, so a step's kernel time can
    exceed its wall time when both threads work).
    """
    kinds = kinds or {}

    def kind_of(name: str) -> str:
        return kinds.get(name) or op_kind(name)

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
        name = e["name"]
        xla_thread = any(t in thread for t in ("XLAEigen", "XLACpu", "PjRtCpuClient"))
        return xla_thread and "::" not in name and not name.startswith("end: ")

    spans = [e for e in events if e.get("ph") == "X"]
    kernels = [e for e in spans if on_device(e)] or [e for e in spans if on_cpu_xla(e)]
    by_name, by_kind = collections.Counter(), collections.Counter()
    for e in kernels:
        by_name[e["name"]] += e["dur"]
    for name, us in by_name.items():
        by_kind[kind_of(name)] += us
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
            dict(name=name[:120], kind=kind_of(name), ms=per_step(us), share=round(us / total, 3))
            for name, us in by_name.most_common(top)
        ],
    )
