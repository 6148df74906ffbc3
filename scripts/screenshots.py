"""Screenshots of the Streamlit app, one PNG per section, driven in headless Chromium.

    python scripts/screenshots.py --model runs/sbert_small --out test-artifacts/screenshots

Starts `streamlit run app.py` on a free localhost port against --model, waits for its health
check, fills each section with an example (a pair query, an example pair, a pasted batch, a
search, the model card) and saves <out>/<n>_<section>.png. Needs Playwright for Python and a
Chromium (--chromium, default /usr/bin/chromium). tests/test_app_browser.py reuses `serve`,
`launch` and `open_app`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTH = 1360
BATCH_ROWS = """sentence1,sentence2,label
A man is playing a guitar on stage.,A person is making music.,entailment
A man is playing a guitar on stage.,The man is asleep in bed.,contradiction
Two dogs run through a snowy field.,The dogs are chasing a ball.,neutral
A woman is slicing vegetables.,Someone is preparing food.,entailment
A child is reading a book under a tree.,The child is swimming.,contradiction
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model: str, port: int | None = None, env: dict | None = None, log_path: str = ""):
    """Runs `streamlit run app.py -- --model <model>` on 127.0.0.1; yields its URL once
    /_stcore/health answers. The server's output goes to log_path (default: discarded)."""
    port = port or free_port()
    if model.startswith("hf:"):
        model = "hf:" + os.path.abspath(model[3:])
    elif model:
        model = os.path.abspath(model)  # the server runs in the repository root
    command = [
        sys.executable, "-m", "streamlit", "run", os.path.join(ROOT, "app.py"),
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--", "--model", model,
    ]  # fmt: skip
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    server = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with code {server.returncode}; see {log_path}"
                )
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer {url}/_stcore/health in 90 s")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if log_path:
            log.close()


def launch(playwright, chromium: str = CHROMIUM):
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)


def open_app(browser, url: str, height: int = 1400):
    """A page in a fresh context with the app loaded (model loaded, first run finished).
    The viewport is tall: Streamlit scrolls an inner container, so a screenshot only holds
    what the viewport shows."""
    context = browser.new_context(viewport={"width": WIDTH, "height": height})
    page = context.new_page()
    page.goto(url)
    page.get_by_role("tab", name="Pair query").wait_for(timeout=120_000)
    wait_idle(page)
    return page


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Waits until the app is not running a script (Streamlit's status widget is gone)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout_ms)


def panel(page):
    """The visible tab panel."""
    return page.locator('[role="tabpanel"]:visible')


def open_section(page, name: str):
    page.get_by_role("tab", name=name).click()
    wait_idle(page)
    return panel(page)


def fit_and_save(page, path: str) -> str:
    """Resizes the viewport to the app's content height, then saves a screenshot."""
    height = page.evaluate(
        "() => document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
    )
    page.set_viewport_size({"width": WIDTH, "height": min(max(int(height) + 40, 700), 4000)})
    page.wait_for_timeout(600)  # charts redraw after a resize
    page.screenshot(path=path)
    return path


def pair_query(page, premise: str, hypothesis: str):
    section = open_section(page, "Pair query")
    section.get_by_label("Premise").fill(premise)
    section.get_by_label("Hypothesis").fill(hypothesis)
    section.get_by_role("button", name="Predict").click()
    wait_idle(page)
    section.get_by_text("Cosine similarity").wait_for()
    return section


def capture_all(page, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    saved = []

    section = pair_query(page, "A man is playing a guitar on stage.", "A person is making music.")
    if section.get_by_text("Predicted label").count():  # a model with a classifier
        section.locator('[data-testid="stVegaLiteChart"]').wait_for()
    saved.append(fit_and_save(page, os.path.join(out_dir, "1_pair_query.png")))

    section = open_section(page, "Examples")
    section.get_by_text("Gold label").first.wait_for()
    saved.append(fit_and_save(page, os.path.join(out_dir, "2_examples.png")))

    section = open_section(page, "Batch")
    section.get_by_text("…or paste rows instead").click()
    box = section.get_by_label("CSV or TSV rows")
    box.fill(BATCH_ROWS)
    box.press("Control+Enter")
    wait_idle(page)
    section.get_by_role("button", name="Predict").click()
    wait_idle(page)
    section.get_by_text("Download results (CSV)").wait_for()
    saved.append(fit_and_save(page, os.path.join(out_dir, "3_batch.png")))

    section = open_section(page, "Semantic search")
    query = section.get_by_label("Query")
    query.fill("Someone plays an instrument.")
    query.press("Enter")
    wait_idle(page)
    section.locator('[data-testid="stDataFrame"]').first.wait_for()
    saved.append(fit_and_save(page, os.path.join(out_dir, "4_search.png")))

    section = open_section(page, "Model card")
    page.wait_for_timeout(1000)  # images load after the script run
    saved.append(fit_and_save(page, os.path.join(out_dir, "5_model_card.png")))
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="run directory or hf:<folder>")
    parser.add_argument("--out", default=os.path.join(ROOT, "test-artifacts", "screenshots"))
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "streamlit.log")
    with serve(args.model, args.port or None, log_path=log_path) as url, sync_playwright() as p:
        browser = launch(p, args.chromium)
        try:
            for path in capture_all(open_app(browser, url), args.out):
                print(path)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
