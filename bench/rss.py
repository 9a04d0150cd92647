"""Benchmark: the embedded server's memory over a long run (issue 18: peak RSS < 150 MB
after 100,000 jobs).

Starts ``pipelinejobs serve`` on a fresh data directory and puts N callback jobs
through it in batches: each batch's jobs launched (``launcher-proxy``, synchronous,
as ``events.py``'s setup does), then each job's ``run`` and ``finish`` POSTed by C
clients, then waited for until FINISHED. After every batch it samples the server's
resident set now (VmRSS) and its peak so far (VmHWM), so the table shows whether
memory levels off or keeps growing with the jobs the store holds.

Baseline, same run: the server's own peak right after start-up (imports, the store
opened, the worker threads started) and after the first batch (first-use caches
filled) — growth past those is what the jobs cost.

    python bench/rss.py                          # N=100,000 in batches of 5,000, 8 clients
    python bench/rss.py --jobs 20000 --batch 2000
    python bench/rss.py --smoke
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _procs import Deadline, Procs, send_all, vmhwm_mib  # noqa: E402
from _system import launch_jobs, start_system, wait_finished  # noqa: E402

TARGET_MIB = 150.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in all (N)")
    parser.add_argument("--batch", type=int, default=5_000, help="jobs a batch")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="server threads")
    parser.add_argument("--deadline", type=float, default=7200)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    if args.smoke:
        args.jobs, args.batch = 40, 20
    args.mode = "embedded"
    dl = Deadline(args.deadline)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        procs = Procs(Path(tmp))
        try:
            url, auth = start_system(args, procs, Path(tmp), dl)
            pid = procs.procs["serve"][0].pid
            start_hwm = vmhwm_mib(pid) or 0.0
            done = 0
            while done < args.jobs:
                n = min(args.batch, args.jobs - done)
                jobs = launch_jobs(url, auth, n, args.clients, dl, first=done)
                for name in ("run", "finish"):
                    bodies = [
                        {"uuid": u, "name": name, "token": t, "data": {"n": i}}
                        for i, (u, t) in enumerate(jobs)
                    ]
                    send_all(
                        f"{url}/actors/v2/jobs-manager/messages", bodies, auth, args.clients, dl
                    )
                done += n
                wait_finished(url, auth, done, dl)
                rows.append(
                    {
                        "jobs": done,
                        "rss_mib": vmhwm_mib(pid, "VmRSS"),
                        "peak_mib": vmhwm_mib(pid),
                        "seconds": round(time.monotonic() - started, 1),
                    }
                )
                print(
                    f"  {done:>7} jobs: RSS {rows[-1]['rss_mib']} MiB, peak {rows[-1]['peak_mib']} "
                    f"MiB ({rows[-1]['seconds']} s)",
                    flush=True,
                )
        finally:
            procs.stop_all()
    first = rows[0]["peak_mib"]
    peak = rows[-1]["peak_mib"]
    figures = {
        "jobs": args.jobs,
        "batch": args.batch,
        "baseline_start_peak_mib": start_hwm,
        "baseline_first_batch_peak_mib": first,
        "peak_mib": peak,
        "target_mib": TARGET_MIB,
        "rows": rows,
    }
    print(
        f"embedded server, {args.jobs} jobs (run + finish each), {args.clients} clients: "
        f"peak RSS {peak} MiB (target < {TARGET_MIB:g}); baseline: {start_hwm} MiB after "
        f"start-up, {first} MiB after the first {rows[0]['jobs']} jobs"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
