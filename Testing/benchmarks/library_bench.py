"""The case library, measured in one run (a benchmark, not a test):

    python Testing/benchmarks/library_bench.py [--studies 6] [--sizes 10000,100000,1000000] [--dims 768,256]
                                               [--queries 50] [--skip-indexing] [--skip-stores]

1. Indexing throughput on the real example CT (copies of it): the pipeline study by study
   (open_case + analyze, nothing stored) against ``index_folder`` with 1 and 2 workers, in
   organs per second and as a ratio; the library's size on disk per study.
2. Stores for vectors + metadata, where installed: SQLite (the library's), DuckDB, LanceDB:
   studies per second written one study per transaction (as the indexer writes, crash-safe
   per study), a bulk write of 10^5 rows, reading every vector back as a matrix, size on disk.
3. Text-search latency over 10^4, 10^5, 10^6 synthetic organ rows at the published 768 and
   the demo model's 256 dimensions: exact (one matrix product over the baseline-augmented
   rows, ``ann.augmented``) against the HNSW index (``ann.GroupIndex``: build time, median and
   95th-percentile latency, recall@10 against exact). The rows are shaped like the demo
   model's organ rows (``synthetic``).
4. Peak memory (the process's maximum resident set after each part).

Ratios and recall are what to compare across machines; the seconds depend on this one.
"""
from __future__ import annotations

import argparse
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def indexing(studies: int) -> None:
    from TotalFMLib.inputs.sample_data import fetch
    from TotalFMLib.library.indexer import index_folder
    from TotalFMLib.library.store import Library
    from TotalFMLib.pipeline import analyze, open_case
    from TotalFMLib.totalfm import TotalFM

    print(f"\n## 1. Indexing throughput: {studies} copies of the example CT (demo model, CPU)")
    work = Path(tempfile.mkdtemp(prefix="library-bench-"))
    try:
        model = TotalFM.load("demo", device="cpu")
        warm = analyze(model, open_case(fetch("example_ct"), fetch("example_seg")))  # loads the text encoder
        model.search(warm.embeddings, "warm-up")
        runs = {}
        for name in ("study by study", "index, 1 worker", "index, 2 workers"):
            root = work / name.replace(" ", "_").replace(",", "")
            root.mkdir()
            for i in range(studies):  # fresh files for every run: no embedding cache hit
                shutil.copy(fetch("example_ct"), root / f"case{i}.nii.gz")
                shutil.copy(fetch("example_seg"), root / f"case{i}_seg.nii.gz")
            model.image_cache.clear()
            t = time.perf_counter()
            if name == "study by study":
                organs = 0
                for i in range(studies):
                    result = analyze(model, open_case(root / f"case{i}.nii.gz", root / f"case{i}_seg.nii.gz"))
                    organs += len(result.embeddings)
                size = 0
            else:
                library = Library(root / "lib", create=True)
                summary = index_folder(root, library, model, "demo", workers=1 if "1" in name else 2)
                organs = library.models()[0][2]
                library.close()
                assert summary.done == studies, summary
                size = sum(p.stat().st_size for p in (root / "lib").rglob("*") if p.is_file())
            seconds = time.perf_counter() - t
            runs[name] = (organs / seconds, size)
        base = runs["study by study"][0]
        print("| run | organs/s | vs study by study | library on disk per study |")
        print("|---|---|---|---|")
        for name, (rate, size) in runs.items():
            print(f"| {name} | {rate:.2f} | {rate / base:.2f}x | {size / studies / 1024:.0f} KiB |"
                  if size else f"| {name} | {rate:.2f} | 1.00x | - |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"peak memory so far: {peak_mb():.0f} MB")


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(n: int, d: int, seed: int = 0):
    """Organ rows shaped like the demo model's (measured on the example CTs: embeddings share a
    direction, mean pairwise cosine 0.68; a row's baseline mean follows its similarity to
    neutral text, spread 0.07-0.17): unit rows around 117 organ centres that share one
    direction, baseline mean = similarity to a 'neutral sentence' direction plus noise, spread
    uniform in [0.07, 0.17]. Returns (rows, means, spreads, query maker)."""
    rng = np.random.default_rng(seed)
    base = _unit(rng.normal(size=d))
    centres = _unit(base + 0.8 * _unit(rng.normal(size=(117, d))))
    neutral = _unit(base + 0.7 * _unit(rng.normal(size=d)))
    matrix = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        matrix[start:stop] = _unit(centres[rng.integers(0, 117, stop - start)]
                                   + 0.5 * _unit(rng.normal(size=(stop - start, d))))
    mean = matrix @ neutral + rng.normal(0.0, 0.03, n)
    sd = rng.uniform(0.07, 0.17, n)

    def queries(count: int) -> np.ndarray:
        """Finding texts: near the neutral direction, each leaning to one organ."""
        return _unit(neutral + 0.5 * centres[rng.integers(0, 117, count)] + 0.5 * _unit(rng.normal(size=(count, d))))

    return matrix, mean, sd, queries


PER_STUDY = 20  # organs of one study, written in one transaction


def _sqlite(work, matrix, mean, sd, studies):
    from TotalFMLib.library.store import Library, StudyRecord

    def record(lib_key, s, block):
        rows = [{"organ": f"o{j}", "label_id": j + 1, "embedding": matrix[block + j], "mean": mean[block + j],
                 "sd": sd[block + j], "bbox": {}, "scores": {}} for j in range(PER_STUDY)]
        return StudyRecord(f"{lib_key}{s}", f"study{s}", "bench", "c" * 64, organs=rows)

    small = Library(work / "sqlite_small", create=True)
    t = time.perf_counter()
    for s in range(studies):
        small.write(record("k", s, s * PER_STUDY))
    rate = studies / (time.perf_counter() - t)
    lib = Library(work / "sqlite", create=True)
    t = time.perf_counter()
    with lib.transaction():  # the bulk load: every study in one transaction
        lib.db.execute("PRAGMA foreign_keys=OFF")
        for s in range(len(matrix) // PER_STUDY):
            r = record("k", s, s * PER_STUDY)
            cur = lib.db.execute("INSERT INTO studies (study_key, model_checksum, model_id, source, status, organs, "
                                 "indexed_at) VALUES (?,?,?,?,?,?,?)", (r.study_key, r.model_checksum, r.model_id,
                                                                        r.source, "done", PER_STUDY, "now"))
            lib.db.executemany("INSERT INTO organs (study_id, organ, label_id, model_checksum, dim, embedding, "
                               "baseline_mean, baseline_sd, bbox, scores) VALUES (?,?,?,?,?,?,?,?,?,?)",
                               [(cur.lastrowid, o["organ"], o["label_id"], r.model_checksum, matrix.shape[1],
                                 np.asarray(o["embedding"], "<f4").tobytes(), o["mean"], o["sd"], "{}", "{}")
                                for o in r.organs])
    bulk = time.perf_counter() - t
    t = time.perf_counter()
    assert lib.vectors("c" * 64)[3].shape == matrix.shape
    read = time.perf_counter() - t
    lib.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the size of the database, not of its log
    size = sum(p.stat().st_size for p in (work / "sqlite").glob("*")) / 2**20
    return rate, bulk, read, size


def _arrow(matrix, mean, sd, start=0, stop=None):
    import pyarrow as pa

    stop = len(matrix) if stop is None else stop
    ids = np.arange(start, stop)
    return pa.table({"id": ids, "study": [f"study{i // PER_STUDY}" for i in ids],
                     "organ": [f"o{i % PER_STUDY}" for i in ids],
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix[start:stop].ravel()), matrix.shape[1]),
                     "mean": mean[start:stop], "sd": sd[start:stop]})


