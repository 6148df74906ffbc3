"""What XLA:GPU makes of the pretraining step, without a GPU.

The real jitted step (`update.make_train_step` over the pretraining loss) is compiled for a GPU
target by JAX's deviceless ahead-of-time path (`jax.experimental.topologies` with a target
description; the CUDA plugin compiles, no device or driver is needed), and the optimized HLO is
read kernel by kernel: which fusions XLA formed, what each reads and writes, and from which part
of the model it comes (the `op_name` metadata), and how much elementwise arithmetic its fused
computation does. Each kernel is modelled as the longer of its bytes over the memory bandwidth
and its arithmetic over the chip's float32 lane rate: a model, not a measurement (no launch gaps,
caches or occupancy; matmuls and attention are listed, not modelled). On the H200 profile of
commit bb4f1bc it gave 3.4 ms for the forward GELU kernels (measured 4.2) and 2.5 ms for their
backward (measured 2.9). It ranks changes to the step between GPU sessions; the
device benchmark (`scripts/device_bench.sh`) is what measures them. With no autotuning, XLA makes
every matmul a Triton fusion; XLA_FLAGS=--xla_gpu_enable_triton_gemm=false gives cuBLAS calls with
the bias adds in their epilogues instead, closer to what the H200's autotuner chose for BERT-base.

Needs JAX's CUDA plugin (`pip install "jax[cuda13]==<installed jax>"`) and, before JAX starts,
JAX_PLATFORMS=cpu and JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 (the plugin's driver checks fail without
a GPU); `scripts/benchmark.py hlo` sets both.
"""

from __future__ import annotations

import collections
import contextlib
import math
import re
from collections.abc import Iterator
from unittest import mock

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks.pretrain import benchmark_model, random_pretraining_batch
from benchmarks.profiles import op_kind
from jaxbert import configs, pretrain, update

