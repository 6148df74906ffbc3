"""The encoder's matrix multiplies at a single query's token count, ours (XLA:CPU) beside ONNX
Runtime's (MLAS), on the same weights and inputs: is a one-sentence query slower because of
the kernels, or because of what surrounds them?

    python scripts/benchmark.py gemm --tokens 8,16,32 --peer onnx     # onnx: the `peers` extra
    python scripts/benchmark.py gemm --tokens 8,16,32 --peer onnx --cpus 1   # both on one core

A call runs a chain of matmuls, each on the one before's output and with its own weights, as
the encoder does: `layers` hidden -> hidden ones (query, key, value, attention output) or
`layers` feed-forward blocks (hidden -> intermediate -> hidden); one compiled program, or one
ONNX graph of the same chain. Weights are random (what a kernel costs does not depend on them).
  float32   x @ W; ONNX Runtime's MatMul.
  int8      ours: `jaxbert.quantize`'s dense layer (activations quantised per token, int8 or
            uint8 as `quantize.int8_activations()` picks for this CPU, int8
            weights per output channel, int32 accumulation, rescaled: the layer `quantize="int8"`
            serves); ONNX Runtime's DynamicQuantizeMatMul (uint8 activations quantised per
            call, the same int8 weights and scales: what `quantize_dynamic` gives).
  bfloat16  ours only (ONNX Runtime has no bfloat16 MatMul on CPU).
An empty call (x + 1) gives each runtime's fixed cost per call, which the chain's time includes.
`cpus` runs the process on that many cores, XLA:CPU's thread pool and ONNX Runtime's intra-op
threads sized to match: their kernels on one core, apart from how each spreads a matmul of a
few rows over several.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import SETTLE_S, require_peer, split_list, use_cpus
from jaxbert import quantize

MODES = ("float32", "int8", "bfloat16")


def _chains(hidden: int, intermediate: int, layers: int) -> dict[str, list[tuple[int, int]]]:
    """The (in, out) sizes of each chain of matmuls a call runs, one after another as in the
    encoder: `layers` hidden -> hidden (query, key, value, attention output), and `layers` times
    hidden -> intermediate -> hidden (the feed-forward block)."""
    return {
        "hidden->hidden": [(hidden, hidden)] * layers,
        "feed-forward": [(hidden, intermediate), (intermediate, hidden)] * layers,
    }


def _ours(mode: str, weights: list[np.ndarray]):
    """(compiled program x -> x @ W_1 @ W_2 ..., its weights) for `mode`."""
    params = []
    for w in weights:
        if mode == "int8":
            kernel, scale = quantize.quantize_kernel(w)
            offset = quantize.kernel_offset(kernel)
            params.append((jnp.asarray(kernel), jnp.asarray(scale), jnp.asarray(offset)))
        else:
            params.append((jnp.asarray(w, jnp.dtype(mode)), None, None))

    def program(x, params):
        for kernel, scale, offset in params:
            if mode == "float32":
                x = x @ kernel
            else:  # the dense layer `SentenceModel(quantize=mode)` serves
                x = quantize.quantized_dense(x, kernel, scale, None, offset)
        return x

    return jax.jit(program), params


def _onnx_session(mode: str, weights: list[np.ndarray], x: np.ndarray, threads: int = 0):
    """The same chain as an ONNX Runtime session for inputs shaped like `x`, on `threads`
    intra-op threads (0: ONNX Runtime's default, one per physical core); no weights: an empty
    call (x + 1)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    tokens, k = x.shape
    nodes, initializers, name = [], [], "x"
    if not weights:
        initializers.append(numpy_helper.from_array(np.ones((1,), np.float32), "one"))
        nodes.append(helper.make_node("Add", ["x", "one"], ["y0"]))
        name = "y0"
    for i, w in enumerate(weights):
        if mode == "float32":
            initializers.append(numpy_helper.from_array(w, f"w{i}"))
            nodes.append(helper.make_node("MatMul", [name, f"w{i}"], [f"y{i}"]))
        else:
            kernel, scale = quantize.quantize_kernel(w)
            initializers += [
                numpy_helper.from_array(kernel, f"w{i}"),
                numpy_helper.from_array(scale, f"s{i}"),
            ]
            nodes.append(
                helper.make_node(
                    "DynamicQuantizeMatMul",
                    [name, f"w{i}", f"s{i}"],
                    [f"y{i}"],
                    domain="com.microsoft",
                )  # fmt: skip
            )
        name = f"y{i}"
    n = weights[-1].shape[1] if weights else k
    graph = helper.make_graph(
        nodes, "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, k])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [tokens, n])],
        initializers,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _best_round_us(calls: dict, rounds: int, repeats: int) -> dict[str, float]:
    """Microseconds per call of each fn in `calls`: the median of its fastest round. The fns
    take turns round by round, so a change in the machine's load hits them alike; the fastest
    round is what the kernels can do (on the shared 2-core machine the medians of whole runs
    moved far more between processes than between rounds)."""
    best = {name: float("inf") for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            time.sleep(SETTLE_S)
            for _ in range(3):
                fn()
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                seconds.append(time.perf_counter() - start)
            best[name] = min(best[name], 1e6 * float(np.median(seconds)))
    return best


def bench_gemm(
    *,
    hidden=384,
    intermediate=1536,
    tokens="8,16,32",
    layers=6,
    modes="float32,int8,bfloat16",
    peer="",
    rounds=5,
    repeats=40,
    cpus=0,
    seed=0,
) -> Iterator[dict]:
    """Per chain, token count and mode: microseconds per matrix multiply (a call's time over
    its matmuls) and GFLOP/s, ours and (peer="onnx") ONNX Runtime's, with the output's largest
    difference from float64 relative to its largest value; and each runtime's empty call.
    `cpus`: run on that many cores (0: all; before JAX starts, see `common.use_cpus`)."""
    modes = split_list(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown modes {unknown}; choose from {MODES}")
    if peer not in ("", "onnx"):
        raise ValueError(f"unknown peer {peer!r}; the only one is onnx")
    if peer:
        require_peer(("onnx", "onnxruntime"), "gemm --peer onnx")
    threads = use_cpus(cpus) if cpus else 0  # 0: ONNX Runtime's default
    rng = np.random.default_rng(seed)
    for count in [int(t) for t in split_list(tokens)]:
        x = rng.standard_normal((count, hidden)).astype(np.float32)
        empty = jax.jit(lambda x: x + 1)
        calls = {"jaxbert": lambda p=empty, x=x: jax.block_until_ready(p(x))}
        if peer:
            session = _onnx_session("float32", [], x, threads)
            calls["onnxruntime"] = lambda s=session, x=x: s.run(None, {"x": x})
        for impl, us in _best_round_us(calls, rounds, repeats).items():
            yield dict(bench="gemm", impl=impl, chain="empty call", tokens=count, us=round(us, 1))
        for chain, sizes in _chains(hidden, intermediate, layers).items():
            # Unit-variance inputs and weights ~ N(0, 1/in): activations keep their scale.
            weights = [(rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32) for s in sizes]
            calls, outputs = {}, {}
            for mode in modes:
                program, params = _ours(mode, weights)
                outputs[f"jaxbert/{mode}"] = np.asarray(program(x, params))
                calls[f"jaxbert/{mode}"] = lambda p=program, a=params, x=x: jax.block_until_ready(
                    p(x, a)
                )
                if peer and mode in ("float32", "int8"):
                    session = _onnx_session(mode, weights, x, threads)
                    outputs[f"onnxruntime/{mode}"] = session.run(None, {"x": x})[0]
                    calls[f"onnxruntime/{mode}"] = lambda s=session, x=x: s.run(None, {"x": x})
            exact = x.astype(np.float64)
            for w in weights:
                exact = exact @ w.astype(np.float64)
            flops = sum(2 * count * k * n for k, n in sizes)
            for name, us in _best_round_us(calls, rounds, repeats).items():
                impl, mode = name.split("/")
                record = dict(bench="gemm", impl=impl, mode=mode, chain=chain, tokens=count)
                record.update(matmuls=len(sizes), us_per_matmul=round(us / len(sizes), 1))
                record["gflops"] = float(f"{flops / us / 1e3:.3g}")
                error = np.abs(outputs[name] - exact).max() / np.abs(exact).max()
                record["max_error_vs_float64"] = float(f"{error:.2g}")
                yield record
