"""The judgements database (jaxbert.feedback): validation and caps, undo, concurrent writers, a
writer killed mid-run, and schema migrations."""

import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest
from feedback_writer import judgement

from jaxbert import feedback
from jaxbert.feedback import FeedbackError, FeedbackStore, Judgement

WRITER = str(pathlib.Path(__file__).with_name("feedback_writer.py"))


def nli(**overrides) -> Judgement:
    fields = dict(
        session="s1",
        model_source="runs/a (step 6)",
        model_digest="abc",
        task="nli",
        sentence1="A man plays a guitar.",
        sentence2="A person makes music.",
        predicted="neutral",
        probabilities={"entailment": 0.3, "neutral": 0.6, "contradiction": 0.1},
        similarity=0.5,
        verdict_label="entailment",
    )
    return Judgement(**(fields | overrides))


def test_add_read_count_and_undo(tmp_path):
    store = FeedbackStore(str(tmp_path / "sub" / "feedback.sqlite3"))
    first = store.add(nli(comment="  the hypothesis follows  "))
    second = store.add(
        nli(
            task="similarity",
            verdict_label=None,
            verdict_score=4.5,
            session="s2",
            origin="examples",
        )
    )
    assert store.count() == 2 and store.count(session="s1") == 1
    newest, oldest = store.rows()
    assert (newest["id"], oldest["id"]) == (second, first)
    assert oldest["comment"] == "the hypothesis follows"
    assert oldest["probabilities"] == {"entailment": 0.3, "neutral": 0.6, "contradiction": 0.1}
    assert oldest["created_at"].endswith("+00:00")
    assert newest["verdict_score"] == 4.5 and newest["origin"] == "examples"
    # Only the session that made a judgement can take it back.
    assert store.undo([second], session="s1") == 0
    assert store.undo([second], session="s2") == 1
    assert [row["id"] for row in store.rows()] == [first]
    assert store.rows(task="similarity") == []


def test_judgements_are_validated_and_capped():
    long = nli(sentence1="x" * 5000, comment="c" * 5000, session="s\x00")
    assert len(long.sentence1) == feedback.MAX_TEXT
    assert len(long.comment) == feedback.MAX_COMMENT
    assert long.session == "s"
    with pytest.raises(TypeError, match="sentence2 must be text"):
        nli(sentence2=b"bytes")
    with pytest.raises(ValueError, match="sentence1 is empty"):
        nli(sentence1="   ")
    with pytest.raises(ValueError, match="verdict_score must be in"):
        nli(task="similarity", verdict_label=None, verdict_score=7)
    with pytest.raises(ValueError, match="an nli judgement has a verdict_label"):
        nli(verdict_label=None)
    with pytest.raises(ValueError, match="finite"):
        nli(similarity=float("nan"))
    with pytest.raises(ValueError, match="task must be one of"):
        nli(task="<script>")


def test_params_digest_tells_models_apart():
    params = {"bert": {"w": np.ones((2, 3), np.float32)}, "head": {"b": np.zeros(3, np.float32)}}
    same = {"head": {"b": np.zeros(3, np.float32)}, "bert": {"w": np.ones((2, 3), np.float32)}}
    other = {"bert": {"w": np.ones((2, 3), np.float32)}, "head": {"b": np.ones(3, np.float32)}}
    assert feedback.params_digest(params) == feedback.params_digest(same)
    assert feedback.params_digest(params) != feedback.params_digest(other)
    half = {k: {n: v.astype(np.float16) for n, v in d.items()} for k, d in params.items()}
    assert feedback.params_digest(params) != feedback.params_digest(half)


def test_default_path_is_outside_the_run_directory(tmp_path):
    assert feedback.default_path({"JAXBERT_FEEDBACK_DB": "/x/y.db"}) == "/x/y.db"
    path = feedback.default_path({"XDG_DATA_HOME": str(tmp_path)})
    assert path == str(tmp_path / "jaxbert" / "feedback.sqlite3")