# Target descriptions for XLA's GPU compiler (its GpuTargetConfigProto in text form). Figures are
# NVIDIA's published ones: 132 SMs at 1.98 GHz, 50 MiB L2, compute capability 9.0.
_HOPPER = """
gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {bandwidth}
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: {memory}
  shared_memory_per_block_optin: 232448
  cuda_compute_capability {{ major: 9 }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 10 }}
runtime_version {{ major: 13 minor: 0 patch: 0 }}
device_description_str: "{name}"
"""
# alu: elementwise float32 operations per second outside the tensor cores (132 SMs x 128 lanes
# x 1.98 GHz), the rate that bounds a fusion whose arithmetic outweighs its bytes.
TARGETS = {
    "h100": dict(
        name="NVIDIA H100 80GB HBM3", bandwidth=3.35e12, memory=85_899_345_920, alu=3.345e13
    ),
    "h200": dict(name="NVIDIA H200", bandwidth=4.8e12, memory=151_397_597_184, alu=3.345e13),
}
_ELEMENT_BYTES = dict(pred=1, s8=1, u8=1, bf16=2, f16=2, s16=2, u16=2, f32=4, s32=4, u32=4)
_ELEMENT_BYTES |= dict(f64=8, s64=8, u64=8)
_ARRAY = re.compile(r"\b(" + "|".join(_ELEMENT_BYTES) + r")\[([\d,]*)\]")
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%([\w.\-]+) = (.+?) ([\w\-]+)\((.*)$")
_NOT_KERNELS = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast")
_COMPUTATION = re.compile(r"^%?([\w.\-]+) \(.*\) -> .* \{$")
# Elementwise work inside a fusion, in float32-lane operations per element: 1 for an add or a
# compare; more for what goes through the special-function unit or a Newton step (an order of
# magnitude slower than an add on NVIDIA GPUs; XLA expands erf into a rational polynomial);
# integer results twice (Hopper has 64 INT32 lanes per SM against 128 FP32). Data movement
# within a fusion (broadcast, slice, reshape...) is free.
_OP_COST = dict(divide=10, exponential=10, log=10, tanh=10, logistic=10, erf=20, power=20)
_OP_COST |= dict(rsqrt=8, sqrt=8, remainder=10)
_NO_WORK = {"parameter", "constant", "bitcast", "broadcast", "reshape", "get-tuple-element"}
_NO_WORK |= {"tuple", "slice", "dynamic-slice", "concatenate", "transpose", "copy", "iota", "pad"}


def _count(dims: str) -> int:
    return math.prod(int(d) for d in dims.split(",") if d)


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape string, tuples included: 'bf16[4,8]{1,0}' -> 64."""
    return sum(_count(dims) * _ELEMENT_BYTES[dtype] for dtype, dims in _ARRAY.findall(shape))


def _elements(shape: str) -> int:
    """Elements of the first array in an HLO shape string."""
    array = _ARRAY.search(shape)
    return _count(array.group(2)) if array else 0


def computation_work(hlo_text: str) -> dict[str, float]:
    """Elementwise operations (`_OP_COST` units) of each non-entry computation of a module: the
    fused computations that fusion kernels call. A reduce counts its input's elements."""
    work, name, shapes = {}, None, {}
    for line in hlo_text.split("\n"):
        header = _COMPUTATION.match(line)
        if header:
            name, shapes = header.group(1), {}
            work[name] = 0.0
            continue
        if line.startswith("}"):
            name = None
        m = name and _INSTRUCTION.match(line)
        if not m:
            continue
        instruction, shape, opcode, rest = m.groups()
        shapes[instruction] = shape
        if opcode in _NO_WORK:
            continue
        elements = _elements(shape)
        if opcode == "reduce":
            operand = re.match(r"%([\w.\-]+)", rest)
            elements = _elements(shapes.get(operand.group(1), "")) if operand else elements
        integer = re.match(r"\(?[su]\d+\[", shape) is not None
        work[name] += elements * _OP_COST.get(opcode, 1) * (2 if integer else 1)
    return work


def kernel_traffic(hlo_text: str) -> list[dict]:
    """One row per kernel of the entry computation of an optimized HLO module: its name, what it
    is (fusion kind or custom-call target), bytes read (its operands) plus written (its result),
    elementwise operations (`computation_work` of the computation a fusion calls), and the
    `op_name` of the JAX operation it came from."""
    work = computation_work(hlo_text)
    start = hlo_text.index("\nENTRY ")
    entry = hlo_text[start : hlo_text.index("\n}", start)].split("\n")[1:]
    sizes, rows = {}, []
    for line in entry:
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, opcode, rest = m.groups()
        sizes[name] = shape_bytes(shape)
        if opcode in _NOT_KERNELS:
            continue
        operands = re.findall(r"%([\w.\-]+)", rest.split("),", 1)[0])
        target = re.search(r'custom_call_target="([^"]+)"', rest)
        kind = re.search(r"kind=(\w+)", rest)
        source = re.search(r'op_name="([^"]+)"', rest)
        calls = re.search(r"calls=%([\w.\-]+)", rest)
        rows.append(
            dict(
                name=name,
                op=target.group(1) if target else kind.group(1) if kind else opcode,
                bytes=sizes[name] + sum(sizes.get(o, 0) for o in operands),
                ops=work.get(calls.group(1), 0.0) if calls and not target else 0.0,
                source=source.group(1) if source else "",
            )
        )
    return rows


def kernel_category(row: dict) -> str:
    """matmul / attention / dropout / layernorm / gelu / other, from the kernel and its source."""
    kind = op_kind(f"{row['name']} {row['op']}")  # the profile summary's name patterns
    if kind in ("attention", "matmul"):
        return kind
    source = row["source"].lower()
    for category, patterns in (
        ("dropout", ("dropout",)),
        ("layernorm", ("layernorm",)),
        ("gelu", ("intermediate/mul", "intermediate/convert", "intermediate/dense/reduce")),
    ):
        if any(p in source for p in patterns):
            return category
    return "other"


def traffic_summary(hlo_text: str, bandwidth: float, alu: float, top: int = 20) -> dict:
    """The step's kernels, modelled: bytes moved over `bandwidth` (bytes/s) and, per kernel, the
    larger of that and its elementwise operations over `alu` (operations/s). In all, by
    category, and the `top` groups of same-source kernels (layer numbers folded, so the 12
    layers' GELUs are one row). Matmuls and attention are counted but not modelled."""
    rows = kernel_traffic(hlo_text)
    by_category = collections.defaultdict(lambda: [0, 0, 0.0])
    groups = collections.defaultdict(lambda: [0, 0, 0.0])
    for row in rows:
        category = kernel_category(row)
        seconds = max(row["bytes"] / bandwidth, row["ops"] / alu)
        by_category[category][0] += 1
        by_category[category][1] += row["bytes"]
        by_category[category][2] += seconds
        if category not in ("matmul", "attention"):
            kind = re.sub(r"[._]\d+", "", row["name"])
            source = re.sub(r"layer/\d+", "layer/N", row["source"].split(")/", 1)[-1])
            group = groups[f"{kind} {source}"]
            group[0] += 1
            group[1] += row["bytes"]
            group[2] += seconds
    modelled = {c: v for c, v in by_category.items() if c not in ("matmul", "attention")}
    memory_bound = sum(b for _, b, _ in modelled.values())

    def ms(nbytes):
        return round(nbytes / bandwidth * 1e3, 3)

    return dict(
        kernels=len(rows),
        memory_bound_gb=round(memory_bound / 1e9, 2),
        memory_bound_ms=ms(memory_bound),
        modelled_ms=round(1e3 * sum(t for _, _, t in modelled.values()), 3),
        elementwise_gops=round(sum(r["ops"] for r in rows) / 1e9, 2),
        by_category={
            c: dict(kernels=n, gb=round(b / 1e9, 2), ms=ms(b))
            | ({} if c in ("matmul", "attention") else dict(modelled_ms=round(1e3 * t, 3)))
            for c, (n, b, t) in sorted(by_category.items(), key=lambda kv: -kv[1][1])
        },
        top=[
            dict(group=g[:140], kernels=n, ms=ms(b), modelled_ms=round(1e3 * t, 3))
            for g, (n, b, t) in sorted(groups.items(), key=lambda kv: -kv[1][2])[:top]
        ],
    )


@contextlib.contextmanager
def cudnn_attention_for(capability: str = "9.0"):
    """Lets the model lower cuDNN attention with no GPU attached: `_use_cudnn` and JAX's cuDNN
    checks ask the local device, which here is the CPU, so they answer for the target instead."""
    from jax._src.cudnn import fused_attention_stablehlo as cudnn

    from jaxbert import model

    target = tuple(int(x) for x in capability.split("."))

    def at_least(needed):
        return target >= tuple(int(x) for x in needed.split("."))

    def equal(needed):
        return target == tuple(int(x) for x in needed.split("."))

    def uses_cudnn(config):
        return config.attention_impl == "cudnn" and config.dtype in ("bfloat16", "float16")

    with (
        mock.patch.object(model, "_use_cudnn", uses_cudnn),
        mock.patch.object(cudnn, "check_compute_capability", at_least),
        mock.patch.object(cudnn, "is_cuda_compute_capability_equal", equal),
    ):
        yield


def gpu_mesh(target: str):
    """A one-device mesh of the target GPU, described rather than attached."""
    from jax.experimental import topologies

    spec = TARGETS[target]
    config = _HOPPER.format(
        name=spec["name"], bandwidth=int(spec["bandwidth"]), memory=spec["memory"]
    )
    try:
        topology = topologies.get_topology_desc(
            platform="cuda", target_config=config, topology="1x1x1"
        )
    except (NotImplementedError, RuntimeError) as e:
        raise RuntimeError(
            "compiling for a GPU without one needs JAX's CUDA plugin in this environment: "
            f'pip install "jax[cuda13]=={jax.__version__}" (about 4 GB; no GPU or driver is '
            "used), then run with JAX_PLATFORMS=cpu JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 "
            f"(scripts/benchmark.py hlo sets both). Cause: {e}"
        ) from e
    return topologies.make_mesh(topology, (1,), ("data",))


def bench_hlo(
    *,
    size="base",
    batch_size=256,
    seq_len=128,
    dtype="bfloat16",
    attention="cudnn",
    target="h200",
    vocab_size=30522,
    max_predictions=20,
    nsp=True,
    top=20,
    dump="",
    seed=0,
) -> Iterator[dict]:
    """Compiles the pretraining step for `target` and yields its modelled memory traffic."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {sorted(TARGETS)}")
    mesh = gpu_mesh(target)
    replicated = NamedSharding(mesh, P())
    batch = random_pretraining_batch(
        np.random.default_rng(seed), batch_size, seq_len, vocab_size, max_predictions
    )
    model = benchmark_model(size, vocab_size, seq_len, dtype, attention)
    tx, _, _ = update.make_optimizer(configs.pretrain_config().optim, total_steps=100_000)
    names = ("input_ids", "segment_ids", "attention_mask", "masked_lm_positions")
    inputs = [batch[k][:1] for k in names]

    def abstract(tree):
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), tree
        )

    with cudnn_attention_for():
        params = jax.eval_shape(lambda k: model.init(k, *inputs)["params"], jax.random.key(0))
        state = jax.eval_shape(lambda p: update.create_state(p, tx, None), params)
        step_rng = jax.eval_shape(lambda: jax.random.key(1))
        step = jax.jit(
            update.make_train_step(pretrain.pretraining_loss_fn(model, nsp), tx),
            donate_argnums=(0,),
        )
        compiled = step.lower(abstract(state), abstract(batch), abstract(step_rng)).compile()
    hlo_text = compiled.as_text()
    if dump:
        with open(dump, "w") as f:
            f.write(hlo_text)
    yield dict(
        bench="hlo",
        target=TARGETS[target]["name"],
        size=size,
        batch=batch_size,
        seq=seq_len,
        dtype=dtype,
        attention=attention,
        **traffic_summary(hlo_text, TARGETS[target]["bandwidth"], TARGETS[target]["alu"], top),
    )
