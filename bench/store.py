"""Benchmark: lifecycle transitions per second on each store backend.

Creates N jobs, then applies a walk of events to each (run, update x K, finish)
through ``pipelinejobs.domain.jobs.Jobs.apply`` — the real path: read, lifecycle decision,
compare-and-set of the job with its event appended to the history log. In the same
run it measures a **baseline**: a bare SQLite loop doing the same number of
single-row ``UPDATE ... WHERE version=?`` statements on a table of JSON documents of
the same size, with the same pragmas (WAL, synchronous=NORMAL), one transaction per
update. The ratio says how much the lifecycle machinery costs over the engine underneath.

    python bench/store.py                 # full run
    python bench/store.py --smoke         # seconds; run by the test suite
    python bench/store.py --json out.json
    python bench/store.py --sizes 10000,100000,1000000   # how cost grows with size

With ``--sizes``, a second table: for stores seeded with that many jobs, the latency
(p50/p99) of a get by uuid and of a filtered page (state + pipeline, newest first,
50 per page) through the Store interface, and transitions/s at that size — next to a
bare SQLite ``SELECT`` by primary key on a table of the same rows (for MongoDB, when
MONGODB_URI is set: pymongo's ``find_one`` by the indexed uuid). The seeded jobs
carry an ``owner`` (one of 100), a ``run`` (one of 1,000) and two tags (``experiment``
one of 500, ``batch`` one of 50), and beside it a table of the first page (50, newest
first, as ``GET /jobs`` asks) for ``?tag=``, ``?owner=``, ``?run=`` and ``?tag=&owner=``
(p50/p95/p99), each next to plain ``sqlite3`` running the same query by hand on the
same file and tables (pymongo's ``find().sort().limit()`` for MongoDB): the gap is
what the store layer adds. Issue 15's target: a filtered page under 50 ms at 1M jobs.

A third table: the cost of one event on a job whose history already holds 10, 1,000
or 10,000 entries (``--history``), on SQLite (and MongoDB), next to the bare engine
doing the same step (read the job, version-checked UPDATE, INSERT into a log table of
that many rows) — the history is a log beside the job, so the cost stays flat.

MongoDB is measured when MONGODB_URI is set; mongomock is not a benchmark target
(it is an in-process fake) and is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelinejobs.adapters.store.base import Store  # noqa: E402
from pipelinejobs.adapters.store.memory import MemoryStore  # noqa: E402
from pipelinejobs.adapters.store.sqlite import SQLiteStore  # noqa: E402
from pipelinejobs.domain import tags  # noqa: E402
from pipelinejobs.domain.identifiers import Identifiers  # noqa: E402
from pipelinejobs.domain.jobs import Jobs  # noqa: E402

IDS = Identifiers("bench.pipelinejobs")
PIPELINE = IDS.pipeline([{"id": "bench-app-0.1.0", "inputs": {}, "parameters": {}}])


def walk(updates: int) -> list[str]:
    return ["run", *(["update"] * updates), "finish"]


def bench_jobs(store: Store, jobs_n: int, updates: int) -> dict[str, Any]:
    jobs = Jobs(store, IDS)
    uuids = [
        jobs.create(pipeline_uuid=PIPELINE, linkage=[f"sample.bench.{i}"], data={"i": i}).job[
            "uuid"
        ]
        for i in range(jobs_n)
    ]
    events = walk(updates)
    start = time.perf_counter()
    for uuid in uuids:
        for event in events:
            jobs.apply(uuid, event, {"status": event.upper()})
    elapsed = time.perf_counter() - start
    total = jobs_n * len(events)
    return {
        "transitions": total,
        "seconds": round(elapsed, 4),
        "per_second": round(total / elapsed, 1),
    }


def bench_bare_sqlite(path: Path, jobs_n: int, updates: int) -> dict[str, Any]:
    """The baseline: the same number of version-checked single-row UPDATEs."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE docs (k TEXT PRIMARY KEY, version INTEGER, doc TEXT)")
    doc = {"state": "CREATED", "history": [{"name": "create", "data": {"i": 0}}]}
    conn.executemany(
        "INSERT INTO docs VALUES (?, 0, ?)", [(str(i), json.dumps(doc)) for i in range(jobs_n)]
    )
    steps = len(walk(updates))
    start = time.perf_counter()
    for i in range(jobs_n):
        for version in range(steps):
            doc["history"].append({"name": "update", "data": {"status": "UPDATE"}})
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE docs SET doc = ?, version = version + 1 WHERE k = ? AND version = ?",
                (json.dumps(doc), str(i), version),
            )
            conn.execute("COMMIT")
        del doc["history"][1:]
    elapsed = time.perf_counter() - start
    conn.close()
    total = jobs_n * steps
    return {
        "transitions": total,
        "seconds": round(elapsed, 4),
        "per_second": round(total / elapsed, 1),
    }