def _duckdb(work, matrix, mean, sd, studies):
    import duckdb

    d = matrix.shape[1]
    create = (f"CREATE TABLE organs (id BIGINT, study VARCHAR, organ VARCHAR, vector FLOAT[{d}], mean DOUBLE, "
              f"sd DOUBLE)")
    con = duckdb.connect(str(work / "duck_small.db"))
    con.execute(create)
    t = time.perf_counter()
    for s in range(studies):
        con.register("part", _arrow(matrix, mean, sd, s * PER_STUDY, (s + 1) * PER_STUDY))
        con.execute("INSERT INTO organs SELECT * FROM part")
        con.unregister("part")
    rate = studies / (time.perf_counter() - t)
    con.close()
    con = duckdb.connect(str(work / "duck.db"))
    con.execute(create)
    con.register("everything", _arrow(matrix, mean, sd))
    t = time.perf_counter()
    con.execute("INSERT INTO organs SELECT * FROM everything")
    con.close()
    bulk = time.perf_counter() - t
    con = duckdb.connect(str(work / "duck.db"), read_only=True)
    t = time.perf_counter()
    arr = con.sql("SELECT vector FROM organs ORDER BY id").to_arrow_table()
    got = np.asarray(arr.column(0).combine_chunks().flatten(), dtype=np.float32).reshape(matrix.shape)
    read = time.perf_counter() - t
    con.close()
    assert got.shape == matrix.shape
    return rate, bulk, read, (work / "duck.db").stat().st_size / 2**20