@pytest.mark.slow
def test_eight_threads_write_a_thousand_judgements_each(tmp_path):
    path = str(tmp_path / "feedback.sqlite3")
    errors = []

    def write(tag, store):
        try:
            for i in range(1000):
                store.add(judgement(tag, i))
        except Exception as error:  # noqa: BLE001 (reported by the assertion below)
            errors.append(error)

    # Two stores (as two app processes would have), four threads on each.
    stores = [FeedbackStore(path), FeedbackStore(path)]
    threads = [threading.Thread(target=write, args=(f"t{i}", stores[i % 2])) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert connection.execute("SELECT COUNT(*) FROM judgements").fetchone() == (8000,)
    per_session = dict(connection.execute("SELECT session, COUNT(*) FROM judgements GROUP BY 1"))
    assert per_session == {f"t{i}": 1000 for i in range(8)}
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_writer_killed_mid_run_loses_no_committed_row(tmp_path):
    path = str(tmp_path / "feedback.sqlite3")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    writer = subprocess.Popen(
        [sys.executable, WRITER, path, "100000", "killed"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    committed = []
    for line in writer.stdout:
        committed.append(int(line))
        if len(committed) == 300:
            break
    writer.send_signal(signal.SIGKILL)
    # Rows it committed after our last read count too: read what is left of its output.
    committed += [int(line) for line in writer.stdout.read().split()]
    writer.wait()
    assert writer.returncode == -signal.SIGKILL
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {row for (row,) in connection.execute("SELECT id FROM judgements")}
    assert set(committed) <= stored
    assert len(stored) - len(committed) <= 1  # at most the row in flight when it was killed
    connection.close()
    store = FeedbackStore(path)  # and the app opens it and writes on
    store.add(nli())
    assert store.count() == len(stored) + 1


def test_migrations_from_every_older_version(tmp_path):
    path = str(tmp_path / "old.sqlite3")
    connection = sqlite3.connect(path, isolation_level=None)
    assert feedback.migrate(connection, target=1) == 0
    connection.execute(
        "INSERT INTO judgements (created_at, session, model_source, model_digest, task, "
        "sentence1, sentence2, predicted, probabilities, similarity, verdict_label) "
        "VALUES ('2026-01-01T00:00:00+00:00', 's', 'm', 'd', 'nli', 'a', 'b', 'neutral', "
        "NULL, 0.1, 'neutral')"
    )
    connection.close()
    store = FeedbackStore(path)
    (row,) = store.rows()
    assert (row["comment"], row["origin"], row["verdict_label"]) == ("", "pair", "neutral")
    store.add(nli(comment="new column"))
    connection = sqlite3.connect(path)
    assert feedback.schema_version(connection) == feedback.SCHEMA_VERSION
    indexes = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert {"judgements_model", "judgements_pair"} <= indexes
    # Migrating again is a no-op; two stores opening an old file at once migrate it once.
    assert feedback.migrate(connection) == feedback.SCHEMA_VERSION


def test_a_newer_or_foreign_database_is_refused(tmp_path):
    newer = str(tmp_path / "newer.sqlite3")
    FeedbackStore(newer).close()
    connection = sqlite3.connect(newer)
    connection.execute(f"PRAGMA user_version = {feedback.SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(FeedbackError, match="newer than this jaxbert"):
        FeedbackStore(newer)
    foreign = str(tmp_path / "foreign.sqlite3")
    connection = sqlite3.connect(foreign)
    connection.execute("CREATE TABLE other (x)")
    connection.close()
    with pytest.raises(FeedbackError, match="not a judgements database"):
        FeedbackStore(foreign)
    (tmp_path / "text.sqlite3").write_text("not a database at all " * 100)
    with pytest.raises(FeedbackError, match="not a database"):
        FeedbackStore(str(tmp_path / "text.sqlite3"))