def history_job(store: Store, depth: int) -> tuple[Jobs, str]:
    """A job whose history holds ``depth`` entries (create, then updates)."""
    jobs = Jobs(store, IDS)
    uuid = jobs.create(pipeline_uuid=PIPELINE, linkage=[f"sample.deep.{depth}"], data={}).job[
        "uuid"
    ]
    for n in range(depth - 1):
        jobs.apply(uuid, "update", {"status": "UPDATE", "n": n})
    return jobs, str(uuid)


def time_events(jobs: Jobs, uuid: str, events: int) -> tuple[float, float]:
    """Wall and CPU seconds per event for ``events`` more events on job ``uuid``: read
    the job, decide, advance (its compare-and-set and the event's record in the log)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(events):
        jobs.apply(uuid, "update", {"status": "UPDATE", "n": n})
    return (time.perf_counter() - wall) / events, (time.process_time() - cpu) / events


def bare_history_sqlite(path: Path, depth: int, events: int) -> float:
    """The baseline, in ms per event: what the same step costs SQLite alone — in one
    IMMEDIATE transaction, read the job row, a version-checked UPDATE of it and an
    INSERT into a log table (unique on (job, seq)) already holding ``depth`` rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE docs (k TEXT PRIMARY KEY, version INTEGER, doc TEXT)")
    conn.execute("CREATE TABLE log (k TEXT PRIMARY KEY, job TEXT, seq INTEGER, doc TEXT)")
    conn.execute("CREATE UNIQUE INDEX log_job_seq ON log (job, seq)")
    entry = {"name": "update", "date": "2026-01-01T00:00:00.000Z", "data": {"status": "UPDATE"}}
    doc = {"uuid": "j", "state": "RUNNING", "event_count": depth, "last_entry": entry}
    conn.execute("INSERT INTO docs VALUES ('j', 0, ?)", (json.dumps(doc),))
    conn.executemany(
        "INSERT INTO log VALUES (?, 'j', ?, ?)",
        [(f"e{n}", n, json.dumps(entry)) for n in range(1, depth + 1)],
    )
    start = time.perf_counter()
    for version in range(events):
        seq = depth + version + 1
        conn.execute("BEGIN IMMEDIATE")
        json.loads(conn.execute("SELECT doc FROM docs WHERE k = 'j'").fetchone()[0])
        doc["event_count"] = seq
        conn.execute(
            "UPDATE docs SET doc = ?, version = version + 1 WHERE k = 'j' AND version = ?",
            (json.dumps(doc), version),
        )
        conn.execute("INSERT INTO log VALUES (?, 'j', ?, ?)", (f"e{seq}", seq, json.dumps(entry)))
        conn.execute("COMMIT")
    bare = (time.perf_counter() - start) / events
    conn.close()
    return round(bare * 1000, 3)


def bare_history_mongodb(db: Any, depth: int, events: int) -> float:
    """The MongoDB baseline, in ms per event: ``find_one`` of the job, a
    version-filtered ``update_one`` and an ``insert_one`` into an indexed log."""
    docs, log = db["bare_docs"], db["bare_log"]
    log.create_index([("job", 1), ("seq", 1)], unique=True)
    docs.insert_one({"k": "j", "version": 0, "event_count": depth})
    log.insert_many([{"job": "j", "seq": n, "data": {}} for n in range(1, depth + 1)])
    start = time.perf_counter()
    for version in range(events):
        docs.find_one({"k": "j"})
        docs.update_one({"k": "j", "version": version}, {"$inc": {"version": 1, "event_count": 1}})
        log.insert_one({"job": "j", "seq": depth + version + 1, "data": {"status": "UPDATE"}})
    return round((time.perf_counter() - start) / events * 1000, 3)


