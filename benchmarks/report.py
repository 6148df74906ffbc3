"""Markdown tables from benchmark JSON lines, ours and the peers' side by side."""

from __future__ import annotations


def report(records: list[dict]) -> str:
    """Markdown tables from benchmark JSON lines, ours and the peers' (../shared/bench) mixed:
    pretraining seq/s and MFU with the ratio to the torch.compile peer of the same size, SBERT
    fine-tuning pairs/s against sentence-transformers, serving (`encode`: every side's
    sentences/s, one-sentence latency and STS score; `encode-pair`: a pair's latency;
    `encode-call-cost`: a call's fixed and per-token cost; `gemm`:
    microseconds per matmul), and each profile's kinds of work."""
    lines = []
    pretrain = [r for r in records if r.get("bench") == "pretrain" or "peer" in r and "mfu" in r]
    compiled = {
        r["preset"]: r["seq_per_s"]
        for r in pretrain
        if r.get("peer", "").startswith("hf-torch") and r.get("mode") == "compile"
    }
    if pretrain:
        lines += [
            "| impl | size | batch x seq | attention | step ms | seq/s | MFU | "
            "vs torch.compile | peak GiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in pretrain:
            size = r.get("size", r.get("preset"))
            impl = "jaxbert" if r.get("bench") else f"{r['peer']} {r.get('mode', '')}".strip()
            ratio = f"{r['seq_per_s'] / compiled[size]:.2f}x" if size in compiled else ""
            mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else ""
            memory = r.get("peak_device_memory_gib", r.get("peak_mem_gib"))
            lines.append(
                f"| {impl} | {size} | {r['batch']} x {r['seq']} | {r.get('attention', '')} | "
                f"{r['step_ms']} | {r['seq_per_s']:,.0f} | {mfu} | "
                f"{ratio} | {memory if memory is not None else ''} |"
            )
    finetune = [r for r in records if r.get("bench") == "finetune" or r.get("job") == "finetune"]
    lines += _table(
        ["impl", "model", "batch", "pairs/s"],
        # ours, our in-process peer (impl=...), ../shared/bench's (peer=...)
        [
            [r.get("peer") or r.get("impl") or "jaxbert", r["model"], r["batch"],
             f"{r['pairs_per_s']:,.0f}"]
            for r in finetune
        ],
    )  # fmt: skip
    lines += _serving(records)
    for r in records:
        summary = r.get("profile_summary") or (r if r.get("bench") == "encode-profile" else None)
        if not summary:
            continue
        kinds = ", ".join(f"{k} {v['ms']} ms" for k, v in summary["by_kind"].items())
        what = (
            f"{r['impl']} one sentence ({r['tokens']} tokens, bucket {r['length']})"
            if r.get("bench") == "encode-profile"
            else f"{r['size']} {r['attention']}"
        )
        lines += [
            "",
            f"profile {what}: {summary['kernel_ms_per_step']} ms of kernels per step ({kinds})",
        ]
        lines += [f"  {t['ms']:8.3f} ms  {t['kind']:<16} {t['name'][:90]}" for t in summary["top"]]
    return "\n".join(lines)


def _serving(records: list[dict]) -> list[str]:
    encode = [r for r in records if r.get("bench") == "encode"]
    gemm = [r for r in records if r.get("bench") == "gemm"]
    lines = _table(
        ["cpus", "impl", "batch", "sentences/s", "p50 ms", "p95 ms", "STS"],
        [
            [_cpus(r), r["impl"], r["batch"], f"{r['sentences_per_s']:,.0f}",
             r.get("latency_ms_p50", ""), r.get("latency_ms_p95", ""), r.get("sts_spearman", "")]
            for r in encode
        ],
    )  # fmt: skip
    lines += _table(
        ["cpus", "impl", "pair p50 ms", "p95 ms", "pairs/s"],
        [
            [_cpus(r), r["impl"], r["latency_ms_p50"], r["latency_ms_p95"], r["pairs_per_s"]]
            for r in records
            if r.get("bench") == "encode-pair"
        ],
    )
    lines += _table(
        ["cpus", "impl", "call, 1 row: fixed ms", "+ ms per token", "2 rows: fixed ms",
         "+ ms per token-row", "1-row fixed cost in tokens"],
        [
            [_cpus(r), r["impl"], r["fixed_ms_1_rows"], r["per_token_ms_1_rows"],
             r["fixed_ms_2_rows"], r["per_token_ms_2_rows"], r["fixed_in_tokens"]]
            for r in records
            if r.get("bench") == "encode-call-cost"
        ],
    )  # fmt: skip
    return lines + _table(
        ["cpus", "tokens", "chain", "impl", "mode", "us per matmul (per call)", "GFLOP/s"],
        [
            [_cpus(r), r["tokens"], r["chain"], r["impl"], r.get("mode", ""),
             r.get("us_per_matmul", r.get("us")), r.get("gflops", "")]
            for r in gemm
        ],
    )  # fmt: skip


def _cpus(record: dict) -> str:
    """The cores a record's process ran on ("2 cpu" -> "2"): `--cpus` runs differ by it."""
    return record.get("host", "").split(" ")[0]


def _table(columns: list[str], rows: list[list]) -> list[str]:
    """A markdown table after a blank line; nothing without rows."""
    if not rows:
        return []
    lines = ["", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
