"""The app in a real browser: `streamlit run app.py` against the tiny model, driven by Playwright
in headless Chromium. A screenshot goes to test-artifacts/."""

import importlib.util
import os
import pathlib

import pytest
from test_app import build_tiny_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def _screenshots_module():
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "scripts/screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_pair_query_in_a_real_browser(tmp_path_factory):
    screenshots = _screenshots_module()
    if not os.path.exists(screenshots.CHROMIUM):
        pytest.skip(f"no Chromium at {screenshots.CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed"
    )
    tiny = build_tiny_run(str(tmp_path_factory.getbasetemp() / "app_model"))
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"JAXBERT_EXAMPLES": tiny["dev"], "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    log_path = str(ARTIFACTS / "streamlit_browser_test.log")
    with screenshots.serve(tiny["run"], env=env, log_path=log_path) as url:
        with sync_api.sync_playwright() as playwright:
            browser = screenshots.launch(playwright)
            try:
                page = screenshots.open_app(browser, url)
                section = screenshots.pair_query(
                    page, "A man plays a guitar in the park.", "nobody plays a guitar."
                )
                label = section.get_by_test_id("stMetric").filter(has_text="Predicted label")
                value = label.get_by_test_id("stMetricValue").inner_text().strip()
                assert value in ("entailment", "neutral", "contradiction")
                chart = section.locator('[data-testid="stVegaLiteChart"]')
                chart.wait_for()
                assert chart.count() == 1
                assert (
                    "ms"
                    in section.get_by_test_id("stMetric").filter(has_text="Latency").inner_text()
                )
                assert not page.get_by_test_id("stException").count()
                page.screenshot(path=str(ARTIFACTS / "app_pair_query.png"))
            finally:
                browser.close()
