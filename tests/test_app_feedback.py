"""Judging the app's answers through AppTest: "right", "wrong, it is <label>", a 0-5 score, a
comment, undo, corrected batch rows; a model without a classifier; an unusable database."""

# ruff: noqa: F811 (the fixtures come from test_app, and tests take them as arguments)

import numpy as np
import pytest
from test_app import (  # noqa: F401 (fixtures)
    app,
    feedback_db,
    fresh_cache,
    pairs_csv,
    section,
    start,
    tiny,
    tiny_model,
    upload,
)

from jaxbert import app_support, feedback
from jaxbert.feedback import FeedbackStore

PREMISE, HYPOTHESIS = "A man plays a guitar in the park.", "nobody plays a guitar."


def ask(at, premise=PREMISE, hypothesis=HYPOTHESIS):
    at.text_area(key="pair_a").input(premise)
    at.text_area(key="pair_b").input(hypothesis)
    return at.button(key="FormSubmitter:pair_form-Predict").click().run()


def successes(at, name="Pair query") -> list[str]:
    return [s.value for s in section(at, name).success]


def test_right_with_a_comment_then_undo(app, tiny_model, feedback_db):
    ask(app)
    expected = tiny_model.classify(PREMISE, HYPOTHESIS)
    predicted = max(expected, key=expected.get)
    app.text_input(key="pair_judge_comment").input("clear <b>case</b>")
    app.button(key="pair_judge_right").click().run()
    assert not app.exception
    (saved,) = successes(app)
    assert f"you said **{predicted}**" in saved and "1 from you in this session" in saved
    (row,) = FeedbackStore(feedback_db).rows()
    assert (row["task"], row["predicted"], row["verdict_label"]) == ("nli", predicted, predicted)
    assert row["comment"] == "clear <b>case</b>"  # stored as text, as typed
    assert (row["sentence1"], row["sentence2"], row["origin"]) == (PREMISE, HYPOTHESIS, "pair")
    assert row["probabilities"] == pytest.approx(expected)
    assert row["model_digest"] == feedback.params_digest(tiny_model.params)
    assert row["model_source"] == tiny_model.source
    assert app.text_input(key="pair_judge_comment").value == ""  # cleared after saving
    assert not [b for b in app.button if b.key == "pair_judge_right"]  # judged once
    app.button(key="pair_judge_nli_undo").click().run()
    assert FeedbackStore(feedback_db).count() == 0
    assert any("Taken back" in i.value for i in section(app, "Pair query").info)
    assert app.button(key="pair_judge_right").label == f"Right: {predicted}"  # ask again


def test_wrong_it_is_another_label(app, tiny_model, feedback_db):
    ask(app)
    expected = tiny_model.classify(PREMISE, HYPOTHESIS)
    predicted = max(expected, key=expected.get)
    other = next(label for label in tiny_model.label_names if label != predicted)
    button = app.button(key=f"pair_judge_{other}")
    assert button.label == f"Wrong, it is {other}"
    button.click().run()
    (row,) = FeedbackStore(feedback_db).rows()
    assert (row["predicted"], row["verdict_label"]) == (predicted, other)
    assert f"you said **{other}**" in successes(app)[0]


def test_similarity_score_and_undo(app, tiny_model, feedback_db):
    ask(app)
    (control,) = section(app, "Pair query").segmented_control
    assert control.options == ["0", "1", "2", "3", "4", "5"]
    control.set_value(4).run()
    (row,) = FeedbackStore(feedback_db).rows()
    assert (row["task"], row["verdict_score"], row["verdict_label"]) == ("similarity", 4.0, None)
    assert row["similarity"] == pytest.approx(tiny_model.similarity(PREMISE, HYPOTHESIS), abs=1e-5)
    assert "similarity **4** of 5" in successes(app)[0]
    app.button(key="pair_judge_similarity_undo").click().run()
    assert FeedbackStore(feedback_db).count() == 0
    # The control comes back empty: the same score can be given again.
    (control,) = section(app, "Pair query").segmented_control
    assert control.value is None


