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

Which is faster depends on the CPU and on the batch: `scripts/benchmark.py encode --quantize
int8,bfloat16` measures both beside float32 (README "Performance" / "CPU"). Weights dequantised
to float32 inside the graph are not an option: XLA:CPU writes the dequantised copy out on every
call, slower than float32 weights.
"""

from __future__ import annotations

import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MODES = ("none", "int8", "bfloat16")
SCALE = "kernel_scale"  # the per-output-channel scales of an int8 kernel, beside it


def _is_dense(node) -> bool:
    return isinstance(node, dict) and "kernel" in node and np.ndim(node["kernel"]) == 2


def quantize_kernel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [in, out] -> (int8 [in, out], float32 scales [out]) with kernel ~= q * scales."""
    kernel = np.asarray(kernel, np.float32)
    scale = np.abs(kernel).max(axis=0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # an all-zero column stays zero
    return np.clip(np.round(kernel / scale), -127, 127).astype(np.int8), scale


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
            else:
                node["kernel"] = kernel.astype(jnp.bfloat16)
            return node
        return {k: walk(v, inside_encoder or k == "encoder") for k, v in node.items()}

    return walk(jax.device_get(params), False)


def quantized_dense(x: jax.Array, kernel: jax.Array, scale, bias) -> jax.Array:
    """x [..., in] float -> [..., out] float32 through an int8 or bfloat16 kernel [in, out]."""
    x = x.astype(jnp.float32)
    if kernel.dtype == jnp.int8:
        # Symmetric per-token scales: the row's max |x| -> 127 (a zero row stays zero).
        x_scale = jnp.maximum(jnp.max(jnp.abs(x), axis=-1, keepdims=True), 1e-12) / 127.0
        x_q = jnp.round(x / x_scale).astype(jnp.int8)
        y = jax.lax.dot_general(
            x_q, kernel, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.int32
        )
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
    scale = module.get_variable("params", SCALE) if kernel.dtype == jnp.int8 else None
    bias = module.get_variable("params", "bias") if module.use_bias else None
    return quantized_dense(args[0], kernel, scale, bias).astype(module.dtype or jnp.float32)


@contextlib.contextmanager
def dense_interceptor():
    """While active, flax Dense layers whose kernel is int8 or bfloat16 run quantised; the
    others run unchanged. Only tracing needs it: the compiled program keeps what it traced."""
    with nn.intercept_methods(_interceptor):
        yield