def history_rows(depths: list[int], events: int, rounds: int = 5) -> list[dict[str, Any]]:
    """Per-event cost by history length on SQLite (and MongoDB when MONGODB_URI is
    set), each next to its bare baseline and as a ratio to the shortest history's cost.

    The jobs are made first; then ``rounds`` rounds each time ``events / rounds``
    events on every job in turn, and the median round is shown: the machine's load
    drifts during a run (two shared cores), and alternating lets every length see the
    same drift. CPU time per event (this process's) is shown too: it is what the load
    of other processes does not change."""
    per_round = max(1, events // rounds)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, Store, Any]] = []
        for depth in depths:
            stores.append(("sqlite", SQLiteStore(Path(tmp) / f"history-{depth}.sqlite3"), depth))
        uri = os.environ.get("MONGODB_URI")
        if uri:
            from pipelinejobs.adapters.store.mongo import MongoStore

            for depth in depths:
                name = f"pipelinejobs_bench_history_{os.getpid()}_{depth}"
                stores.append(("mongodb", MongoStore(uri, name), depth))
        try:
            made = [
                (backend, depth, *history_job(store, depth)) for backend, store, depth in stores
            ]
            for _, _, jobs, uuid in made:  # warm caches and connections, untimed
                time_events(jobs, uuid, per_round)
            samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for _ in range(rounds):
                for backend, depth, jobs, uuid in made:
                    samples.setdefault((backend, depth), []).append(
                        time_events(jobs, uuid, per_round)
                    )
            for backend, depth, jobs, _uuid in made:
                walls = sorted(w for w, _ in samples[(backend, depth)])
                cpus = sorted(c for _, c in samples[(backend, depth)])
                row = {
                    "backend": backend,
                    "history": depth,
                    "ms_per_event": round(walls[len(walls) // 2] * 1000, 3),
                    "cpu_ms_per_event": round(cpus[len(cpus) // 2] * 1000, 3),
                }
                if backend == "sqlite":
                    path = Path(tmp) / f"bare-{depth}.db"
                    row["bare_ms"] = bare_history_sqlite(path, depth, per_round * rounds)
                else:
                    row["bare_ms"] = bare_history_mongodb(
                        jobs.store._db(),  # type: ignore[attr-defined]
                        depth,
                        per_round * rounds,
                    )
                rows.append(row)
        finally:
            for backend, store, _ in stores:
                if backend == "mongodb":
                    db = store._db()  # type: ignore[attr-defined]
                    db.client.drop_database(db.name)
                store.close()
    for row in rows:
        first = next(r for r in rows if r["backend"] == row["backend"])
        row["vs_shortest"] = round(row["ms_per_event"] / first["ms_per_event"], 2)
        row["cpu_vs_shortest"] = round(row["cpu_ms_per_event"] / first["cpu_ms_per_event"], 2)
    return rows


STATES = ("CREATED", "RUNNING", "FINISHED", "FAILED", "INDEXING")
PIPELINES = [
    IDS.pipeline([{"id": f"bench-{n}", "inputs": {}, "parameters": {}}]) for n in range(10)
]
#: Who created the seeded jobs (key ids, as ``owner`` stores them) and the runs they
#: were launched in (issue 15): 100 owners, 1,000 runs, and two tags per job.
OWNERS = [f"{n:012x}" for n in range(100)]
RUNS = [IDS.typed(f"bench-run-{n}", "pipelinejob_run") for n in range(1000)]
EXPERIMENTS, BATCHES = 500, 50


def spread(i: int, n: int) -> int:
    """Job ``i``'s choice among ``n``, uncorrelated with ``i % m`` (the tags), so a
    combined filter (tag + owner) matches what independent choices would."""
    return (i * 2654435761 >> 7) % n


def job_labels(i: int) -> dict[str, Any]:
    """Job ``i``'s ``owner``, ``run``, ``tags`` and ``tag_pairs``."""
    return {
        "owner": OWNERS[spread(i, len(OWNERS))],
        "run": RUNS[spread(i * 31 + 17, len(RUNS))],
        **tags.fields({"experiment": f"e{i % EXPERIMENTS}", "batch": f"b{i % BATCHES}"}),
    }


def seed_jobs(store: Store, count: int, batch: int = 5000) -> list[str]:
    """``count`` realistic jobs (3 history entries each, in the log), written in batches."""
    uuids = []
    for start in range(0, count, batch):
        docs, records = [], []
        for i in range(start, min(start + batch, count)):
            uuid = IDS.typed(f"bench-job-{i}", "pipelinejob")
            date = f"2026-01-01T00:00:{i % 60:02d}.{i % 1000:03d}Z"
            docs.append(
                {
                    "uuid": uuid,
                    "pipeline_uuid": PIPELINES[i % len(PIPELINES)],
                    "state": STATES[(i // 7) % len(STATES)],
                    "last_event": "run",
                    "created": date,
                    "updated": date,
                    "token_rotation": 0,
                    "data": {"i": i},
                    "child_of": [f"sample.bench.{i % 1000}"],
                    "generated_by": [],
                    "event_count": 3,
                    **job_labels(i),
                }
            )
            previous = (None, "CREATED", "RUNNING")
            records.extend(
                {
                    "uuid": IDS.event(uuid, str(k)),
                    "job_uuid": uuid,
                    "seq": k + 1,
                    "name": name,
                    "date": date,
                    "data": {"status": name},
                    "previous_state": previous[k],
                }
                for k, name in enumerate(("create", "run", "update"))
            )
            docs[-1]["last_entry"] = {**records[-1], "version": 0}
            uuids.append(uuid)
        store.put_many("jobs", docs)
        store.put_many("events", records)
    return uuids


def percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)

    def at(q: float) -> float:
        return round(samples[min(len(samples) - 1, int(len(samples) * q))] * 1000, 3)

    return {"p50_ms": round(samples[len(samples) // 2] * 1000, 3), "p95_ms": at(0.95),
            "p99_ms": at(0.99)}  # fmt: skip


def timed(call: Any, arguments: list[Any]) -> list[float]:
    out = []
    for arg in arguments:
        start = time.perf_counter()
        call(arg)
        out.append(time.perf_counter() - start)
    return out


#: The label filters of ``GET /jobs`` timed at each size (issue 15), each a function
#: of a random source giving one request's ``where``; what each matches at 1M jobs.
LABEL_FILTERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    # 1 job in 500: 2,000 at 1M.
    "tag": lambda rng: {tags.PAIRS: f"experiment:e{rng.randrange(EXPERIMENTS)}"},
    # 1 in 50: 20,000 at 1M.
    "tag (1 in 50)": lambda rng: {tags.PAIRS: f"batch:b{rng.randrange(BATCHES)}"},
    # 1 in 100: 10,000.
    "owner": lambda rng: {"owner": rng.choice(OWNERS)},
    # 1 in 1,000: 1,000.
    "run": lambda rng: {"run": rng.choice(RUNS)},
    # 1 in 50,000: about 20, fewer than a page, so the whole of the smaller set is read.
    "tag + owner": lambda rng: {
        tags.PAIRS: f"experiment:e{rng.randrange(EXPERIMENTS)}",
        "owner": rng.choice(OWNERS),
    },
}
PAGE = 50


class Bare:
    """What a baseline engine does for the same reads, timed on the same data."""

    def get(self, picks: list[str]) -> dict[str, float]:
        raise NotImplementedError

    def page(self, wheres: list[dict[str, Any]]) -> dict[str, float]:
        """The first page (``PAGE`` jobs newest first) of each of ``wheres``."""
        raise NotImplementedError


def time_pages(
    store: Store, bare: Bare, wheres: list[dict[str, Any]]
) -> tuple[dict[str, float], dict[str, float]]:
    """A first page (``PAGE``, newest first, as ``GET /jobs`` asks) of each filter,
    through the store, then through the bare engine; a few of each untimed first, so
    neither pays for a cold cache the other found warm."""

    def ours(where: dict[str, Any]) -> Any:
        return store.find("jobs", where, order="created", descending=True, limit=PAGE)

    warm = wheres[: max(1, len(wheres) // 20)]
    timed(ours, warm)
    bare.page(warm)
    return percentiles(timed(ours, wheres)), bare.page(wheres)


def bench_scale(store: Store, size: int, probes: int, bare: Bare) -> dict[str, Any]:
    """Get and filtered-page latency, and transitions/s, with ``size`` jobs stored;
    ``bare`` times the engine's own get of the same documents afterwards, and its own
    query for each label filter's page (:data:`LABEL_FILTERS`) next to ours."""
    import random

    rng = random.Random(size)
    try:
        start = time.perf_counter()
        uuids = seed_jobs(store, size)
        seeded = time.perf_counter() - start
        picks = [rng.choice(uuids) for _ in range(probes)]
        get = percentiles(timed(lambda u: store.get("jobs", u), picks))
        filters = [
            {"state": rng.choice(STATES), "pipeline_uuid": rng.choice(PIPELINES)}
            for _ in range(probes)
        ]
        page = percentiles(
            timed(
                lambda w: store.find("jobs", w, order="created", descending=True, limit=50), filters
            )
        )
        labels = {}
        for name, make in LABEL_FILTERS.items():
            ours, engine = time_pages(store, bare, [make(rng) for _ in range(probes)])
            labels[name] = {"ours": ours, "baseline_bare": engine}
        jobs = Jobs(store, IDS)
        start = time.perf_counter()
        for uuid in picks:
            jobs.apply(uuid, "update", {"n": 1})
        per_second = round(len(picks) / (time.perf_counter() - start), 1)
        baseline = bare.get(picks)
    finally:
        store.close()
    return {
        "jobs": size,
        "seed_seconds": round(seeded, 2),
        "get": get,
        "filtered_page": page,
        "label_pages": labels,
        "transitions_per_second": per_second,
        "baseline_bare_get": baseline,
    }


class BareSQLite(Bare):
    """Plain ``sqlite3`` on the store's own file and tables (``jobs``: ``k``, ``doc``
    and a column ``f_<field>`` per indexed field; ``jobs__tag_pairs``: one ``(v, k)``
    row per tag), writing by hand the query each read needs, so the difference is
    what the store layer adds. Rows are fetched, not decoded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, picks: list[str]) -> dict[str, float]:
        conn = sqlite3.connect(self.path)
        try:
            query = "SELECT doc FROM jobs WHERE k = ?"
            return percentiles(timed(lambda u: conn.execute(query, (u,)).fetchone(), picks))
        finally:
            conn.close()

    @staticmethod
    def query(where: dict[str, Any]) -> tuple[str, list[Any]]:
        """A first page of jobs matching ``where`` (equalities), newest first, ties by
        key, as one hand-written SELECT: a tag's page walks the tag's side-table rows
        in their ``(v, f_created, k)`` index order, joining each job by key — and by
        its ``created``, which lets SQLite probe an ``(owner, created, k)`` index with
        all three for a tag and an owner."""
        clauses = [f"j.f_{name} = ?" for name in where if name != tags.PAIRS]
        args = [value for name, value in where.items() if name != tags.PAIRS]
        source, order = "jobs AS j", "j.f_created DESC, j.k DESC"
        if tags.PAIRS in where:
            source = "jobs__tag_pairs AS t JOIN jobs AS j ON j.k = t.k"
            order = "t.f_created DESC, t.k DESC"
            clauses[:0] = ["t.v = ?", "j.f_created IS t.f_created"]
            args.insert(0, where[tags.PAIRS])
        sql = f"SELECT j.doc FROM {source} WHERE {' AND '.join(clauses)} ORDER BY {order}"
        return f"{sql} LIMIT {PAGE}", args

    def page(self, wheres: list[dict[str, Any]]) -> dict[str, float]:
        conn = sqlite3.connect(self.path)
        try:
            return percentiles(timed(lambda w: conn.execute(*self.query(w)).fetchall(), wheres))
        finally:
            conn.close()


def scale_sqlite(tmp: Path, size: int, probes: int) -> dict[str, Any]:
    path = tmp / f"scale-{size}.sqlite3"
    return {"backend": "sqlite"} | bench_scale(SQLiteStore(path), size, probes, BareSQLite(path))


def scale_mongodb(uri: str, size: int, probes: int) -> dict[str, Any]:
    """The same on a MongoDB server, in a database of its own dropped afterwards; the
    baseline is pymongo's ``find_one`` by the indexed ``uuid``."""
    from pipelinejobs.adapters.store.mongo import MongoStore

    store = MongoStore(uri, f"pipelinejobs_bench_scale_{os.getpid()}_{size}")
    db = store._db()

    class BareMongo(Bare):
        def get(self, picks: list[str]) -> dict[str, float]:
            jobs = db["jobs"]
            return percentiles(timed(lambda u: jobs.find_one({"uuid": u}, {"_id": False}), picks))

        def page(self, wheres: list[dict[str, Any]]) -> dict[str, float]:
            order = [("created", -1), ("uuid", -1)]

            def first(where: dict[str, Any]) -> list[Any]:
                return list(db["jobs"].find(where, {"_id": False}).sort(order).limit(PAGE))

            return percentiles(timed(first, wheres))

    try:
        return {"backend": "mongodb"} | bench_scale(store, size, probes, BareMongo())
    finally:
        db.client.drop_database(db.name)


def print_scale(rows: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'store':<9}{'jobs':>9}{'get p50/p99 ms':>18}{'page p50/p99 ms':>18}{'trans/s':>10}"
        f"{'baseline bare get p50/p99 ms':>30}"
    )
    for row in rows:
        get, page, bare = row["get"], row["filtered_page"], row["baseline_bare_get"]
        print(
            f"{row['backend']:<9}{row['jobs']:>9}{get['p50_ms']:>9.3f}/{get['p99_ms']:<8.3f}"
            f"{page['p50_ms']:>9.3f}/{page['p99_ms']:<8.3f}{row['transitions_per_second']:>10}"
            f"{bare['p50_ms']:>21.3f}/{bare['p99_ms']:<8.3f}"
        )
    print()
    print(
        f"{'store':<9}{'jobs':>9}  {'page of /jobs?':<16}{'ours p50/p95/p99 ms':>26}"
        f"{'baseline bare SQL p50/p95/p99 ms':>36}{'p50 vs bare':>12}"
    )
    for row in rows:
        for name, figures in row["label_pages"].items():
            ours, bare = figures["ours"], figures["baseline_bare"]
            ratio = ours["p50_ms"] / bare["p50_ms"] if bare["p50_ms"] else 0.0
            print(
                f"{row['backend']:<9}{row['jobs']:>9}  {name:<16}"
                f"{ours['p50_ms']:>10.3f}/{ours['p95_ms']:.3f}/{ours['p99_ms']:<8.3f}"
                f"{bare['p50_ms']:>18.3f}/{bare['p95_ms']:.3f}/{bare['p99_ms']:<8.3f}"
                f"{ratio:>8.2f}x"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--updates", type=int, default=3, help="update events per job")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--sizes", default="", help="comma-separated job counts to seed")
    parser.add_argument("--probes", type=int, default=1000, help="gets/pages per size")
    parser.add_argument(
        "--history", default="10,1000,10000", help="history lengths of one job to time"
    )
    parser.add_argument(
        "--history-events", type=int, default=1000, help="events timed per history length"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs, args.updates = 10, 1
        args.sizes, args.probes, args.history = "1000", 50, "10,50"
        args.history_events = 50

    results: dict[str, Any] = {"jobs": args.jobs, "updates_per_job": args.updates}
    with tempfile.TemporaryDirectory() as tmp:
        results["baseline_bare_sqlite"] = bench_bare_sqlite(
            Path(tmp) / "bare.db", args.jobs, args.updates
        )
        backends: dict[str, Store] = {
            "memory": MemoryStore(),
            "sqlite": SQLiteStore(Path(tmp) / "store.sqlite3"),
        }
        if os.environ.get("MONGODB_URI"):
            from pipelinejobs.adapters.store.mongo import MongoStore

            backends["mongodb"] = MongoStore(
                os.environ["MONGODB_URI"], f"pipelinejobs_bench_{os.getpid()}"
            )
        for name, store in backends.items():
            try:
                results[name] = bench_jobs(store, args.jobs, args.updates)
            finally:
                if name == "mongodb":
                    store._db().client.drop_database(store.database_name)  # type: ignore[attr-defined]
                store.close()

    base = results["baseline_bare_sqlite"]["per_second"]
    print(f"{'backend':<22}{'transitions':>12}{'seconds':>10}{'per second':>12}{'vs bare':>9}")
    for name in [
        "baseline_bare_sqlite",
        *[k for k in results if k in ("memory", "sqlite", "mongodb")],
    ]:
        row = results[name]
        ratio = row["per_second"] / base if base else 0.0
        results[name]["ratio_to_baseline"] = round(ratio, 3)
        print(
            f"{name:<22}{row['transitions']:>12}{row['seconds']:>10.3f}"
            f"{row['per_second']:>12.1f}{ratio:>9.2f}"
        )
    if args.sizes:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for size in (int(n) for n in args.sizes.split(",")):
                rows.append(scale_sqlite(Path(tmp), size, args.probes))
                if os.environ.get("MONGODB_URI"):
                    rows.append(scale_mongodb(os.environ["MONGODB_URI"], size, args.probes))
        results["scale"] = rows
        print_scale(rows)
    if args.history:
        depths = [int(d) for d in args.history.split(",")]
        rows = history_rows(depths, args.history_events)
        results["history"] = rows
        print()
        print(
            f"{'store':<9}{'history':>9}{'ms/event':>10}{'vs 1st':>8}{'CPU ms/event':>14}"
            f"{'vs 1st':>8}{'baseline: bare read + UPDATE + log INSERT ms':>46}"
        )
        for row in rows:
            print(
                f"{row['backend']:<9}{row['history']:>9}{row['ms_per_event']:>10}"
                f"{row['vs_shortest']:>7}x{row['cpu_ms_per_event']:>14}"
                f"{row['cpu_vs_shortest']:>7}x{row['bare_ms']:>46}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
