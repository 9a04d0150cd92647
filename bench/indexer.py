"""Benchmark: files/s the jobs-indexer records, next to a bare os.walk + batch INSERT.

Generates a tree of N small files (default 100,000, 500 per directory) under a
storage root, makes a FINISHED job whose archive path is that tree, and indexes it
through the production path: ``Runtime.submit`` of an ``index`` message to the
jobs-indexer, delivered on the stub bus (parse, job to INDEXING, streamed walk,
RE2 filters, batched upserts into the SQLite store with their ``created`` lookups,
progress at most once a second with the counting listing beside the walk, vanished-file
pass, ``indexed`` back to the jobs-manager).
Three runs: the first index, a re-index of the unchanged tree (every record
replaced), and a re-index with ``fixity`` (SHA-256 of every file).

The **baseline**, measured in the same run on the same tree: ``os.walk`` + ``stat``
and a UUID5 per file, then ``INSERT OR REPLACE`` of the same rows (uuid, path, size,
mtime as a JSON document) into a plain SQLite table, in transactions of the same
batch size, with the same pragmas (WAL, synchronous=NORMAL). The ratio is what the
indexer's bookkeeping costs over the engine underneath.

Also printed: ``(a+)+$`` against names made of a run of "a" and a "!", on Python's
``re`` (backtracking: exponential; n kept small so it finishes) and on RE2 (what
the indexer uses: linear), with a far longer name for RE2 alone.

    python bench/indexer.py                 # full run (100k files)
    python bench/indexer.py --smoke         # seconds; run by the test suite
    python bench/indexer.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import re2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelinejobs.adapters.bus.stub import StubBus  # noqa: E402
from pipelinejobs.adapters.store.sqlite import SQLiteStore  # noqa: E402
from pipelinejobs.config import load_config  # noqa: E402
from pipelinejobs.domain.clock import iso  # noqa: E402
from pipelinejobs.runtime.dispatch import Runtime  # noqa: E402

ARCHIVE = "/products/v2/bench/indexer/tree"
PER_DIR = 500
HOSTILE = r"(a+)+$"


def make_tree(root: Path, files: int) -> None:
    """``files`` small files, ``PER_DIR`` per directory, two directory levels."""
    for i in range(files):
        folder = root / f"d{i // (PER_DIR * 20):03d}" / f"e{(i // PER_DIR) % 20:02d}"
        if i % PER_DIR == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"sample_{i:07d}.csv").write_bytes(b"id,value\n%d,%d\n" % (i, i * 7))


def runtime_for(tmp: Path, batch: int) -> Runtime:
    config = load_config(
        env={},
        overrides={
            "system": {"data_dir": str(tmp / "data")},
            "tokens": {"secret": "b" * 32, "admin_secret": "c" * 32},
            "storage": {"root": str(tmp / "root")},
            "indexer": {"batch_size": batch},
        },
    )
    bus = StubBus()
    rt = Runtime(config, store=SQLiteStore(tmp / "store.sqlite3"), bus=bus)
    bus.deliver = rt.deliver
    return rt


def bench_indexer(rt: Runtime, files: int) -> dict[str, dict[str, Any]]:
    """The three production-path runs; files/s counts files seen and recorded."""
    pipeline = rt.pipelines.create(
        {"name": "bench", "components": [{"repo": "bench/indexer:1"}]}
    ).pipeline
    job = rt.jobs.create(
        pipeline_uuid=pipeline["uuid"],
        linkage=["sample.bench.1"],
        data={"bench": "indexer"},
        fields={"archive_path": ARCHIVE},
    ).job
    for event in ("run", "finish"):
        job = rt.jobs.apply(job["uuid"], event).job
    token = rt.tokens.update_token(job["uuid"], int(job.get("token_rotation", 0)))
    assert isinstance(rt.bus, StubBus)
    runs: dict[str, dict[str, Any]] = {}
    for name, extra in (("index", {}), ("reindex", {}), ("reindex_fixity", {"fixity": True})):
        start = time.perf_counter()
        execution = rt.submit(
            "jobs-indexer", {"uuid": job["uuid"], "name": "index", "token": token, **extra}
        )
        rt.bus.join()
        elapsed = time.perf_counter() - start
        done = rt.executions.get(execution["id"])
        if done["status"] != "COMPLETE" or done["result"]["indexed"] != files:
            raise SystemExit(f"{name}: the indexer did not index every file: {done}")
        runs[name] = {
            "files": files,
            "seconds": round(elapsed, 3),
            "per_second": round(files / elapsed, 1),
        }
    if rt.store.count("files") != files:
        raise SystemExit("re-indexing was not idempotent")
    return runs


def bench_baseline(root: Path, db: Path, batch: int) -> dict[str, Any]:
    """The bare engine: walk, stat, uuid, JSON document, batched INSERT OR REPLACE."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE files (k TEXT PRIMARY KEY, doc TEXT NOT NULL)")
    start = time.perf_counter()
    rows: list[tuple[str, str]] = []
    count = 0

    def flush() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO files (k, doc) VALUES (?, ?)", rows)
        conn.execute("COMMIT")
        rows.clear()

    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            info = os.stat(path)
            key = str(uuid.uuid5(uuid.NAMESPACE_URL, path))
            doc = {"uuid": key, "path": path, "size": info.st_size, "mtime": iso(info.st_mtime)}
            rows.append((key, json.dumps(doc, separators=(",", ":"))))
            count += 1
            if len(rows) >= batch:
                flush()
    if rows:
        flush()
    elapsed = time.perf_counter() - start
    conn.close()
    return {"files": count, "seconds": round(elapsed, 3), "per_second": round(count / elapsed, 1)}


