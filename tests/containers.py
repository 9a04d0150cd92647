"""A real container engine for the tests: Debian's podman, serving the Docker Engine API.

When ``podman`` is installed (``.ci/run`` installs and configures it), a session
fixture starts ``podman system service`` on a private unix socket
(:class:`PodmanService`), so the docker launcher's tests run through the real SDK
against a real engine as well as against the fake one (fake_docker.py). No registry
is reachable here, so every image is made on this machine: the test images are a
static busybox (Debian's ``busybox-static``) with :data:`PROBE` as their entrypoint,
imported with ``podman import`` in well under a second each, and removed when the
session ends. Nothing is left running: the service is stopped at the end of the
session, after every container it made is removed.

The probe is what makes a real engine's run observable: it records what it was given
(argv, environment, working directory, uid:gid) in ``.probe/`` of its working
directory — the bind-mounted archive — then writes, sleeps and exits as its image's
``PROBE_*`` environment says (the fake engine's :class:`Program`, for real).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import docker
import docker.errors
import pytest

PODMAN = shutil.which("podman")
BUSYBOX = Path("/bin/busybox")
#: Where the tests' images are named (and what is removed at the end).
TEST_REPOSITORY = "localhost/pipelinejobs-test"
#: Images pulled from the tests' registry (tests/registry.py) are named from here.
TEST_REGISTRY = "127.0.0.1:"
#: Labels of every container the tests make, so none can be left behind.
JOB_LABEL = "pipelinejobs.job"

#: The test images' entrypoint (busybox sh): report, then behave as PROBE_* say.
PROBE = """#!/bin/sh
if mkdir -p .probe 2>/dev/null; then
    : > .probe/argv
    [ $# -gt 0 ] && printf '%s\\n' "$@" > .probe/argv
    env > .probe/env
    pwd > .probe/pwd
    echo "$(id -u):$(id -g)" > .probe/user
fi
[ -n "$PROBE_STDOUT" ] && echo "$PROBE_STDOUT" | base64 -d
[ -n "$PROBE_STDERR" ] && echo "$PROBE_STDERR" | base64 -d >&2
[ -n "$PROBE_FOREVER" ] && exec sleep 600
exit "${PROBE_EXIT:-0}"
"""
APPLETS = ("sh", "env", "id", "pwd", "printf", "mkdir", "sleep", "cat", "echo", "base64", "ls")


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the podman CLI (on the same image and container store as the service)."""
    assert PODMAN is not None
    return subprocess.run(
        [PODMAN, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def missing() -> str | None:
    """Why no real engine can run here (None: it can)."""
    if PODMAN is None:
        return "podman is not installed (.ci/run installs it)"
    if not BUSYBOX.exists():
        return "no static busybox for the test images (Debian's busybox-static)"
    return None


def ours(image: str) -> bool:
    """Whether ``image`` is one the tests made or pulled."""
    return image.startswith(TEST_REPOSITORY) or image.startswith(TEST_REGISTRY)


def unavailable(what: str) -> None:
    """Skip, except under ``CI=true``, where a missing engine fails the run (a green CI
    must not hide it; as tests/integration/conftest.py does for the brokers)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: a missing container engine fails the run)")
    pytest.skip(what)


def probe_rootfs(path: Path) -> Path:
    """A tarball of a root filesystem: busybox, its applets, and the probe."""
    with tarfile.open(path, "w") as tar:
        for name in ("bin", "tmp"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        script = PROBE.encode()
        info = tarfile.TarInfo("bin/probe")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return path


def probe_changes(
    *, exit_code: int = 0, stdout: bytes = b"", stderr: bytes = b"", forever: bool = False
) -> list[str]:
    """The image configuration of a probe that behaves so (base64 keeps it one word)."""
    env = {
        "PATH": "/bin",
        "PROBE_EXIT": str(exit_code),
        "PROBE_STDOUT": base64.b64encode(stdout).decode(),
        "PROBE_STDERR": base64.b64encode(stderr).decode(),
        "PROBE_FOREVER": "1" if forever else "",
    }
    return [
        *(f"ENV {key}={value}" for key, value in env.items()),
        'ENTRYPOINT ["/bin/probe"]',
        'CMD ["the-image-own-command"]',
    ]


class PodmanService:
    """``podman system service`` on ``<workdir>/podman.sock`` until :meth:`close`."""

    def __init__(self, workdir: Path, registries_conf: Path) -> None:
        assert PODMAN is not None
        self.workdir = workdir
        self.socket = workdir / "podman.sock"
        self.url = f"unix://{self.socket}"
        self.rootfs = probe_rootfs(workdir / "probe-rootfs.tar")
        self.images: set[str] = set()
        self.socket.unlink(missing_ok=True)  # a killed service's, when started again
        env = {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(registries_conf)}
        with open(workdir / "service.log", "wb") as log:
            self.proc = subprocess.Popen(
                [PODMAN, "system", "service", "--time=0", self.url],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        self.client = docker.DockerClient(base_url=self.url, version="1.43", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                # A plain connect first: the SDK's unix transport leaks the socket
                # of a refused connect.
                if self.listening() and self.client.ping():
                    break
            except (docker.errors.DockerException, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"podman system service did not answer: {self.log()}")
            time.sleep(0.05)

    def listening(self) -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.socket))
            except OSError:
                return False
        return True

    def log(self) -> str:
        return (self.workdir / "service.log").read_text(errors="replace")[-2000:]

    def program_image(self, **behaviour: object) -> str:
        """A local image whose containers behave so (made once per session)."""
        changes = probe_changes(**behaviour)  # type: ignore[arg-type]
        digest = hashlib.sha256("\n".join(changes).encode()).hexdigest()[:16]
        ref = f"{TEST_REPOSITORY}/probe:{digest}"
        if ref not in self.images:
            args = [a for change in changes for a in ("--change", change)]
            podman("import", "--quiet", *args, str(self.rootfs), ref)
            self.images.add(ref)
        return ref

    def save(self, ref: str, layout: Path) -> Path:
        """``ref`` as an OCI image layout (what the test registry serves)."""
        podman("save", "--quiet", "--format", "oci-dir", "-o", str(layout), ref)
        return layout

    def job_containers(self) -> list[str]:
        """Ids of the jobs' containers of the tests' images (the launcher labels each;
        a job container of anything else on this machine is not the tests' business).
        Asked of the API, not the CLI: a test polls this to time a removal."""
        listed = self.client.containers.list(all=True, sparse=True, filters={"label": JOB_LABEL})
        return [c.id for c in listed if ours(str(c.attrs.get("Image", "")))]

    def remove_job_containers(self) -> None:
        """Through the CLI: this service may be the one a test killed."""
        listed = podman(
            "ps", "--all", "--no-trunc", "--filter", f"label={JOB_LABEL}",
            "--format", "{{.ID}} {{.Image}}", check=False,
        )  # fmt: skip
        for line in listed.stdout.splitlines():
            cid, _, image = line.partition(" ")
            if ours(image):
                podman("rm", "--force", "--time", "0", cid, check=False)

    def close(self) -> None:
        """Remove what the tests made, then stop the service (nothing left running)."""
        self.client.close()
        self.remove_job_containers()
        for ref in sorted(self.images):
            podman("rmi", "--force", ref, check=False)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