def test_a_new_answer_is_judged_afresh(app, feedback_db):
    ask(app)
    app.button(key="pair_judge_right").click().run()
    ask(app, hypothesis="a man plays a guitar.")
    assert not successes(app)  # the confirmation belonged to the previous answer
    app.button(key="pair_judge_right").click().run()
    assert [r["sentence2"] for r in FeedbackStore(feedback_db).rows()] == [
        "a man plays a guitar.",
        HYPOTHESIS,
    ]
    assert "2 from you in this session" in successes(app)[0]


def test_examples_are_judged_where_they_are_shown(app, feedback_db):
    app.button(key="example_judge_right").click().run()
    (row,) = FeedbackStore(feedback_db).rows()
    assert row["origin"] == "examples"
    assert successes(app, "Examples")


def test_batch_rows_are_corrected_and_saved(app, tiny_model, feedback_db):
    rows = [
        (PREMISE, HYPOTHESIS, "contradiction"),
        ("A woman reads a book.", "a woman reads.", "-"),
    ]
    upload(app, "batch_file", "pairs.csv", pairs_csv(rows))
    app.button(key="batch_run").click().run()
    app.button(key="batch_save").click().run()  # nothing chosen yet
    assert "Nothing to save yet" in section(app, "Batch").warning[0].value
    assert FeedbackStore(feedback_db).count() == 0


def test_batch_corrections_edited_in_the_table_are_saved_then_undone(app, feedback_db):
    rows = [
        (PREMISE, HYPOTHESIS, "-"),
        ("A woman reads a book.", "a woman reads.", "-"),
        ("Two dogs run outside.", "a chef cooks dinner.", "-"),
    ]
    upload(app, "batch_file", "pairs.csv", pairs_csv(rows))
    app.button(key="batch_run").click().run()
    (editor,) = app.data_editor
    predicted = editor.value["predicted"].tolist()
    other = next(label for label in ("entailment", "neutral") if label != predicted[0])
    # A person picks the right label in row 0 and scores row 2 (as the table's cells send them).
    app.session_state[editor.key] = {
        "edited_rows": {0: {"your label": other}, 2: {"your score": 1.5}},
        "added_rows": [],
        "deleted_rows": [],
    }
    app.run()
    app.button(key="batch_save").click().run()
    assert not app.exception
    assert "Saved: 2 judgement(s) of this batch" in successes(app, "Batch")[0]
    stored = {(r["task"], r["sentence1"]): r for r in FeedbackStore(feedback_db).rows()}
    assert set(stored) == {("nli", PREMISE), ("similarity", "Two dogs run outside.")}
    nli_row = stored["nli", PREMISE]
    assert (nli_row["predicted"], nli_row["verdict_label"]) == (predicted[0], other)
    assert nli_row["origin"] == "batch"
    assert stored["similarity", "Two dogs run outside."]["verdict_score"] == 1.5
    assert not [b for b in app.button if b.key == "batch_save"]  # saved once
    app.button(key="batch_judge_undo").click().run()
    assert not app.exception and FeedbackStore(feedback_db).count() == 0
    assert app.button(key="batch_save")  # the corrections can be saved again


def test_batch_judgements_from_an_edited_table(tiny_model):
    table = app_support.parse_pairs(
        pairs_csv([("a b", "c d", "-"), ("e f", "g h", "-"), ("i j", "k l", "-")]),
        label_names=tiny_model.label_names,
        max_rows=10,
        max_chars=100,
    )
    result = app_support.predict_pairs(tiny_model, table)
    judgements = app_support.batch_judgements(
        result.columns,
        [None, "neutral", ""],
        [np.nan, 2.5, 5.0],
        session="s",
        model_source="m",
        model_digest="d",
    )
    assert [(j.task, j.sentence1) for j in judgements] == [
        ("nli", "e f"),
        ("similarity", "e f"),
        ("similarity", "i j"),
    ]
    nli, score, _ = judgements
    assert nli.verdict_label == "neutral" and nli.predicted == result.columns["predicted"][1]
    assert set(nli.probabilities) == set(tiny_model.label_names)
    assert score.verdict_score == 2.5 and score.origin == "batch"


