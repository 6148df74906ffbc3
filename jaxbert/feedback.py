"""People's judgements of the app's answers, kept in one SQLite file.

    store = FeedbackStore(default_path())           # $JAXBERT_FEEDBACK_DB or ~/.local/share/...
    row = store.add(Judgement(session=..., model_source=..., model_digest=params_digest(params),
                              task="nli", sentence1=..., sentence2=..., predicted="neutral",
                              probabilities={...}, similarity=0.41, verdict_label="entailment"))
    store.undo([row], session=...)                  # a person takes their judgement back

One file in WAL mode (readers never block the writer, several app sessions write at once) with
`synchronous=FULL` (a committed judgement survives a crash of the app and of the machine). Each
call opens its own connection, so any thread may call any method. The schema carries its version
in `PRAGMA user_version`; `MIGRATIONS[i]` takes a database from version i to i + 1, in one
transaction, and a database newer than this code is refused rather than written to.

Everything stored is plain text or numbers, capped in length (`MAX_TEXT`, `MAX_COMMENT`); nothing
read back is executed or rendered as HTML by the app.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

ENV_VAR = "JAXBERT_FEEDBACK_DB"
TASKS = ("nli", "similarity")
ORIGINS = ("pair", "examples", "batch")
SCORE_RANGE = (0.0, 5.0)  # a person's similarity score, as in STS-B
MAX_TEXT = 2_000  # characters per sentence (the app's MAX_CHARS)
MAX_COMMENT = 1_000
MAX_NAME = 200  # model source, labels, session id

_V1 = """
CREATE TABLE judgements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    session TEXT NOT NULL,
    model_source TEXT NOT NULL,
    model_digest TEXT NOT NULL,
    task TEXT NOT NULL CHECK (task IN ('nli', 'similarity')),
    sentence1 TEXT NOT NULL,
    sentence2 TEXT NOT NULL,
    predicted TEXT,
    probabilities TEXT,
    similarity REAL,
    verdict_label TEXT,
    verdict_score REAL,
    CHECK ((task = 'nli') = (verdict_label IS NOT NULL)),
    CHECK ((task = 'similarity') = (verdict_score IS NOT NULL))
);
"""
# Version 2: an optional comment, where in the app the answer was judged, and indexes for the
# per-model counts and the per-pair grouping of the Judgements tab.
_V2 = """
ALTER TABLE judgements ADD COLUMN comment TEXT NOT NULL DEFAULT '';
ALTER TABLE judgements ADD COLUMN origin TEXT NOT NULL DEFAULT 'pair';
CREATE INDEX judgements_model ON judgements (model_digest);
CREATE INDEX judgements_pair ON judgements (sentence1, sentence2);
"""
MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)
COLUMNS = (
    "id",
    "created_at",
    "session",
    "model_source",
    "model_digest",
    "task",
    "origin",
    "sentence1",
    "sentence2",
    "predicted",
    "probabilities",
    "similarity",
    "verdict_label",
    "verdict_score",
    "comment",
)


class FeedbackError(RuntimeError):
    """The database cannot be used (newer schema, not a judgements file, unwritable)."""


def default_path(environ: Mapping[str, str] | None = None) -> str:
    """$JAXBERT_FEEDBACK_DB, else $XDG_DATA_HOME/jaxbert/feedback.sqlite3 (~/.local/share/...):
    outside any run directory, so retraining or deleting a run keeps what people said."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR):
        return environ[ENV_VAR]
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "jaxbert", "feedback.sqlite3")