def bench_regex(lengths: list[int]) -> dict[str, Any]:
    """Seconds to search ``(a+)+$`` in "a" * n + "!": Python re against RE2."""
    backtracking, linear = re.compile(HOSTILE), re2.compile(HOSTILE)
    rows = []
    for n in lengths:
        name = "a" * n + "!"
        start = time.perf_counter()
        assert backtracking.search(name) is None
        python = time.perf_counter() - start
        start = time.perf_counter()
        assert linear.search(name) is None
        rows.append({"n": n, "python_re_s": python, "re2_s": time.perf_counter() - start})
    long_name = "a" * 100_000 + "!"
    start = time.perf_counter()
    assert linear.search(long_name) is None
    return {"rows": rows, "re2_n_100000_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="indexer.batch_size")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    lengths = [16, 18, 20, 22, 24]
    if args.smoke:
        args.files, lengths = 2_000, [12, 14, 16]

    results: dict[str, Any] = {"files": args.files, "batch_size": args.batch}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rt = runtime_for(tmp, args.batch)
        tree = rt.storage.makedirs(ARCHIVE)
        start = time.perf_counter()
        make_tree(tree, args.files)
        results["tree_seconds"] = round(time.perf_counter() - start, 2)
        results["baseline_walk_insert"] = bench_baseline(tree, tmp / "bare.sqlite3", args.batch)
        try:
            results.update(bench_indexer(rt, args.files))
        finally:
            rt.close()
    results["regex"] = bench_regex(lengths)

    base = results["baseline_walk_insert"]["per_second"]
    print(f"{args.files} files, batch {args.batch} (tree made in {results['tree_seconds']} s)")
    print(f"{'run':<22}{'files':>9}{'seconds':>10}{'files/s':>11}{'vs baseline':>13}")
    for run in ("baseline_walk_insert", "index", "reindex", "reindex_fixity"):
        row = results[run]
        row["ratio_to_baseline"] = round(row["per_second"] / base, 3) if base else 0.0
        print(
            f"{run:<22}{row['files']:>9}{row['seconds']:>10.3f}"
            f"{row['per_second']:>11.1f}{row['ratio_to_baseline']:>13.2f}"
        )
    print(f"\n{HOSTILE} on 'a' * n + '!'")
    print(f"{'n':>6}{'python re (s)':>16}{'re2 (s)':>12}")
    for row in results["regex"]["rows"]:
        print(f"{row['n']:>6}{row['python_re_s']:>16.4f}{row['re2_s']:>12.6f}")
    print(f"{100_000:>6}{'(not tried)':>16}{results['regex']['re2_n_100000_s']:>12.6f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