def test_a_model_without_classifier_is_scored_not_labelled(tiny, monkeypatch, feedback_db):
    at = ask(start(monkeypatch, tiny["hf"]))
    assert not [b for b in at.button if (b.key or "").startswith("pair_judge_right")]
    section(at, "Pair query").segmented_control[0].set_value(1).run()
    (row,) = FeedbackStore(feedback_db).rows()
    assert (row["task"], row["predicted"], row["probabilities"]) == ("similarity", None, None)


def test_an_unusable_database_turns_judgements_off_not_the_app(tiny, monkeypatch, tmp_path):
    (tmp_path / "not_a_db").write_text("plain text " * 200)
    monkeypatch.setenv("JAXBERT_FEEDBACK_DB", str(tmp_path / "not_a_db"))
    at = ask(start(monkeypatch, tiny["run"], examples=tiny["dev"]))
    assert not at.exception
    assert section(at, "Pair query").metric  # the answer is still shown
    assert any("Judgements are off" in c.value for c in section(at, "Pair query").caption)


def test_feedback_db_from_argv_or_environment(tmp_path):
    env = {"JAXBERT_FEEDBACK_DB": "/from/env.db"}
    assert app_support.feedback_db_from(["--feedback_db", "/a.db"], env) == "/a.db"
    assert app_support.feedback_db_from(["--model", "m", "--feedback_db=/b.db"], env) == "/b.db"
    assert app_support.feedback_db_from([], env) == "/from/env.db"
    assert app_support.feedback_db_from([], {"XDG_DATA_HOME": str(tmp_path)}).startswith(
        str(tmp_path)
    )


def test_judgements_tab_counts_compares_and_offers_downloads(app, tiny, feedback_db):
    assert "No judgements yet" in section(app, "Judgements").info[0].value
    ask(app)
    app.button(key="pair_judge_right").click().run()
    section(app, "Pair query").segmented_control[0].set_value(3).run()
    tab = section(app, "Judgements")
    counts = {m.label: m.value for m in tab.metric}
    assert counts == {
        "Judgements": "2",
        "Of this model": "2",
        "From you": "2",
        "Distinct pairs": "1",
    }
    app.text_area(key="compare_models").input(f"{tiny['run']}\n{tiny['hf']}\nruns/missing")
    app.button(key="FormSubmitter:compare_form-Compare").click().run()
    assert not app.exception
    tab = section(app, "Judgements")
    assert "Cannot load `runs/missing`" in tab.error[0].value
    assert tab.info[0].value.startswith(f"People agree most with {tiny['run']}: 100.0 %")
    table = next(d.value for d in tab.dataframe if d.value.columns[0] == "model")
    assert table["model"].tolist() == [tiny["run"], tiny["hf"]]
    assert table["pairs"].tolist()[0] == 1 and table["accuracy"].tolist()[0] == 1.0
    assert tab.get("imgs") or tab.get("image")  # the comparison chart
    latest = next(d.value for d in tab.dataframe if d.value.columns[0] == "created_at")
    assert latest["sentence1"].tolist() == [PREMISE, PREMISE]


def test_no_model_named_offers_the_models_it_finds(tiny, monkeypatch, tmp_path):
    import os

    runs = tmp_path / "more_runs"
    runs.mkdir()
    os.symlink(tiny["run"], runs / "sbert_tiny")
    os.symlink(tiny["hf"][3:], runs / "encoder")
    found = app_support.find_models([str(runs), str(tmp_path / "missing")])
    assert set(found) == {str(runs / "sbert_tiny"), f"hf:{runs / 'encoder'}"}
    monkeypatch.setenv("JAXBERT_RUNS_DIR", str(runs))
    at = start(monkeypatch, None)
    buttons = {b.label: b for b in at.button if (b.key or "").startswith("open_model_")}
    assert str(runs / "sbert_tiny") in buttons
    buttons[str(runs / "sbert_tiny")].click().run()
    assert not at.exception and at.tabs  # the model is loaded
    assert at.sidebar.text_input(key="model_path").value == str(runs / "sbert_tiny")
