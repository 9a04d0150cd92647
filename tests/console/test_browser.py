"""The console in a real browser: Debian's Chromium, driven by Playwright.

A real ``pipelinejobs serve`` (the embedded system: gateway, actors on threads, local
jobs run by their supervisors) and a headless Chromium. The pages ask for changes
every 0.25 s here (``gateway.console_poll``), so a state that lasts a second is seen.

The suite installs nothing: ``.ci/run`` installs ``chromium`` (Debian's package) and
``make`` installs Playwright for Python with the test extras. Without the browser (or
Playwright) these tests skip — and fail under ``CI=true``, where a green run must not
hide them. Screenshots of the overview and a job's page are written to
``tests/console/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import _free_port
from tests.integration.server import ROOT, Server, start_server

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: What a compute prints, slowly, so its log can be followed while it runs; then the
#: files its indexing walks (enough that INDEXING lasts long enough to be seen).
SLOW_JOB = (
    "import pathlib, time\n"
    "for i in range(16):\n"
    "    print(f'step {i} of the compute', flush=True)\n"
    "    time.sleep(0.25)\n"
    "d = pathlib.Path('many'); d.mkdir()\n"
    "for i in range(12000):\n"
    "    (d / f'part-{i:05d}.csv').write_text('a,b\\n')\n"
    "print('wrote 12000 files', flush=True)\n"
)
SLEEPING_JOB = "import time\nprint('sleeping now', flush=True)\ntime.sleep(600)\n"
XSS = '<script>window.pwned = 1</script>"><img src=x onerror="window.pwned = 2; alert(2)">'


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: a missing browser fails the run instead of skipping)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if path is None:
        _missing("no chromium installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (the test extras)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("console") / "data"
    running = start_server(
        data,
        _free_port(),
        settings={
            "PIPELINEJOBS_GATEWAY_CONSOLE_POLL": "0.25",
            # The tests run as root and these servers run local jobs.
            "PIPELINEJOBS_LAUNCHER_RUN_AS": "root",
        },
    )
    running.data_dir = data  # type: ignore[attr-defined]
    yield running
    running.stop()


class Browser:
    """A page of a fresh browser context, and what it saw: dialogs and script errors."""

    def __init__(self, browser: Any, server: Server) -> None:
        self.server = server
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def sign_in(self, key: str) -> None:
        self.page.goto(f"{self.server.url}/")
        assert "/ui/sign-in" in self.page.url
        self.page.fill("#key", key)
        self.page.click("#signin-form button[type=submit]")
        self.page.wait_for_url(f"{self.server.url}/ui/")

    def goto(self, path: str) -> None:
        self.page.goto(f"{self.server.url}{path}")

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def browser(chromium: Any, server: Server) -> Iterator[Browser]:
    made = Browser(chromium, server)
    yield made
    made.close()


# -- the system, over its API --------------------------------------------------------


def api(server: Server, method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {key or server.admin_key}"}
    answer = requests.request(method, f"{server.url}{path}", headers=headers, timeout=60, **kwargs)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def register(server: Server, name: str, code: str | None = None) -> str:
    """A pipeline whose jobs run ``code`` locally (or run elsewhere, without it)."""
    component: dict[str, Any] = (
        {"id": f"console-{name}", "command": [sys.executable, "-c", code]}
        if code
        else {"id": f"console-{name}", "inputs": {}, "parameters": {}}
    )
    result = api(
        server,
        "POST",
        "/actors/v2/pipelines-manager/messages",
        params={"sync": "true"},
        json={"name": name, "components": [component]},
    )
    return str(result["result"]["uuid"])


def launch(server: Server, pipeline: str, **extra: Any) -> dict[str, Any]:
    definition = extra.pop("job_definition", {})
    result = api(
        server,
        "POST",
        "/actors/v2/launcher-proxy/messages",
        params={"sync": "true"},
        json={
            "pipeline_uuid": pipeline,
            "parameters": {"sample_id": extra.pop("sample", "sample.tacc.console")},
            "job_definition": definition,
            **extra,
        },
    )
    return dict(result["result"])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def job_of(server: Server, uuid: str) -> dict[str, Any]:
    return dict(api(server, "GET", f"/jobs/{uuid}"))


def new_key(server: Server, role: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", "keys", "create", "--role", role,
         "--data-dir", str(server.data_dir)],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")},
             "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].split()[-1]


# -- the tests -----------------------------------------------------------------------


def test_signing_in_and_the_overview_counts_match_the_api(browser: Browser, server: Server) -> None:
    elsewhere = register(server, "counted")
    for i in range(3):
        launch(
            server,
            elsewhere,
            sample=f"sample.tacc.count{i}",
            job_definition={"launcher": "callback"},
            data={"i": i},
        )
    page = browser.page
    browser.goto("/ui/")
    page.fill("#key", "0" * 32)
    page.click("#signin-form button[type=submit]")
    assert "the bearer key is not known" in page.inner_text("#signin-error")
    browser.sign_in(server.admin_key)
    counts = api(server, "GET", "/jobs", params={"counts": "true", "limit": "1"})["counts"]
    shown = {
        el.get_attribute("data-count"): int(el.inner_text().replace(",", ""))
        for el in page.query_selector_all("[data-count]")
    }
    assert shown.pop("ALL") == sum(counts.values())
    assert shown == counts
    assert shown["RUNNING"] >= 3
    # A count is the filtered list.
    page.click('a.count[data-state="RUNNING"]')
    page.wait_for_url(re.compile(r".*/ui/jobs\?state=RUNNING$"))
    assert len(page.query_selector_all("#jobs tbody tr[data-uuid]")) == counts["RUNNING"]
    browser.goto("/ui/")
    page.wait_for_selector("#live-status .live-dot.on")
    browser.shot("overview")
    assert browser.errors == [] and browser.dialogs == []


def test_a_local_jobs_page_follows_it_through_its_lifecycle_and_its_log(
    browser: Browser, server: Server
) -> None:
    pipeline = register(server, "followed", SLOW_JOB)
    browser.sign_in(server.admin_key)
    # Launched without indexing: it stays FINISHED until the test, having seen that on
    # the page, asks for its outputs to be indexed (the launcher records ``run`` as it
    # creates a job, so CREATED lasts milliseconds: the timeline shows it).
    job = launch(server, pipeline, sample="sample.tacc.followed", index=False)
    uuid = job["uuid"]
    indexing_asked = False
    page = browser.page
    browser.goto(f"/ui/jobs/{uuid}")
    page.evaluate("window.__notReloaded = true")
    seen: list[tuple[str, str]] = []
    log_while_running = ""

    def sample() -> tuple[str, str, str]:
        state, current, log = page.evaluate(
            """() => [
            document.querySelector('#job-header').getAttribute('data-state'),
            document.querySelector('#job-diagram .node.current').getAttribute('data-state'),
            (document.querySelector('#job-log') || {}).textContent || ''
        ]"""
        )
        return state, current, log

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state, current, log = sample()
        if not seen or seen[-1] != (state, current):
            seen.append((state, current))
        if state == "RUNNING" and "step 3 of the compute" in log:
            log_while_running = log
        if state == "FINISHED" and not indexing_asked:
            indexing_asked = True
            api(
                server,
                "POST",
                "/actors/v2/jobs-indexer/messages",
                json={"uuid": uuid, "name": "index", "token": job["token"], "level": "2"},
            )
        history = page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.event)")
        if state == "FINISHED" and history and history[-1] == "indexed":
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the page did not reach indexed: saw {seen}")
    assert page.evaluate("window.__notReloaded") is True  # never reloaded
    # The header and the diagram's current state moved together, through every state.
    assert all(state == current for state, current in seen), seen
    walk = [s for s, _ in seen]
    assert walk[-4:] == ["RUNNING", "FINISHED", "INDEXING", "FINISHED"], walk
    # The timeline, updated in place, tells the whole walk from CREATED.
    history = page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.event)")
    assert history[0] == "create" and history[-3:] == ["finish", "index", "indexed"]
    visited = page.eval_on_selector_all(
        "#job-diagram .node.visited", "els => els.map(e => e.dataset.state)"
    )
    assert {"CREATED", "RUNNING", "FINISHED", "INDEXING"} <= set(visited)
    # Its log was followed while it ran, and holds the end once it finished.
    assert "step 3 of the compute" in log_while_running
    # (Waiting on selectors: a predicate given as text would be an eval, which the
    # console's Content-Security-Policy refuses, for the test's scripts too.)
    page.wait_for_selector("#job-log:has-text('wrote 12000 files')")
    assert page.inner_text("#files-summary").startswith("12000 file records")
    browser.shot("job")
    assert browser.errors == [] and browser.dialogs == []


def test_cancelling_a_running_job_from_its_page_stops_its_compute(
    browser: Browser, server: Server
) -> None:
    pipeline = register(server, "sleeper", SLEEPING_JOB)
    job = launch(server, pipeline, sample="sample.tacc.sleeper")
    uuid, pid = job["uuid"], job["launch"]["pid"]
    wait_for(
        lambda: [h["name"] for h in job_of(server, uuid)["history"]].count("run") == 2,
        60,
        "the supervisor's RUNNING report",
    )
    browser.sign_in(server.admin_key)
    page = browser.page
    browser.goto(f"/ui/jobs/{uuid}")
    page.wait_for_selector("#job-log:has-text('sleeping now')")
    page.click('[data-action="cancel"]')
    assert "the job becomes FAILED" in page.inner_text("#explains")
    page.fill("#reason", "not needed any more")
    page.click("#confirm")
    outcome = page.inner_text("#outcome")
    assert outcome.startswith("Done: 'fail' was applied") and "FAILED" in outcome
    assert "asked to stop" in outcome
    page.click("#back-to-job")
    # Its supervisor stops the compute and records it, and the page shows it, live.
    page.wait_for_selector('#timeline li[data-event="update"]', timeout=30_000)
    assert page.get_attribute("#job-header", "data-state") == "FAILED"
    assert "STOPPED" in page.inner_text('#timeline li[data-event="update"]')
    fail = page.inner_text('#timeline li[data-event="fail"]')
    assert "console:key:" in fail
    gone = not Path(f"/proc/{pid}").exists()
    assert gone or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert browser.errors == [] and browser.dialogs == []


def test_a_user_key_sees_no_admin_actions(browser: Browser, server: Server) -> None:
    pipeline = register(server, "for-users")
    job = launch(
        server, pipeline, sample="sample.tacc.user", job_definition={"launcher": "callback"}
    )
    browser.sign_in(new_key(server, "user"))
    page = browser.page
    browser.goto(f"/ui/jobs/{job['uuid']}")
    actions = page.eval_on_selector_all("[data-action]", "els => els.map(e => e.dataset.action)")
    assert actions == ["cancel"]
    assert "user key" in page.inner_text(".topbar .who")
    browser.goto(f"/ui/jobs/{job['uuid']}/actions/reset")
    assert "needs an admin key" in page.inner_text("#error-message")
    browser.goto(f"/ui/jobs/{job['uuid']}/actions/cancel")
    assert page.query_selector("#token") is not None  # a user pastes the job's token


def test_a_jobs_hostile_name_and_data_are_shown_as_text(browser: Browser, server: Server) -> None:
    pipeline = register(server, "hostile")
    job = launch(
        server,
        pipeline,
        sample="sample.tacc.hostile",
        job_definition={"launcher": "callback", "name": XSS},
        data={"note": XSS, "nested": {"html": "<iframe src=javascript:alert(3)>"}},
    )
    browser.sign_in(server.admin_key)
    page = browser.page
    for path in (f"/ui/jobs/{job['uuid']}", "/ui/jobs", "/ui/", "/ui/jobs?q=pwned"):
        browser.goto(path)
        page.wait_for_timeout(600)  # a few live updates too
        assert page.evaluate("typeof window.pwned") == "undefined", path
        assert page.query_selector("main img, main iframe, main script") is None, path
    browser.goto(f"/ui/jobs/{job['uuid']}")
    assert page.inner_text("#job-name") == XSS
    page.click("#job-fields details summary")
    assert json.loads(page.inner_text("#job-data"))["note"] == XSS
    assert browser.dialogs == [] and browser.errors == []


def test_a_runs_counts_lead_to_its_failed_job_which_an_admin_retries(
    browser: Browser, server: Server
) -> None:
    pipeline = register(server, "batched")
    run = api(
        server,
        "POST",
        "/actors/v2/launcher-proxy/messages",
        params={"sync": "true"},
        json={
            "action": "create_run",
            "pipeline_uuid": pipeline,
            "name": "browser batch",
            "tags": {"experiment": XSS},
        },
    )["result"]["uuid"]
    jobs = [
        launch(
            server,
            pipeline,
            sample=f"sample.tacc.batch{i}",
            run=run,
            tags={"note": "<script>window.pwned = 3</script>"},
            job_definition={"launcher": "callback"},
            data={"i": i},
        )
        for i in range(2)
    ]
    failed = jobs[1]["uuid"]
    api(
        server,
        "POST",
        "/actors/v2/jobs-manager/messages",
        params={"sync": "true"},
        json={"uuid": failed, "name": "fail", "token": jobs[1]["token"],
              "data": {"reason": "out of salsa"}},
    )  # fmt: skip
    browser.sign_in(server.admin_key)
    page = browser.page
    page.click(".topbar nav a:has-text('Runs')")
    page.wait_for_url(re.compile(r".*/ui/runs$"))
    row = f'#runs tr[data-run="{run}"]'
    assert page.get_attribute(row, "data-status") == "RUNNING"
    counts = page.eval_on_selector_all(
        f"{row} [data-state-count]", "els => els.map(e => e.textContent.trim())"
    )
    assert counts == ["RUNNING 1", "FAILED 1"]
    assert "1 of 2 done (50%)" in page.inner_text(f"{row} .progress")
    assert XSS in page.inner_text(f"{row} .run-tags")  # a hostile tag, as text
    browser.shot("runs")
    page.click(f"{row} a.run-name")
    page.wait_for_url(re.compile(rf".*/ui/runs/{run}$"))
    assert page.inner_text("#run-status") == "RUNNING"
    assert page.inner_text('[data-run-count="FAILED"]') == "1"
    # Its FAILED job, from the run's jobs.
    page.click(f'#run-jobs tr[data-uuid="{failed}"] td.uuid a')
    page.wait_for_url(re.compile(rf".*/ui/jobs/{failed}$"))
    assert page.get_attribute("#job-header", "data-state") == "FAILED"
    assert page.inner_text("#job-run").startswith("browser batch")
    page.click('[data-action="retry"]')
    assert "retry the FAILED job" in page.inner_text("#explains")
    page.fill("#reason", "salsa restocked")
    page.click("#confirm")
    assert page.inner_text("#outcome").startswith("Done: the job was retried as attempt 2")
    page.click("#back-to-job")
    page.wait_for_selector('#job-header[data-state="RUNNING"]')
    assert page.inner_text("#job-attempt") == "2"
    assert "salsa restocked" in page.inner_text("#job-attempts")
    assert job_of(server, failed)["attempt"] == 2
    # The run counts it again as running.
    browser.goto(f"/ui/runs/{run}")
    assert page.inner_text('[data-run-count="RUNNING"]') == "2"
    assert page.inner_text('[data-run-count="FAILED"]') == "0"
    assert page.evaluate("typeof window.pwned") == "undefined"
    browser.shot("run")
    assert browser.errors == [] and browser.dialogs == []


def test_a_runs_running_jobs_are_cancelled_in_bulk_after_a_dry_run(
    browser: Browser, server: Server
) -> None:
    pipeline = register(server, "bulk-batch")
    run = api(
        server,
        "POST",
        "/actors/v2/launcher-proxy/messages",
        params={"sync": "true"},
        json={"action": "create_run", "pipeline_uuid": pipeline, "name": "bulk batch"},
    )["result"]["uuid"]
    # Three left RUNNING by the inline backend, one FINISHED: cancel leaves that one be.
    reports = [["RUNNING"]] * 3 + [["RUNNING", "FINISHED"]]
    jobs = [
        launch(
            server,
            pipeline,
            sample=f"sample.tacc.bulk{i}",
            run=run,
            job_definition={"report": report},
            data={"i": i},
            index=False,  # stays FINISHED: INDEXING (which cancel acts on) would race
        )["uuid"]
        for i, report in enumerate(reports)
    ]
    wanted = ["RUNNING"] * 3 + ["FINISHED"]
    wait_for(lambda: [job_of(server, u)["state"] for u in jobs] == wanted, 60, "the reports")
    browser.sign_in(server.admin_key)
    page = browser.page
    browser.goto(f"/ui/runs/{run}")
    page.click("#bulk-control summary")
    page.select_option("#bulk-operation", "cancel")
    page.fill("#bulk-reason", XSS)
    browser.shot("bulk-control")
    page.click("#bulk-dry-run")
    page.wait_for_selector("#bulk-sentence")
    assert page.inner_text("#bulk-sentence") == (
        "This will cancel 3 jobs (4 match the filter; cancel acts on jobs in states "
        "CREATED, INDEXING, RUNNING, VALIDATING)."
    )
    sample = page.eval_on_selector_all(
        "#bulk-sample tbody tr", "els => els.map(e => e.dataset.uuid)"
    )
    assert sorted(sample) == sorted(jobs[:3])
    assert [job_of(server, u)["state"] for u in jobs] == wanted  # a dry run changes nothing
    assert page.inner_text("#bulk-reason") == XSS
    browser.shot("bulk-confirm")
    page.click("#confirm")
    page.wait_for_url(re.compile(r".*/ui/bulk/[A-Za-z0-9]+$"))
    # Followed live until every job's execution has finished.
    page.wait_for_selector('#bulk[data-status="COMPLETE"]', timeout=60_000)
    assert page.inner_text("#bulk-status") == "COMPLETE"
    assert page.inner_text('[data-bulk-count="done"]') == "3"
    assert page.get_attribute("#bulk-progress .progress", "data-finished") == "3"
    done = page.eval_on_selector_all(
        '#bulk-outcomes tr[data-outcome="done"]', "els => els.map(e => e.dataset.uuid)"
    )
    assert sorted(done) == sorted(jobs[:3])
    assert [job_of(server, u)["state"] for u in jobs] == ["FAILED"] * 3 + ["FINISHED"]
    assert page.inner_text("#bulk-reason") == XSS
    assert page.evaluate("typeof window.pwned") == "undefined"
    browser.shot("bulk")
    # Listed, from the navigation.
    page.click(".topbar nav a:has-text('Bulk')")
    page.wait_for_url(re.compile(r".*/ui/bulk$"))
    assert page.get_attribute("#bulk-list tbody tr", "data-status") == "COMPLETE"
    assert browser.errors == [] and browser.dialogs == []


def test_a_batched_webhooks_page_shows_its_deliveries_without_its_secret(
    browser: Browser, server: Server
) -> None:
    from tests.webhook_receiver import receiver

    with receiver() as hook:
        made = requests.post(
            f"{server.url}/webhooks", timeout=60, json={"url": hook.url, "batch": 10},
            headers={"Authorization": f"Bearer {server.admin_key}"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        sub = made.json()["result"]
        hook.secret = sub["secret"]
        pipeline = register(server, "hooked")
        launch(server, pipeline, sample="sample.tacc.hooked")
        wait_for(lambda: hook.events(), 30, "a delivery")
        wait_for(lambda: api(server, "GET", f"/webhooks/{sub['id']}/deliveries")["deliveries"],
                 30, "the delivery's record")  # fmt: skip
    browser.sign_in(server.admin_key)
    browser.goto(f"/ui/webhooks/{sub['id']}")
    page = browser.page
    assert "up to 10 events per POST" in page.inner_text("#batch")
    rows = page.query_selector_all("#deliveries tbody tr[data-delivery]")
    assert rows and all(r.get_attribute("data-status") == "200" for r in rows)
    assert sub["secret"] not in page.content()
    browser.shot("webhook")
    assert not browser.errors