def _lancedb(work, matrix, mean, sd, studies):
    import lancedb

    db = lancedb.connect(str(work / "lance_small"))
    table = db.create_table("organs", _arrow(matrix, mean, sd, 0, PER_STUDY))
    t = time.perf_counter()
    for s in range(1, studies):
        table.add(_arrow(matrix, mean, sd, s * PER_STUDY, (s + 1) * PER_STUDY))
    rate = (studies - 1) / (time.perf_counter() - t)
    db = lancedb.connect(str(work / "lance"))
    t = time.perf_counter()
    table = db.create_table("organs", _arrow(matrix, mean, sd))
    bulk = time.perf_counter() - t
    t = time.perf_counter()
    got = np.asarray(table.to_arrow().column("vector").combine_chunks().flatten(), np.float32).reshape(matrix.shape)
    read = time.perf_counter() - t
    assert got.shape == matrix.shape
    return rate, bulk, read, sum(p.stat().st_size for p in (work / "lance").rglob("*") if p.is_file()) / 2**20


def stores(n: int = 100_000, d: int = 256, studies: int = 500) -> None:
    print(f"\n## 2. Stores: {studies} studies of {PER_STUDY} organs written one study per transaction (as the "
          f"indexer writes), and {n} rows x {d} dimensions written at once and read back as one matrix")
    matrix, mean, sd, _ = synthetic(n, d, seed=1)
    print("| store | studies/s, one per transaction | bulk write s | read all s | MB on disk |")
    print("|---|---|---|---|---|")
    work = Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:
        for name, run, module in (("SQLite (stdlib; the library's)", _sqlite, None), ("DuckDB", _duckdb, "duckdb"),
                                  ("LanceDB", _lancedb, "lancedb")):
            try:
                version = f" {__import__(module).__version__}" if module else ""
            except ImportError:
                print(f"| {name} | not installed | | | |")
                continue
            rate, bulk, read, size = run(work, matrix, mean, sd, studies)
            print(f"| {name}{version} | {rate:.0f} | {bulk:.2f} | {read:.2f} | {size:.0f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"peak memory so far: {peak_mb():.0f} MB")


def latency(sizes, dims, queries: int) -> None:
    from TotalFMLib.library import ann

    print("\n## 3. Text-search latency over synthetic organ rows (one query, top 10)")
    print("| rows | dims | exact median ms | HNSW build s | HNSW median ms | HNSW p95 ms | recall@10 | peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for d in dims:
        for n in sizes:
            matrix, mean, sd, make_queries = synthetic(n, d)
            rows = ann.augmented(matrix, mean, sd)
            del matrix
            qs = make_queries(queries)
            exact_ms, truth = [], []
            for q in qs:
                t = time.perf_counter()
                score = rows[:, :-1] @ q + rows[:, -1]
                top = np.argpartition(-score, 9)[:10]
                exact_ms.append((time.perf_counter() - t) * 1000)
                truth.append(set(top.tolist()))
            t = time.perf_counter()
            index = ann.GroupIndex.build(rows)
            build = time.perf_counter() - t
            approx_ms, recall = [], []
            for q, exact in zip(qs, truth):
                t = time.perf_counter()
                found = index.search(q, 10)
                score = rows[found, :-1] @ q + rows[found, -1]
                best = found[np.argsort(-score)[:10]]
                approx_ms.append((time.perf_counter() - t) * 1000)
                recall.append(len(exact & set(best.tolist())) / 10)
            print(f"| {n:,} | {d} | {np.median(exact_ms):.1f} | {build:.1f} | {np.median(approx_ms):.2f} | "
                  f"{np.percentile(approx_ms, 95):.2f} | {np.mean(recall):.3f} | {peak_mb():.0f} |", flush=True)
            del rows, index


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=6)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--dims", default="768,256")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--skip-indexing", action="store_true")
    p.add_argument("--skip-stores", action="store_true")
    args = p.parse_args()
    from TotalFMLib import runtime

    threads = runtime.setup(quiet=True)["threads"]
    print(f"# Case library benchmark: {platform.processor() or platform.machine()}, {threads} threads, "
          f"Python {platform.python_version()}")
    if not args.skip_indexing:
        indexing(args.studies)
    if not args.skip_stores:
        stores()
    latency([int(s) for s in args.sizes.split(",")], [int(s) for s in args.dims.split(",")], args.queries)


if __name__ == "__main__":
    main()
