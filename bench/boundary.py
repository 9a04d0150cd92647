"""What the strict boundary decoder costs, next to plain ``json.loads`` in the same run.

Every HTTP body passes :func:`pipelinejobs.access.boundary.decode` (UTF-8 only, no
NaN, 64-bit integers, no lone surrogates, no duplicate keys, bounded depth). This
prints microseconds per body for a typical event, an Agave callback, a 100 kB body
and a 1 MB one, each next to ``json.loads`` of the same bytes — the baseline — and
the ratio.

    python bench/boundary.py [--rounds N] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time

from pipelinejobs.access import boundary

EVENT = {
    "uuid": "107cc986-10be-58e4-a15e-6163f1d673ce",
    "name": "update",
    "token": "8465e3faab52f803",
    "data": {"progress": 0.5, "message": "halfway", "n": 12},
}
CALLBACK = {
    "appId": "tacobot-0.1.0",
    "owner": "sd2eadm",
    "executionSystem": "hpc-tacc-stampede2",
    "archivePath": "/products/v2/1064aaf1459c5e42820db822aa4b3990/a/b",
    "archiveSystem": "data-sd2e-community",
    "status": "RUNNING",
    "inputs": {f"file{i}": f"agave://data-sd2e-community/uploads/{i}.fastq" for i in range(10)},
    "parameters": {f"p{i}": i * 1.5 for i in range(20)},
    "_links": {"self": {"href": "https://api.sd2e.org/jobs/v2/1234"}},
}


def body(kind: str) -> bytes:
    if kind == "event":
        return json.dumps(EVENT).encode()
    if kind == "callback":
        return json.dumps(CALLBACK).encode()
    size = 100_000 if kind == "100kB" else 1_000_000
    items = [{"name": f"f{i}.txt", "size": i, "ok": True} for i in range(size // 45)]
    return json.dumps({"files": items}).encode()


def per_call(fn, raw: bytes, rounds: int) -> float:
    fn(raw)
    start = time.perf_counter()
    for _ in range(rounds):
        fn(raw)
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true", help="a few rounds, to see it runs")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    rounds_for = 50 if args.smoke else args.rounds
    figures = []
    head = f"{'body':>10} {'bytes':>9} {'baseline json.loads µs':>23}"
    print(f"{head} {'decode µs':>10} {'ratio':>6}")
    for kind in ("event", "callback", "100kB", "1MB"):
        raw = body(kind)
        rounds = max(3, rounds_for // max(1, len(raw) // 500))
        base = per_call(json.loads, raw, rounds)
        strict = per_call(boundary.decode, raw, rounds)
        figures.append({"body": kind, "bytes": len(raw), "baseline_us": base, "decode_us": strict})
        print(f"{kind:>10} {len(raw):>9} {base:>23.1f} {strict:>10.1f} {strict / base:>6.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
