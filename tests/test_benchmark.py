"""scripts/benchmark.py: every sub-command runs on a tiny setup and prints valid JSON lines.

These check the plumbing (flags, records, peers in the same process), not the speed.
"""

import gzip
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import common, pretrain, profiles, report
from jaxbert.data.tokenizer import BertTokenizer
from jaxbert.model import SIZES

ROOT = pathlib.Path(__file__).resolve().parents[1]
PEER_DIR = ROOT.parent / "shared" / "bench"
ENVIRONMENT = {"host", "cpu", "loadavg", "backend", "device", "devices", "jax"}
NLI_ROWS = [
    ("A man plays a guitar on the street.", "A man makes music.", "entailment"),
    ("Two dogs run through a snowy field.", "The dogs are asleep.", "contradiction"),
    ("A woman reads a book in the park.", "A woman reads a novel.", "neutral"),
    ("The chef cooks dinner for the guests.", "Someone is cooking.", "entailment"),
]


def _load_cli():
    spec = importlib.util.spec_from_file_location("benchmark_cli", ROOT / "scripts/benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLI = _load_cli()


def run(capsys, *argv) -> list[dict]:
    capsys.readouterr()
    CLI.main([str(a) for a in argv])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert records and all(ENVIRONMENT <= set(r) for r in records)
    assert all(len(r["loadavg"]) == 3 and r["cpu"] for r in records)
    return records


def has_peer() -> bool:
    return all(importlib.util.find_spec(m) for m in ("torch", "sentence_transformers"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A WordPiece vocab, an NLI csv (SNLI dev layout) and an STS-B-layout dev file."""
    root = tmp_path_factory.mktemp("bench")
    texts = [t for row in NLI_ROWS for t in row[:2]]
    BertTokenizer.train(texts * 20, vocab_size=120).save(root)
    with open(root / "nli.csv", "w") as f:
        f.write("sentence1,sentence2,label\n")
        for i in range(48):
            premise, hypothesis, label = NLI_ROWS[i % len(NLI_ROWS)]
            f.write(f'"{premise}","{hypothesis}",{label}\n')
    with open(root / "sts-dev.csv", "w") as f:
        for i, (a, b, _) in enumerate(NLI_ROWS * 3):
            f.write(f"main\tx\t2024\t{i}\t{i % 6}.0\t{a}\t{b}\n")
    return root


def test_flops_formula_is_bench_commons():
    if not (PEER_DIR / "bench_common.py").is_file():
        pytest.skip("../shared/bench/bench_common.py is not here")
    sys.path.insert(0, str(PEER_DIR))
    try:
        import bench_common
    finally:
        sys.path.remove(str(PEER_DIR))
    for size in ("tiny", "mini", "small", "base", "large"):
        layers, hidden, _, intermediate = bench_common.PRESETS[size]
        assert (SIZES[size]["num_layers"], SIZES[size]["hidden_size"]) == (layers, hidden)
        for seq, masked in ((128, 19.2), (512, 76), (64, 9)):
            ours = pretrain.model_flops_per_seq(layers, hidden, intermediate, 30522, seq, masked)
            theirs = bench_common.model_flops_per_seq(
                layers, hidden, intermediate, 30522, seq, masked
            )
            assert ours == pytest.approx(theirs, rel=1e-12)


def test_pretrain(capsys, tmp_path):
    (record,) = run(
        capsys, "pretrain", "--size", "tiny", "--batch", 4, "--seq", 16, "--vocab-size", 300,
        "--warmup", 1, "--steps", 2, "--peak-tflops", 1.0, "--grad-accum", 2,
        "--moment-dtype", "bfloat16", "--no-nsp", "--profile", tmp_path / "trace",
    )  # fmt: skip
    assert record["bench"] == "pretrain" and record["size"] == "tiny" and record["steps"] == 2
    assert record["seq_per_s"] > 0 and record["tokens_per_s"] == pytest.approx(
        16 * record["seq_per_s"], rel=0.01
    )
    assert record["masked_per_seq"] == 2  # round(0.15 * (16 - 3))
    assert record["mfu"] == pytest.approx(record["model_tflops"], abs=1e-3)
    assert record["nsp"] is False and record["compile_s"] > 0
    assert any((tmp_path / "trace").rglob("*.xplane.pb"))
    summary = record["profile_summary"]  # on CPU: the XLA thunks of the 3 traced steps
    assert summary["kernel_ms_per_step"] > 0 and summary["top"]
    assert sum(k["share"] for k in summary["by_kind"].values()) == pytest.approx(1, abs=0.01)
    # The step's matmuls are found among XLA:CPU's thunks (ynn_fusion.N) by their HLO; by
    # their names they would all be elementwise fusions, the heads' batched ones included.
    assert summary["by_kind"]["matmul"]["ms"] > 0 and summary["by_kind"]["attention"]["ms"] > 0


def _trace(path, kernels, host_spans=()):
    """A profiler trace file: one GPU process with a stream line and an 'XLA Modules' line
    (which must not be counted), and a host process."""
    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 1, "tid": 7, "name": "thread_name", "args": {"name": "Stream #7"}},
        {"ph": "M", "pid": 1, "tid": 9, "name": "thread_name", "args": {"name": "XLA Modules"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 2, "tid": 3, "name": "thread_name", "args": {"name": "python"}},
        {"ph": "X", "pid": 1, "tid": 9, "ts": 0, "dur": 1e6, "name": "jit_train_step"},
    ]
    events += [{"ph": "X", "pid": 1, "tid": 7, "ts": 0, "dur": d, "name": n} for n, d in kernels]
    events += [{"ph": "X", "pid": 2, "tid": 3, "ts": 0, "dur": d, "name": n} for n, d in host_spans]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)


def test_profile_summary_counts_device_kernels_per_step(tmp_path):
    kernels = [
        ("nvjet_sm90_tst_128x128_NNT", 3000.0),
        ("loop_add_fusion_3", 500.0),
        ("nvjet_sm90_tst_128x128_NNT", 3000.0),
        ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop", 1000.0),
        ("input_reduce_fusion_1", 500.0),
    ]
    _trace(tmp_path / "plugins/profile/run/host.trace.json.gz", kernels, [("PjitFunction", 9e6)])
    summary = profiles.profile_summary(str(tmp_path), steps=2, top=2)
    assert summary["kernel_ms_per_step"] == 4.0 and summary["kernels_per_step"] == 2.5
    assert summary["top"] == [
        dict(name="nvjet_sm90_tst_128x128_NNT", kind="matmul", ms=3.0, share=0.75),
        dict(
            name="cudnn_generated_fort_native_sdpa_sm90_flash_fprop",
            kind="attention",
            ms=0.5,
            share=0.125,
        ),
    ]
    assert list(summary["by_kind"]) == ["matmul", "attention", "elementwise/other fusion", "reduce"]
    assert summary["by_kind"]["reduce"] == dict(ms=0.25, share=0.062)
    with pytest.raises(FileNotFoundError, match="no \\*.trace.json.gz"):
        profiles.profile_summary(str(tmp_path / "empty"), steps=1)


def test_cpu_profile_counts_the_thunks_of_both_xla_threads_by_their_fusions_kind(tmp_path):
    """On CPU the thunks run on the client thread and the thread pool, each followed by an
    `end:` marker; what a `ynn_fusion` computes comes from the HLO, not its name."""
    events = [
        {"ph": "M", "pid": 5, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 5, "tid": 1, "name": "thread_name",
         "args": {"name": "tf_XLAPjRtCpuClient/1"}},
        {"ph": "M", "pid": 5, "tid": 2, "name": "thread_name", "args": {"name": "tf_XLAEigen/2"}},
        {"ph": "M", "pid": 5, "tid": 3, "name": "thread_name", "args": {"name": "python"}},
    ]  # fmt: skip
    spans = [
        (1, "ThunkExecutor::Execute", 900.0), (1, "ynn_fusion.3", 300.0),
        (1, "end: ynn_fusion.3", 1.0), (2, "ynn_fusion.7", 100.0), (2, "ynn_fusion", 50.0),
        (2, "loop_add_fusion", 50.0), (3, "ynn_fusion.3", 1e6),
    ]  # fmt: skip
    events += [{"ph": "X", "pid": 5, "tid": t, "ts": 0, "dur": d, "name": n} for t, n, d in spans]
    path = tmp_path / "plugins/profile/run/host.trace.json.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    kinds = {"ynn_fusion.3": "matmul", "ynn_fusion.7": "attention", "ynn_fusion": "reduce"}
    summary = profiles.profile_summary(str(tmp_path), steps=1, kinds=kinds)
    assert summary["kernels_per_step"] == 4 and summary["kernel_ms_per_step"] == 0.5
    assert {k: v["ms"] for k, v in summary["by_kind"].items()} == {
        "matmul": 0.3, "attention": 0.1, "reduce": 0.05, "elementwise/other fusion": 0.05
    }  # fmt: skip


def test_fusion_kinds_of_a_compiled_program():
    """A dense layer, a batched (attention-like) matmul and a reduction, compiled for this
    machine: every fusion that holds one of them gets its kind."""
    import jax
    import jax.numpy as jnp

    def program(x, w, q, k):
        dense = x @ w
        scores = jnp.einsum("hqd,hkd->hqk", q, k)
        return dense, scores, jnp.max(jnp.abs(x), axis=-1)

    args = [np.ones(s, np.float32) for s in [(16, 64), (64, 64), (4, 16, 8), (4, 16, 8)]]
    hlo = jax.jit(program).lower(*args).compile().as_text()
    kinds = profiles.fusion_kinds(hlo)
    assert {"matmul", "attention", "reduce"} <= set(kinds.values())
    for name, kind in kinds.items():
        assert f"%{name} = " in hlo and kind in ("matmul", "attention", "reduce")
    # Fused computations named like the HLO text a compiled program gives
    text = (
        "%fused_computation.2 (p: f32[2,3]) -> f32[2,4] {\n"
        "  ROOT %d = f32[2,4]{1,0} dot(%p, %w), lhs_contracting_dims={1}\n}\n"
        "%fused_computation.3 (p: f32[2,3]) -> f32[2] {\n"
        "  ROOT %r = f32[2]{0} reduce(%p, %c), dimensions={1}\n}\n"
        "%fused_computation.4 (p: f32[2,3]) -> f32[2,3] {\n"
        "  ROOT %a = f32[2,3]{1,0} add(%p, %p)\n}\n"
        "ENTRY %main {\n"
        "  %ynn_fusion.2 = f32[2,4]{1,0} fusion(%x), kind=kCustom, calls=%fused_computation.2\n"
        "  %ynn_fusion.3 = f32[2]{0} fusion(%x), kind=kCustom, calls=%fused_computation.3\n"
        "  %loop_add_fusion = f32[2,3]{1,0} fusion(%x), kind=kLoop, calls=%fused_computation.4\n"
        "}\n"
    )
    assert profiles.fusion_kinds(text) == {"ynn_fusion.2": "matmul", "ynn_fusion.3": "reduce"}


def test_report_puts_ours_beside_the_peers():
    ours = dict(
        bench="pretrain", size="base", batch=256, seq=128, attention="cudnn",
        step_ms=50.0, seq_per_s=5120.0, mfu=0.45,
        peak_device_memory_gib=17.7,
        profile_summary=dict(
            kernel_ms_per_step=49.0, by_kind={"matmul": dict(ms=25.0, share=0.51)},
            top=[dict(name="nvjet_gemm", kind="matmul", ms=5.0, share=0.1)],
        ),
    )  # fmt: skip
    peer = dict(
        peer="hf-torch-BertForPreTraining", mode="compile", preset="base", batch=256, seq=128,
        step_ms=64.0, seq_per_s=4000.0, mfu=0.35, peak_mem_gib=14.7,
    )  # fmt: skip
    st = dict(
        peer="sentence-transformers", job="finetune", model="small", batch=64, pairs_per_s=600
    )
    text = report.report([ours, peer, st])
    assert "| jaxbert | base | 256 x 128 | cudnn | 50.0 | 5,120 | 45.0 % | 1.28x |" in text
    assert "| hf-torch-BertForPreTraining compile | base |" in text and "| 1.00x | 14.7 |" in text
    assert "| sentence-transformers | small | 64 | 600 |" in text
    assert "49.0 ms of kernels per step (matmul 25.0 ms)" in text and "nvjet_gemm" in text


def test_report_renders_the_serving_records():
    records = [
        dict(bench="encode", impl="jaxbert-int8", batch=1, sentences_per_s=591.6,
             latency_ms_p50=1.57, latency_ms_p95=2.62, sts_spearman=86.57, host="1 cpu"),
        dict(bench="encode", impl="onnxruntime-fp32", batch=64, sentences_per_s=1633.4),
        dict(bench="encode-pair", impl="jaxbert (two calls)", batch=2, latency_ms_p50=8.67,
             latency_ms_p95=11.2, pairs_per_s=112.0, host="2 cpu"),
        dict(bench="encode-call-cost", impl="jaxbert", fixed_ms_1_rows=2.7,
             per_token_ms_1_rows=0.13, fixed_ms_2_rows=2.4, per_token_ms_2_rows=0.125,
             fixed_in_tokens=20.8),
        dict(bench="gemm", impl="onnxruntime", chain="empty call", tokens=8, us=4.7),
        dict(bench="gemm", impl="jaxbert", mode="int8", chain="feed-forward", tokens=16,
             us_per_matmul=47.7, gflops=395.8, host="2 cpu"),
        dict(bench="encode-profile", impl="jaxbert", tokens=10, length=10,
             kernel_ms_per_step=2.13, by_kind={"matmul": dict(ms=1.76, share=0.82)},
             top=[dict(name="ynn_fusion.27", kind="matmul", ms=0.1, share=0.05)]),
    ]  # fmt: skip
    text = report.report(records)
    assert "| 1 | jaxbert-int8 | 1 | 592 | 1.57 | 2.62 | 86.57 |" in text
    assert "|  | onnxruntime-fp32 | 64 | 1,633 |  |  |  |" in text  # a record without a host
    assert "| 2 | jaxbert (two calls) | 8.67 | 11.2 | 112.0 |" in text
    assert "|  | jaxbert | 2.7 | 0.13 | 2.4 | 0.125 | 20.8 |" in text
    assert "|  | 8 | empty call | onnxruntime |  | 4.7 |  |" in text
    assert "| 2 | 16 | feed-forward | jaxbert | int8 | 47.7 | 395.8 |" in text
    assert "profile jaxbert one sentence (10 tokens, bucket 10): 2.13 ms" in text
    assert "(matmul 1.76 ms)" in text and "ynn_fusion.27" in text


def test_input_corpus_and_pairs(capsys, files, tiny_corpus_dir):
    records = run(
        capsys, "input", "--files", tiny_corpus_dir / "corpus.jsonl", "--tokenizer-dir", files,
        "--cache-dir", files / "cache", "--batch-size", 8, "--max-len", 32, "--seconds", 0.2,
        "--nsp", "both", "--target", 100,
    )  # fmt: skip
    assert [r["bench"] for r in records] == ["input_corpus", "input_pretrain", "input_pretrain"]
    assert records[1]["sequences_per_s"] > 0 and "ratio_to_target" in records[1]
    (pairs,) = run(
        capsys, "input", "--pairs", files / "nli.csv", "--vocab", files / "vocab.txt",
        "--batch-size", 8, "--buckets", "8,16,32", "--seconds", 0.2,
    )  # fmt: skip
    assert pairs["bench"] == "input_pairs" and pairs["pairs"] == 48
    assert pairs["pairs_per_s"] > 0 and 0 <= pairs["padding_fraction"] < 1


@pytest.mark.slow
def test_finetune_with_peer(capsys, files):
    peer = ["--peer"] if has_peer() else []
    records = run(
        capsys, "finetune", "--model", "tiny", "--vocab", files / "vocab.txt",
        "--data", files / "nli.csv", "--batch", 8, "--buckets", "32", "--max-len", 32,
        "--warmup", 1, "--steps", 2, *peer,
    )  # fmt: skip
    ours = records[0]
    assert ours["impl"] == "jaxbert" and ours["pairs"] == 48 and ours["pairs_per_s"] > 0
    if peer:
        assert records[1]["impl"] == "sentence-transformers" and records[1]["pairs_per_s"] > 0


def test_encode_with_peer(capsys, files, tmp_path):
    peer = ["--peer"] if has_peer() else []
    records = run(
        capsys, "encode", "--model", "random:tiny", "--vocab", files / "vocab.txt",
        "--data", files / "nli.csv", "--num-sentences", 16, "--batch", 8, "--queries", 3,
        "--rounds", 1, "--max-len", 32, "--profile", tmp_path / "trace", *peer,
    )  # fmt: skip
    kinds = [(r["bench"], r["impl"], r.get("batch")) for r in records]
    assert kinds[:2] == [("encode", "jaxbert", 8), ("encode", "jaxbert", 1)]
    assert kinds[-2:] == [("classify", "jaxbert", 64), ("classify", "jaxbert", 1)]
    (profile,) = [r for r in records if r["bench"] == "encode-profile"]
    assert profile["length"] >= profile["tokens"] > 2 and profile["kernel_ms_per_step"] > 0
    # The dense layers' and attention's matmuls are found among the thunks by their HLO.
    assert profile["by_kind"]["matmul"]["ms"] > 0 and profile["by_kind"]["attention"]["ms"] > 0
    assert records[1]["latency_ms_p50"] <= records[1]["latency_ms_p95"]
    pairs = {r["impl"]: r for r in records if r["bench"] == "encode-pair"}
    assert {"jaxbert", "jaxbert (two calls)"} <= set(pairs)
    assert all(r["queries"] == 3 and 0 < r["latency_ms_p50"] for r in pairs.values())
    (cost,) = [r for r in records if r["bench"] == "encode-call-cost"]
    assert list(cost["ms_2_rows"]) == ["8", "16", "32"]  # up to --max-len 32
    assert cost["per_token_ms_1_rows"] > 0 and "fixed_in_tokens" in cost
    if peer:
        assert ("encode", "sentence-transformers", 8) in kinds and records[0]["ratio"] > 0
        assert "sentence-transformers" in pairs


ONNX_PEER = common.ONNX_PEER_MODULES


@pytest.mark.slow  # the export: ~10 s
@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ONNX_PEER),
    reason=f"the ONNX Runtime peer needs {', '.join(ONNX_PEER)} (pip install -e .[peers])",
)
def test_encode_with_the_onnx_peer_and_quantized_rows(capsys, files):
    records = run(
        capsys, "encode", "--model", "random:tiny", "--vocab", files / "vocab.txt",
        "--data", files / "nli.csv", "--num-sentences", 16, "--batch", 8, "--queries", 3,
        "--rounds", 1, "--max-len", 32, "--peer", "onnx", "--quantize", "int8",
        "--quality", files / "sts-dev.csv",
    )  # fmt: skip
    encode = {(r["impl"], r["batch"]): r for r in records if r["bench"] == "encode"}
    impls = ["jaxbert", "jaxbert-int8", "onnxruntime-fp32", "onnxruntime-int8"]
    assert set(encode) == {(impl, batch) for impl in impls for batch in (8, 1)}
    for record in encode.values():
        assert record["sentences_per_s"] > 0 and -100 <= record["sts_spearman"] <= 100
    # The same weights exported: ONNX Runtime float32 gives our float32 embeddings.
    assert encode["onnxruntime-fp32", 8]["min_cosine_vs_float32"] > 0.9999
    assert encode["jaxbert-int8", 8]["min_cosine_vs_float32"] > 0.99
    assert encode["onnxruntime-int8", 1]["latency_ms_p50"] > 0
    breakdown = {r["impl"]: r for r in records if r["bench"] == "encode-breakdown"}
    assert set(breakdown) == {"jaxbert", "jaxbert-int8"}
    stages = ("tokenize", "pad", "executable_fine", "executable_coarse", "jit_coarse", "encode")
    assert all(breakdown["jaxbert"][f"{stage}_ms"] > 0 for stage in stages)


@pytest.mark.skipif(
    all(importlib.util.find_spec(m) for m in ONNX_PEER), reason="the ONNX Runtime peer is installed"
)
def test_the_onnx_peers_without_their_packages_say_how_to_install_them(capsys, files):
    with pytest.raises(ModuleNotFoundError, match="not installed: pip install -e .\\[peers\\]"):
        run(capsys, "encode", "--model", "random:tiny", "--vocab", files / "vocab.txt",
            "--data", files / "nli.csv", "--peer", "onnx")  # fmt: skip
    if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        with pytest.raises(ModuleNotFoundError, match="gemm --peer onnx needs"):
            run(capsys, "gemm", "--peer", "onnx")


def test_require_peer_names_what_is_missing():
    common.require_peer(("numpy",), "anything")  # installed: no error
    with pytest.raises(ModuleNotFoundError, match="x needs no_such_module_xyz, not installed"):
        common.require_peer(("numpy", "no_such_module_xyz"), "x")


def test_use_cpus_refuses_what_it_cannot_do():
    import jax

    available = len(os.sched_getaffinity(0))
    assert common.use_cpus(0) == common.use_cpus(available) == available  # all: nothing to do
    for count in (-1, available + 1):
        with pytest.raises(ValueError, match=f"this process may use {available} CPUs"):
            common.use_cpus(count)
    jax.devices()  # JAX has started: its thread pool already has one thread per CPU
    if available > 1:
        with pytest.raises(RuntimeError, match="before JAX starts its backend"):
            common.use_cpus(1)
    assert len(os.sched_getaffinity(0)) == available  # nothing changed


def _fresh_process(*argv) -> list[dict]:
    """scripts/benchmark.py in its own process (what JAX's backend starts with matters)."""
    command = [sys.executable, ROOT / "scripts/benchmark.py", *map(str, argv)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a second CPU to leave out")
def test_gemm_and_encode_on_one_core(files):
    """--cpus 1: every record says it ran on one CPU (the peers, where installed, on one
    thread)."""
    onnx = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
    records = _fresh_process(
        "gemm", "--cpus", 1, "--hidden", 32, "--intermediate", 64, "--tokens", 4, "--layers", 1,
        "--modes", "float32", "--rounds", 1, "--repeats", 2, *(["--peer", "onnx"] if onnx else []),
    )  # fmt: skip
    impls = {"jaxbert", "onnxruntime"} if onnx else {"jaxbert"}
    assert {r["impl"] for r in records} == impls and len(records) == 3 * len(impls)
    assert {r["host"] for r in records} == {"1 cpu"}
    records = _fresh_process(
        "encode", "--cpus", 1, "--model", "random:tiny", "--vocab", files / "vocab.txt",
        "--data", files / "nli.csv", "--num-sentences", 8, "--batch", 4, "--queries", 2,
        "--rounds", 1, "--max-len", 32, *(["--peer"] if has_peer() else []),
    )  # fmt: skip
    assert ("encode", "jaxbert", 1) in [(r["bench"], r["impl"], r.get("batch")) for r in records]
    assert {r["host"] for r in records} == {"1 cpu"}


def test_encode_rejects_an_unknown_peer(capsys, files):
    with pytest.raises(ValueError, match="unknown peers \\['tensorrt'\\]"):
        run(capsys, "encode", "--model", "random:tiny", "--vocab", files / "vocab.txt",
            "--data", files / "nli.csv", "--peer", "tensorrt")  # fmt: skip


def test_gemm_chains_ours_and_onnx_runtimes_on_the_same_weights(capsys):
    onnx = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
    records = run(
        capsys, "gemm", "--hidden", 32, "--intermediate", 64, "--tokens", "4,8", "--layers", 2,
        "--rounds", 1, "--repeats", 2, *(["--peer", "onnx"] if onnx else []),
    )  # fmt: skip
    empty = {(r["impl"], r["tokens"]) for r in records if r["chain"] == "empty call"}
    impls = ["jaxbert", "onnxruntime"] if onnx else ["jaxbert"]
    assert empty == {(impl, tokens) for impl in impls for tokens in (4, 8)}
    rows = {(r["impl"], r["mode"], r["chain"], r["tokens"]): r for r in records if "mode" in r}
    modes = [("jaxbert", m) for m in ("float32", "int8", "bfloat16")]
    modes += [("onnxruntime", m) for m in ("float32", "int8")] if onnx else []
    chains = {"hidden->hidden": 2, "feed-forward": 4}
    assert set(rows) == {(*m, c, t) for m in modes for c in chains for t in (4, 8)}
    bounds = {"float32": 1e-5, "int8": 0.1, "bfloat16": 0.05}  # relative to the largest output
    for (impl, mode, chain, tokens), row in rows.items():
        assert row["matmuls"] == chains[chain] and row["us_per_matmul"] > 0 and row["gflops"] > 0
        assert 0 <= row["max_error_vs_float64"] < bounds[mode], (impl, mode, chain, tokens)
    with pytest.raises(ValueError, match="unknown modes \\['fp8'\\]"):
        run(capsys, "gemm", "--modes", "float32,fp8")
    with pytest.raises(ValueError, match="the only one is onnx"):
        run(capsys, "gemm", "--peer", "tensorrt")


def test_make_pairs_and_finetune_memory(capsys, files, tmp_path):
    out = tmp_path / "pairs.csv"
    (made,) = run(
        capsys, "make-pairs", "--source", files / "nli.csv", "--out", out, "--num-pairs", 200
    )
    assert made["pairs"] == 200 and len(out.read_text().splitlines()) == 201
    (memory,) = run(
        capsys, "finetune", "--memory", "--pairs-file", out, "--model", "tiny",
        "--vocab", files / "vocab.txt", "--eval-sts", files / "sts-dev.csv", "--batch", 8,
        "--buckets", "32", "--max-len", 32, "--max-steps", 2,
    )  # fmt: skip
    assert memory["steps"] == 2 and memory["file_lines"] == 201
    assert memory["peak_rss_gib"] >= memory["rss_after_imports_gib"] > 0


def test_hlo_traffic_of_a_compiled_step():
    """The HLO reader on the CPU compilation of the real step (the GPU one needs the CUDA plugin):
    bytes are operands plus result, kernels carry their source, and the categories find the
    model's dropout, LayerNorm and GELU."""
    import jax
    import jax.numpy as jnp

    from benchmarks import hlo

    assert hlo.shape_bytes("bf16[4,8]{1,0}") == 64
    assert hlo.shape_bytes("(f32[3]{0}, pred[2,2]{1,0}, u32[])") == 12 + 4 + 4

    x = jnp.ones((256, 256), jnp.float32)
    text = jax.jit(lambda a, b: jnp.exp(a) * 2.0 + b).lower(x, x).compile().as_text()
    kernels = hlo.kernel_traffic(text)
    assert [k["bytes"] for k in kernels] == [3 * 256 * 256 * 4]  # one fusion: a, b in; out
    # exp (10 units) + multiply + add per element; the constant's broadcast is free.
    assert [k["ops"] for k in kernels] == [12 * 256 * 256]
    # A kernel takes the longer of its bytes and its arithmetic: here the arithmetic.
    alone = hlo.traffic_summary(text, bandwidth=1e12, alu=1e9)
    assert alone["memory_bound_ms"] == pytest.approx(3 * 256 * 256 * 4 / 1e9, abs=1e-3)
    assert alone["modelled_ms"] == pytest.approx(12 * 256 * 256 / 1e6, abs=1e-3)

    from jaxbert import configs, update
    from jaxbert import pretrain as pretraining
    from jaxbert.model import BertConfig, BertForPreTraining

    rng = np.random.default_rng(0)
    batch = {
        k: jnp.asarray(v) for k, v in pretrain.random_pretraining_batch(rng, 2, 16, 97, 4).items()
    }
    model = BertForPreTraining(BertConfig.from_size("tiny", vocab_size=128))
    tx, _, _ = update.make_optimizer(configs.pretrain_config().optim, total_steps=10)
    inputs = [
        batch[k] for k in ("input_ids", "segment_ids", "attention_mask", "masked_lm_positions")
    ]
    state = update.create_state(model.init(jax.random.key(0), *inputs)["params"], tx, None)
    step = jax.jit(update.make_train_step(pretraining.pretraining_loss_fn(model, True), tx))
    text = step.lower(state, batch, jax.random.key(1)).compile().as_text()
    summary = hlo.traffic_summary(text, bandwidth=1e12, alu=1e12, top=5)
    assert {"dropout", "layernorm", "gelu", "matmul"} <= set(summary["by_category"])
    assert summary["kernels"] == sum(c["kernels"] for c in summary["by_category"].values())
    assert len(summary["top"]) == 5 and "layer/N" in " ".join(t["group"] for t in summary["top"])
    assert summary["memory_bound_ms"] == pytest.approx(summary["memory_bound_gb"], abs=0.01)
    assert summary["modelled_ms"] >= summary["memory_bound_ms"] > 0


def test_hlo_without_the_cuda_plugin_says_how_to_get_it():
    from benchmarks import hlo

    try:
        hlo.gpu_mesh("h200")
    except RuntimeError as e:
        assert 'pip install "jax[cuda13]==' in str(e)
    else:
        pytest.skip("a CUDA plugin is installed here: compiling for a GPU works without one")
