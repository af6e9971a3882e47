"""The library on disk: one SQLite database (``LIB/library.sqlite``, write-ahead log).

Why SQLite (measured, ``Testing/benchmarks/library_bench.py``; README, Case library): it is in
Python's standard library, one file, safe under ``kill -9`` (a study is written in one
transaction: all its organs or none), and many readers can query while one indexer writes.
Vectors are float32 blobs; search reads them once into a matrix per model and organ
(``query.py``), exact up to ``ann.EXACT_LIMIT`` rows per group and through an HNSW index
beyond.

Tables:

- ``studies``: one row per (study, model): where it came from, its key (``studies.StudySource
  .key``), status ``done`` or ``failed`` with the one-line reason, DICOM Study/Series Instance
  UIDs where present, the patient id only as a keyed hash (HMAC-SHA256 with the library's own
  random key, ``meta.hash_key``); patient names are never read into it.
- ``organs``: one row per organ of a done study: its embedding, its baseline (mean and spread
  of its similarity to the reference sentences, as single-case search computes them), the
  organ's bounding box on the CT (voxels and millimetres) and its scores (JSON).
"""
from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import InputError

DB_NAME = "library.sqlite"
SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY, study_key TEXT NOT NULL, model_checksum TEXT NOT NULL, model_id TEXT NOT NULL,
    source TEXT NOT NULL, path TEXT, seg_path TEXT, status TEXT NOT NULL, reason TEXT, study_uid TEXT, series_uid TEXT,
    patient_hash TEXT, organs INTEGER NOT NULL DEFAULT 0, seconds REAL, indexed_at TEXT NOT NULL,
    UNIQUE (study_key, model_checksum));
CREATE TABLE IF NOT EXISTS organs (
    id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    organ TEXT NOT NULL, label_id INTEGER NOT NULL, model_checksum TEXT NOT NULL, dim INTEGER NOT NULL,
    embedding BLOB NOT NULL, baseline_mean REAL NOT NULL, baseline_sd REAL NOT NULL,
    bbox TEXT NOT NULL, scores TEXT NOT NULL, UNIQUE (study_id, organ));
