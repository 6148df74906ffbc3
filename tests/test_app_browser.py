"""The app in a real browser: `streamlit run app.py` against the tiny model, driven by Playwright
in headless Chromium: a pair query, then a judgement of its answer clicked, counted and taken
back. Screenshots go to test-artifacts/."""

import importlib.util
import os
import pathlib

import pytest
from test_app import build_tiny_run

from jaxbert.feedback import FeedbackStore

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
PREMISE, HYPOTHESIS = "A man plays a guitar in the park.", "nobody plays a guitar."
COMMENT = "<b>clear</b> case"  # stored as typed, never rendered as HTML


def _screenshots_module():
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "scripts/screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metric(section, label: str) -> str:
    found = section.get_by_test_id("stMetric").filter(has_text=label)
    return found.get_by_test_id("stMetricValue").inner_text().strip()


@pytest.mark.slow
def test_pair_query_and_a_judgement_in_a_real_browser(tmp_path_factory, tmp_path):
    screenshots = _screenshots_module()
    if not os.path.exists(screenshots.CHROMIUM):
        pytest.skip(f"no Chromium at {screenshots.CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed"
    )
    expect = sync_api.expect
    tiny = build_tiny_run(str(tmp_path_factory.getbasetemp() / "app_model"))
    ARTIFACTS.mkdir(exist_ok=True)
    db = str(tmp_path / "feedback.sqlite3")
    env = {
        "JAXBERT_EXAMPLES": tiny["dev"],
        "JAXBERT_FEEDBACK_DB": db,  # never the user's database
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    log_path = str(ARTIFACTS / "streamlit_browser_test.log")
    with screenshots.serve(tiny["run"], env=env, log_path=log_path) as url:
        with sync_api.sync_playwright() as playwright:
            browser = screenshots.launch(playwright)
            try:
                page = screenshots.open_app(browser, url)
                section = screenshots.pair_query(page, PREMISE, HYPOTHESIS)
                predicted = _metric(section, "Predicted label")
                assert predicted in ("entailment", "neutral", "contradiction")
                section.locator('[data-testid="stVegaLiteChart"]').wait_for()
                assert section.locator('[data-testid="stVegaLiteChart"]').count() == 1
                assert _metric(section, "Latency").endswith("ms")
                assert not page.get_by_test_id("stException").count()
                page.screenshot(path=str(ARTIFACTS / "app_pair_query.png"))

                # Judge the answer where it is shown: a comment, then "Right: <label>".
                comment = section.get_by_label("Comment (optional; saved with your next click)")
                comment.fill(COMMENT)
                comment.press("Enter")
                screenshots.wait_idle(page)
                section.get_by_role("button").filter(has_text=f"Right: {predicted}").click()
                screenshots.wait_idle(page)
                saved = section.get_by_test_id("stAlertContentSuccess")
                saved.wait_for()
                assert (
                    f"Saved: you said {predicted} (judgement #1; 1 from you in this session)"
                    in (saved.inner_text())
                )
                # The buttons go once the run ends (the script still draws the other tabs).
                expect(section.get_by_role("button").filter(has_text="Right: ")).to_have_count(0)
                expect(section.get_by_role("button").filter(has_text="Wrong, ")).to_have_count(0)
                assert not page.locator("b", has_text="clear").count()
                store = FeedbackStore(db)
                (row,) = store.rows()
                assert (row["sentence1"], row["sentence2"]) == (PREMISE, HYPOTHESIS)
                assert (row["predicted"], row["verdict_label"]) == (predicted, predicted)
                assert row["comment"] == COMMENT
                page.screenshot(path=str(ARTIFACTS / "app_judgement_saved.png"))

                # The Judgements tab counts it.
                tab = screenshots.open_section(page, "Judgements")
                tab.get_by_test_id("stMetric").first.wait_for()
                assert _metric(tab, "Judgements") == "1"
                assert _metric(tab, "From you") == "1"
                assert _metric(tab, "Of this model") == "1"

                # Undo takes it back: gone from the database and from the count.
                section = screenshots.open_section(page, "Pair query")
                section.get_by_role("button").filter(has_text="Undo").first.click()
                screenshots.wait_idle(page)
                section.get_by_text("Taken back").wait_for()
                assert store.count() == 0
                tab = screenshots.open_section(page, "Judgements")
                tab.get_by_text("No judgements yet").wait_for()
                assert not page.get_by_test_id("stException").count()
                store.close()
            finally:
                browser.close()
