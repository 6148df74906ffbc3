"""Measure a deployment bundle as a visitor meets it: size, cold start, memory, answer latency.

    python scripts/export.py --deploy /tmp/bundle --model runs/sbert_small
    python scripts/measure_bundle.py --bundle /tmp/bundle --queries 100
    python scripts/measure_bundle.py --bundle /tmp/bundle --dtypes    # float32 or bfloat16?

Installs the bundle's jaxbert wheel into a folder of its own (so nothing is imported from this
checkout), starts `streamlit run app.py -- --model model` in the bundle, and drives it in headless
Chromium (Playwright): cold start is the process starting to the first answer on the page; then
--queries pair queries, each timed from the click to the new answer on the page (the app's own
"Latency" metric, the model call alone, is reported too); then the server's resident memory. The
load average is printed with each number: on a shared machine it says how much to trust them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import screenshots  # noqa: E402 (launch, free_port, wait_idle)


def bundle_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def metric(section, label: str) -> str:
    found = section.get_by_test_id("stMetric").filter(has_text=label)
    return found.get_by_test_id("stMetricValue").inner_text().strip() if found.count() else ""


def compare_dtypes(model_dir: str, rounds: int = 2) -> None:
    """Encode latency of the bundle's model computing in float32 and in bfloat16, alternately:
    one sentence at a time (p50 / p95 of 100) and batches of 64 (sentences/s)."""
    import dataclasses

    from jaxbert import deploy
    from jaxbert.serve import SentenceModel

    base = deploy.load_served(model_dir)
    sentences = [f"A person number {i} is playing music in the park." for i in range(256)]
    for round_ in range(rounds):
        for dtype in deploy.SERVE_DTYPES:
            model = SentenceModel(
                model_config=dataclasses.replace(base.model_config, dtype=dtype),
                params=base.params,
                tokenizer=base.tokenizer,
                pooling=base.pooling,
                normalize=base.normalize,
                max_len=base.max_len,
                has_classifier=False,
            )
            model.encode(sentences, batch_size=64)
            for sentence in sentences[:20]:
                model.encode(sentence)
            times = []
            for sentence in sentences[:100]:
                start = time.perf_counter()
                model.encode(sentence)
                times.append(1000 * (time.perf_counter() - start))
            start = time.perf_counter()
            model.encode(sentences, batch_size=64)
            rate = len(sentences) / (time.perf_counter() - start)
            print(
                f"round {round_} {dtype:>8}: one sentence p50 {np.median(times):.2f} ms, p95 "
                f"{np.percentile(times, 95):.2f} ms; batch 64 {rate:.0f} sentences/s; "
                f"load average {os.getloadavg()[0]:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--chromium", default=screenshots.CHROMIUM)
    parser.add_argument("--dtypes", action="store_true", help="compare float32 / bfloat16 only")
    args = parser.parse_args()
    if args.dtypes:
        return compare_dtypes(os.path.join(args.bundle, "model"))
    from playwright.sync_api import sync_playwright

    bundle = os.path.abspath(args.bundle)
    site = tempfile.mkdtemp(prefix="bundle_site_")
    wheels = [os.path.join(bundle, "wheels", n) for n in os.listdir(os.path.join(bundle, "wheels"))]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "-t", site]
        + wheels,
        check=True,
    )
    port = screenshots.free_port()
    env = dict(
        os.environ,
        PYTHONPATH=site,
        JAXBERT_FEEDBACK_DB=os.path.join(site, "feedback.sqlite3"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--", "--model", "model"]
    log = open(os.path.join(site, "streamlit.log"), "w")  # noqa: SIM115
    report = {"bundle_mb": bundle_bytes(bundle) / 1e6, "load_at_start": os.getloadavg()}
    start = time.monotonic()
    server = subprocess.Popen(command, cwd=bundle, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.2)
            if server.poll() is not None or time.monotonic() - start > 600:
                raise RuntimeError(f"streamlit did not start; see {log.name}")
        with sync_playwright() as playwright:
            browser = screenshots.launch(playwright, args.chromium)
            page = browser.new_page(viewport={"width": screenshots.WIDTH, "height": 1400})
            page.goto(url)
            section = page.locator('[role="tabpanel"]:visible')
            premise = section.get_by_label("Premise")
            premise.wait_for(timeout=600_000)  # a busy machine: wait, and report the time
            premise.fill("A man is playing a guitar on stage.")
            hypothesis = section.get_by_label("Hypothesis")
            hypothesis.fill("A person is making music.")
            section.get_by_role("button", name="Predict").click()
            section.get_by_text("Cosine similarity").wait_for(timeout=600_000)
            report["cold_start_s"] = time.monotonic() - start
            report["load_at_cold_start"] = os.getloadavg()
            screenshots.wait_idle(page)
            page_ms, model_ms = [], []
            for i in range(args.queries):
                before = (metric(section, "Latency"), metric(section, "Cosine similarity"))
                hypothesis.fill(f"A person is making music number {i}.")
                clicked = time.monotonic()
                section.get_by_role("button", name="Predict").click()
                while (metric(section, "Latency"), metric(section, "Cosine similarity")) == before:
                    if time.monotonic() - clicked > 60:
                        raise TimeoutError(f"query {i}: no new answer in 60 s")
                    page.wait_for_timeout(5)
                page_ms.append(1000 * (time.monotonic() - clicked))
                model_ms.append(float(metric(section, "Latency").split()[0]))
                screenshots.wait_idle(page)
            browser.close()
        for name, values in (("answer_on_page_ms", page_ms), ("model_call_ms", model_ms)):
            report[name] = {
                "p50": float(np.percentile(values, 50)),
                "p95": float(np.percentile(values, 95)),
            }
        report["rss_mib_after_queries"] = rss_mib(server.pid)
        report["queries"] = args.queries
        report["load_at_end"] = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
