"""Quantised serving: the encoder's dense layers with 8-bit weights, for `SentenceModel(...,
quantize="int8")`.

    qparams = quantize_params(params, "int8")          # numpy, once, at load
    with dense_interceptor():                           # while tracing the encoder
        module.apply({"params": qparams}, ids, mask, method=SentenceBert.encode)

Every dense layer of the transformer layers (query, key, value, attention output, intermediate,
output: ~all of a small BERT's matmul FLOPs and, with the word embeddings, its bytes) gets
  int8     weights int8 with one float32 scale per output channel (symmetric, max |w| -> 127),
           activations quantised per token (row) to int8 when the layer runs, int32
           accumulation, then rescaled: y = (q(x) @ q(W)) * s_x * s_W + b;
  bfloat16 weights stored as bfloat16, activations cast to bfloat16, float32 accumulation.
Embeddings, LayerNorms, attention scores, pooling and heads stay float32, and the model code is
unchanged: a flax method interceptor swaps the dense layers' computation while tracing.

On x86 CPUs with VNNI (and without AMX) the int8 activations go into the matmul shifted by
+128, as uint8, and each output takes back 128 x its weight column's sum (`kernel_offset`,
computed at load): the same int32 sums to the last bit, but XLA:CPU's matmul library (YNNPACK)
runs unsigned-by-signed bytes on VNNI's dot-product instruction and signed-by-signed bytes on a
slower generic kernel (README "Performance" / "CPU").

Which is faster depends on the CPU and on the batch: `scripts/benchmark.py encode --quantize
int8,bfloat16` measures both beside float32 (README "Performance" / "CPU"). Weights dequantised
to float32 inside the graph are not an option: XLA:CPU writes the dequantised copy out on every
call, slower than float32 weights.
"""

from __future__ import annotations

import contextlib
import functools
import platform

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.extend.mlir.dialects import stablehlo
from jax.interpreters import mlir

MODES = ("none", "int8", "bfloat16")
SCALE = "kernel_scale"  # the per-output-channel scales of an int8 kernel, beside it
OFFSET = "kernel_offset"  # 128 x an int8 kernel's column sums, for uint8 activations
ACTIVATIONS = ("int8", "uint8")  # how int8 activations enter the matmul


def _is_dense(node) -> bool:
    return isinstance(node, dict) and "kernel" in node and np.ndim(node["kernel"]) == 2