CREATE INDEX IF NOT EXISTS organs_by_model ON organs (model_checksum, organ);
"""


@dataclass
class StudyRecord:
    """What the indexer writes for one study (``organs`` empty when it failed)."""

    study_key: str
    source: str
    model_id: str
    model_checksum: str
    path: str = ""                           # the CT file or DICOM folder, absolute (to open a hit)
    seg_path: str = ""                       # its segmentation ("" when TotalSegmentator made it)
    status: str = "done"
    reason: str = ""
    study_uid: str = ""
    series_uid: str = ""
    patient_id: str = ""                     # hashed before it is stored
    seconds: float = 0.0
    organs: list[dict] = field(default_factory=list)  # organ, label_id, embedding, mean, sd, bbox, scores


class Library:
    """A library folder; ``Library(path)`` opens it (``create=True`` makes it)."""

    def __init__(self, folder, create: bool = False):
        self.folder = Path(folder).expanduser()
        db = self.folder / DB_NAME
        if not db.is_file():
            if not create:
                raise InputError(self.folder, "is no case library (no library.sqlite); make one with "
                                              "`totalfm index ROOT --library LIB`")
            if self.folder.exists() and not self.folder.is_dir():
                raise InputError(self.folder, "is a file; give a folder for the library")
            self.folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(db), timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('hash_key', ?)", (secrets.token_hex(32),))
        self._key = bytes.fromhex(self.db.execute("SELECT value FROM meta WHERE key='hash_key'").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def patient_hash(self, patient_id: str) -> str:
        """The keyed hash a patient id is stored as ("" for none)."""
        if not patient_id:
            return ""
        return hmac.new(self._key, patient_id.encode("utf-8"), "sha256").hexdigest()

    def done_keys(self, model_checksum: str, retry_failed: bool = False) -> set[str]:
        """Study keys already indexed with this model (failed ones too, unless ``retry_failed``)."""
        statuses = ("done",) if retry_failed else ("done", "failed")
        rows = self.db.execute(f"SELECT study_key FROM studies WHERE model_checksum=? AND status IN "
                               f"({','.join('?' * len(statuses))})", (model_checksum, *statuses))
        return {r[0] for r in rows}

    def write(self, record: StudyRecord) -> None:
        """One study and all its organs in one transaction (replacing an earlier failed try)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self.transaction():
            self.db.execute("DELETE FROM studies WHERE study_key=? AND model_checksum=?",
                            (record.study_key, record.model_checksum))
            cur = self.db.execute(
                "INSERT INTO studies (study_key, model_checksum, model_id, source, path, seg_path, status, reason, "
                "study_uid, series_uid, patient_hash, organs, seconds, indexed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.study_key, record.model_checksum, record.model_id, record.source, record.path,
                 record.seg_path, record.status,
                 record.reason, record.study_uid, record.series_uid, self.patient_hash(record.patient_id),
                 len(record.organs), record.seconds, now))
            study_id = cur.lastrowid
            self.db.executemany(
                "INSERT INTO organs (study_id, organ, label_id, model_checksum, dim, embedding, baseline_mean, "
                "baseline_sd, bbox, scores) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(study_id, o["organ"], o["label_id"], record.model_checksum, int(np.asarray(o["embedding"]).size),
                  np.asarray(o["embedding"], dtype="<f4").tobytes(), float(o["mean"]), float(o["sd"]),
                  json.dumps(o["bbox"]), json.dumps(o["scores"])) for o in record.organs])

    def models(self) -> list[tuple[str, str, int]]:
        """(model id, checksum, organ count) of the models in the library."""
        return [tuple(r) for r in self.db.execute(
            "SELECT s.model_id, s.model_checksum, COUNT(o.id) FROM studies s LEFT JOIN organs o ON o.study_id=s.id "
            "GROUP BY s.model_checksum ORDER BY s.model_id")]

    def failures(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self.db.execute("SELECT source, reason FROM studies WHERE status='failed' "
                                                  "ORDER BY source")]

    def vectors(self, model_checksum: str, organs=None):
        """(organ ids, study sources, organ names, matrix (N, D), baseline means, spreads) of one
        model's organ embeddings, optionally of some organs only. The matrix is memory-mapped
        from ``LIB/cache/`` (a copy of the model's rows as one array, made on the first query
        after the rows change; safe to delete), so a query does not read every blob again."""
        count, top = self.db.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM organs WHERE model_checksum=?",
                                     (model_checksum,)).fetchone()
        if not count:
            return [], [], [], np.zeros((0, 0), np.float32), np.zeros(0), np.zeros(0)
        stem = self.folder / "cache" / f"{model_checksum[:16]}-{count}-{top}"
        if not (stem.with_suffix(".npy").is_file() and stem.with_suffix(".npz").is_file()):
            self._write_cache(model_checksum, stem)
        matrix = np.load(stem.with_suffix(".npy"), mmap_mode="r")
        with np.load(stem.with_suffix(".npz")) as meta:
            ids, sources, names, mean, sd = (meta[k] for k in ("ids", "sources", "names", "mean", "sd"))
        if organs:
            keep = np.flatnonzero(np.isin(names, list(organs)))
            ids, sources, names, mean, sd = ids[keep], sources[keep], names[keep], mean[keep], sd[keep]
            matrix = matrix[keep] if keep.size < len(matrix) else matrix
        return ids.tolist(), sources.tolist(), names.tolist(), matrix, mean, sd

    def _write_cache(self, model_checksum: str, stem: Path) -> None:
        rows = self.db.execute(
            "SELECT o.id, s.source, o.organ, o.embedding, o.baseline_mean, o.baseline_sd FROM organs o "
            "JOIN studies s ON s.id=o.study_id WHERE o.model_checksum=? ORDER BY o.id", (model_checksum,)).fetchall()
        stem.parent.mkdir(parents=True, exist_ok=True)
        for old in stem.parent.glob(f"{model_checksum[:16]}-*"):
            old.unlink(missing_ok=True)
        tmp = stem.parent / f".{stem.name}.{secrets.token_hex(4)}"
        matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype="<f4").reshape(len(rows), -1)
        np.save(tmp.with_suffix(".npy"), matrix)
        np.savez(tmp.with_suffix(".npz"), ids=np.array([r[0] for r in rows]), sources=np.array([r[1] for r in rows]),
                 names=np.array([r[2] for r in rows]), mean=np.array([r[4] for r in rows]),
                 sd=np.array([r[5] for r in rows]))
        tmp.with_suffix(".npz").replace(stem.with_suffix(".npz"))
        tmp.with_suffix(".npy").replace(stem.with_suffix(".npy"))

    def organ_details(self, organ_ids) -> dict[int, dict]:
        """{organ id: study source, UIDs, bbox, scores} for the hits to show."""
        if not organ_ids:
            return {}
        rows = self.db.execute(
            f"SELECT o.id, s.source, s.study_uid, s.series_uid, s.model_id, o.bbox, o.scores, s.path, s.seg_path "
            f"FROM organs o "
            f"JOIN studies s ON s.id=o.study_id WHERE o.id IN ({','.join('?' * len(organ_ids))})",
            list(organ_ids)).fetchall()
        return {r[0]: {"study": r[1], "study_uid": r[2] or "", "series_uid": r[3] or "", "model_id": r[4],
                       "bbox": json.loads(r[5]), "scores": json.loads(r[6]), "path": r[7] or "",
                       "seg_path": r[8] or ""} for r in rows}

    def embedding_of(self, source: str, organ: str, model_checksum: str) -> np.ndarray | None:
        row = self.db.execute("SELECT o.embedding FROM organs o JOIN studies s ON s.id=o.study_id WHERE s.source=? "
                              "AND o.organ=? AND o.model_checksum=?", (source, organ, model_checksum)).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype="<f4").copy()