def params_digest(params) -> str:
    """sha256 (hex, first 16 digits) of a parameter tree: names, dtypes, shapes and bytes, so two
    models at one path (retrained, or a newer checkpoint) have different identities."""
    import jax  # here so that reading a database does not need JAX

    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _text(value, what: str, limit: int, required: bool = True) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be text (str), got {type(value).__name__}")
    value = value.replace("\x00", "").strip()[:limit]
    if required and not value:
        raise ValueError(f"{what} is empty")
    return value


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One person's verdict on one answer.

    task "nli": verdict_label is the label the person says is right (the prediction when they
    clicked "right"). task "similarity": verdict_score is their 0-5 similarity score.
    probabilities: {label: p} of the model's answer (None without a classifier); similarity: the
    model's cosine. Texts are validated and capped in `__post_init__`.
    """

    session: str
    model_source: str
    model_digest: str
    task: str
    sentence1: str
    sentence2: str
    predicted: str | None = None
    probabilities: Mapping[str, float] | None = None
    similarity: float | None = None
    verdict_label: str | None = None
    verdict_score: float | None = None
    comment: str = ""
    origin: str = "pair"

    def __post_init__(self):
        fix = _setter(self)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {self.origin!r}")
        fix("session", _text(self.session, "session", MAX_NAME))
        fix("model_source", _text(self.model_source, "model_source", MAX_NAME))
        fix("model_digest", _text(self.model_digest, "model_digest", MAX_NAME))
        fix("sentence1", _text(self.sentence1, "sentence1", MAX_TEXT))
        fix("sentence2", _text(self.sentence2, "sentence2", MAX_TEXT))
        fix("comment", _text(self.comment, "comment", MAX_COMMENT, required=False))
        if self.predicted is not None:
            fix("predicted", _text(self.predicted, "predicted", MAX_NAME))
        if self.probabilities is not None:
            fix("probabilities", _probabilities(self.probabilities))
        if self.similarity is not None:
            fix("similarity", _finite(self.similarity, "similarity"))
        if self.task == "nli":
            if self.verdict_label is None or self.verdict_score is not None:
                raise ValueError("an nli judgement has a verdict_label and no verdict_score")
            fix("verdict_label", _text(self.verdict_label, "verdict_label", MAX_NAME))
        else:
            if self.verdict_score is None or self.verdict_label is not None:
                raise ValueError("a similarity judgement has a verdict_score and no verdict_label")
            score = _finite(self.verdict_score, "verdict_score")
            if not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
                raise ValueError(f"verdict_score must be in {SCORE_RANGE}, got {score}")
            fix("verdict_score", score)


def _setter(instance):
    """Assigns fields of a frozen dataclass during its own __post_init__."""
    return lambda name, value: object.__setattr__(instance, name, value)


def _finite(value, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    return value


def _probabilities(probabilities: Mapping[str, float]) -> dict[str, float]:
    if len(probabilities) > 50:
        raise ValueError(f"too many labels in probabilities: {len(probabilities)}")
    return {
        _text(k, "label", MAX_NAME): _finite(p, f"probability of {k!r}")
        for k, p in probabilities.items()
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class FeedbackStore:
    """The judgements database at `path` (created, with its folder, on first use).

    One connection per store, shared by the threads of the process under a lock (SQLite takes
    one writer at a time anyway); other processes coordinate through SQLite's own locks.
    Opening a connection per call would cost ~16 ms a call here: the last connection to close
    a WAL database checkpoints it.
    """

    def __init__(self, path: str, timeout: float = 30.0, synchronous: str = "FULL"):
        self.path = str(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
            self._connection = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as error:
            raise FeedbackError(f"cannot open {self.path}: {error}") from None
        self._lock = threading.Lock()
        with self._connect() as connection:
            connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if connection.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise FeedbackError(f"{self.path}: the file system does not support WAL mode")
            # FULL: a committed judgement survives a power cut too (NORMAL only an app crash);
            # ~2 ms a commit here, nothing next to a person's click.
            connection.execute(f"PRAGMA synchronous = {synchronous}")
            migrate(connection)

    @contextlib.contextmanager
    def _connect(self):
        with self._lock:
            try:
                yield self._connection
            except sqlite3.DatabaseError as error:
                raise FeedbackError(f"{self.path}: {error}") from None

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def add(self, judgement: Judgement) -> int:
        """Stores one judgement; returns its row id once it is committed."""
        return self.add_many([judgement])[0]

    def add_many(self, judgements: Sequence[Judgement]) -> list[int]:
        """Stores judgements in one transaction (all or none); returns their row ids."""
        rows = [_row(j) for j in judgements]
        names = [c for c in COLUMNS if c != "id"]
        sql = (
            f"INSERT INTO judgements ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
        )
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                ids = [connection.execute(sql, [row[n] for n in names]).lastrowid for row in rows]
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return ids

    def undo(self, ids: Iterable[int], session: str) -> int:
        """Deletes the judgements `ids` made in `session` (nobody takes back someone else's);
        returns how many were deleted."""
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        with self._connect() as connection:
            cursor = connection.execute(
                f"DELETE FROM judgements WHERE session = ? AND id IN ({marks})", [session, *ids]
            )
            return cursor.rowcount

    def count(self, *, model_digest: str | None = None, session: str | None = None) -> int:
        where, values = _filters(model_digest=model_digest, session=session)
        with self._connect() as connection:
            cursor = connection.execute(f"SELECT COUNT(*) FROM judgements{where}", values)
            return cursor.fetchone()[0]

    def rows(
        self, *, task: str | None = None, model_digest: str | None = None, limit: int = 0
    ) -> list[dict]:
        """Judgements as dicts (COLUMNS; probabilities parsed), newest first."""
        where, values = _filters(task=task, model_digest=model_digest)
        sql = f"SELECT {', '.join(COLUMNS)} FROM judgements{where} ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as connection:
            records = connection.execute(sql, values).fetchall()
        out = []
        for record in records:
            row = dict(zip(COLUMNS, record))
            if row["probabilities"]:
                row["probabilities"] = json.loads(row["probabilities"])
            out.append(row)
        return out


def _filters(**conditions) -> tuple[str, list]:
    used = {k: v for k, v in conditions.items() if v is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k in used), list(used.values())


def _row(judgement: Judgement) -> dict:
    row = dataclasses.asdict(judgement)
    row["created_at"] = _now()
    if row["probabilities"] is not None:
        row["probabilities"] = json.dumps(row["probabilities"])
    return row


def schema_version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA user_version").fetchone()[0]


def migrate(connection: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Brings the database to schema version `target`, one migration per transaction; returns
    the version it found. A newer database, or a file with other tables, is refused."""
    found = schema_version(connection)
    if found > SCHEMA_VERSION:
        raise FeedbackError(
            f"the judgements database has schema version {found}, newer than this jaxbert's "
            f"{SCHEMA_VERSION}: upgrade jaxbert (it never writes to a newer database)"
        )
    if found == 0:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if tables.fetchall():
            raise FeedbackError("the file is an SQLite database but not a judgements database")
    for version in range(found, target):
        # One transaction per step, the version read again inside it: two app processes
        # starting at once both see the old version, and only the first may migrate.
        connection.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(connection) == version:
                for statement in filter(str.strip, MIGRATIONS[version].split(";")):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {version + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return found