def quantize_kernel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [in, out] -> (int8 [in, out], float32 scales [out]) with kernel ~= q * scales."""
    kernel = np.asarray(kernel, np.float32)
    scale = np.abs(kernel).max(axis=0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # an all-zero column stays zero
    return np.clip(np.round(kernel / scale), -127, 127).astype(np.int8), scale


def kernel_offset(kernel: np.ndarray) -> np.ndarray:
    """int8 [in, out] -> int32 [out]: what adding 128 to every activation adds to each output
    of x @ kernel (128 x the column's sum), to take back after a uint8 matmul."""
    return 128 * np.asarray(kernel, np.int32).sum(axis=0, dtype=np.int32)


def dequantize_kernel(kernel: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.asarray(kernel, np.float32) * np.asarray(scale, np.float32)


def quantize_params(params: dict, mode: str) -> dict:
    """The params tree with every dense kernel under `bert/encoder` stored for `mode` (a new
    tree; the float32 one is left as it is)."""
    if mode not in MODES:
        raise ValueError(f"quantize must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return params

    def walk(node, inside_encoder: bool):
        if not isinstance(node, dict):
            return node
        if inside_encoder and _is_dense(node):
            node = dict(node)
            kernel = np.asarray(jax.device_get(node["kernel"]), np.float32)
            if mode == "int8":
                node["kernel"], node[SCALE] = quantize_kernel(kernel)
                node[OFFSET] = kernel_offset(node["kernel"])
            else:
                node["kernel"] = kernel.astype(jnp.bfloat16)
            return node
        return {k: walk(v, inside_encoder or k == "encoder") for k, v in node.items()}

    return walk(jax.device_get(params), False)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


@functools.cache
def int8_activations() -> str:
    """How this process's int8 matmuls take their activations: "uint8" (shifted by +128) on
    x86 CPUs with VNNI, whose dot instruction multiplies unsigned by signed bytes and which
    YNNPACK uses only for that pairing; "int8" elsewhere: other backends, CPUs without VNNI,
    and CPUs with AMX (the Intel Xeon measured in the README ran int8 activations at 1.4x
    ONNX Runtime int8's throughput; uint8 is not measured there)."""
    if jax.default_backend() != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return "int8"
    flags = _cpu_flags()
    if "amx_int8" in flags or not flags & {"avx512_vnni", "avx_vnni"}:
        return "int8"
    return "uint8"


# x uint8 [..., in] @ w int8 [in, out] -> int32 [..., out]. jax.lax.dot_general promotes mixed
# operands to int32 before the dot, which XLA:CPU then runs on a generic kernel; this primitive
# hands XLA the mixed dot itself, which XLA:CPU passes to YNNPACK as it is.
_uint8_int8_dot_p = Primitive("uint8_int8_dot")
_uint8_int8_dot_p.def_abstract_eval(
    lambda x, w: jax.core.ShapedArray(x.shape[:-1] + w.shape[1:], jnp.int32)
)


def _uint8_int8_dot_lowering(ctx, x, w):
    (x_aval, _), (out_aval,) = ctx.avals_in, ctx.avals_out
    dims = stablehlo.DotDimensionNumbers.get(
        lhs_batching_dimensions=[],
        rhs_batching_dimensions=[],
        lhs_contracting_dimensions=[x_aval.ndim - 1],
        rhs_contracting_dimensions=[0],
    )
    out_type = mlir.aval_to_ir_type(ctx.module_context, out_aval)
    return [stablehlo.dot_general(out_type, x, w, dims)]


def _int32_dot(x, w):
    return jax.lax.dot_general(
        x.astype(jnp.int32), w.astype(jnp.int32), (((x.ndim - 1,), (0,)), ((), ()))
    )


mlir.register_lowering(_uint8_int8_dot_p, _uint8_int8_dot_lowering, platform="cpu")
# Other backends get the same sums through int32 (int8_activations() keeps them off this path).
mlir.register_lowering(_uint8_int8_dot_p, mlir.lower_fun(_int32_dot, multiple_results=False))


@jax.jit
def uint8_int8_dot(x: jax.Array, w: jax.Array) -> jax.Array:
    """x uint8 [..., in] @ w int8 [in, out] with int32 sums, as one mixed-type XLA dot."""
    if x.dtype != jnp.uint8 or w.dtype != jnp.int8 or w.ndim != 2:
        raise TypeError(f"uint8 [..., in] @ int8 [in, out] only, got {x.dtype} @ {w.dtype}")
    return _uint8_int8_dot_p.bind(x, w)


def quantized_dense(
    x: jax.Array, kernel: jax.Array, scale, bias, offset=None, activations: str | None = None
) -> jax.Array:
    """x [..., in] float -> [..., out] float32 through an int8 or bfloat16 kernel [in, out].
    int8: `offset` is `kernel_offset(kernel)`, needed for uint8 activations; `activations`
    "int8" / "uint8" / None (`int8_activations()`, or "int8" without `offset`): the same
    result either way."""
    x = x.astype(jnp.float32)
    if kernel.dtype == jnp.int8:
        # Symmetric per-token scales: the row's max |x| -> 127 (a zero row stays zero).
        x_scale = jnp.maximum(jnp.max(jnp.abs(x), axis=-1, keepdims=True), 1e-12) / 127.0
        x_q = jnp.round(x / x_scale)  # integers in [-127, 127]
        if activations is None:
            activations = "int8" if offset is None else int8_activations()
        if activations == "uint8":
            if offset is None:
                raise ValueError("uint8 activations need the kernel's offset (kernel_offset)")
            y = uint8_int8_dot((x_q + 128).astype(jnp.uint8), kernel) - offset
        elif activations == "int8":
            y = jax.lax.dot_general(
                x_q.astype(jnp.int8),
                kernel,
                (((x.ndim - 1,), (0,)), ((), ())),
                preferred_element_type=jnp.int32,
            )
        else:
            raise ValueError(f"activations must be one of {ACTIVATIONS}, got {activations!r}")
        y = y.astype(jnp.float32) * x_scale * scale
    else:
        y = jax.lax.dot_general(
            x.astype(kernel.dtype),
            kernel,
            (((x.ndim - 1,), (0,)), ((), ())),
            preferred_element_type=jnp.float32,
        )
    return y if bias is None else y + bias


def _interceptor(next_fun, args, kwargs, context):
    module = context.module
    if not (
        isinstance(module, nn.Dense)
        and context.method_name == "__call__"
        and module.has_variable("params", "kernel")
    ):
        return next_fun(*args, **kwargs)
    kernel = module.get_variable("params", "kernel")
    if kernel.dtype not in (jnp.int8, jnp.bfloat16):
        return next_fun(*args, **kwargs)
    int8 = kernel.dtype == jnp.int8
    scale = module.get_variable("params", SCALE) if int8 else None
    offset = module.get_variable("params", OFFSET) if int8 else None
    bias = module.get_variable("params", "bias") if module.use_bias else None
    y = quantized_dense(args[0], kernel, scale, bias, offset)
    return y.astype(module.dtype or jnp.float32)


@contextlib.contextmanager
def dense_interceptor():
    """While active, flax Dense layers whose kernel is int8 or bfloat16 run quantised; the
    others run unchanged. Only tracing needs it: the compiled program keeps what it traced."""
    with nn.intercept_methods(_interceptor):
        yield
