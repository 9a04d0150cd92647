"""The engines the docker launcher's tests run on: the fake one and real podman.

Both answer the same questions, so one test can run on each (the ``engine`` fixture
in conftest.py is parametrized over them):

* :meth:`image` — an image present on the engine whose containers exit, write and
  sleep as told (:class:`~tests.adapters.launchers.fake_docker.Program`);
* :meth:`pullable` / :meth:`unpullable` — an image the engine lacks, that a pull
  finds (or does not); :meth:`pulls` — how many pulls were made;
* :meth:`seen` — what the container was given: the fake reads the create request,
  the real engine's container reports it itself (tests/containers.py's probe), in
  the bind-mounted archive — so on podman, argv, environment, working directory,
  bind and uid:gid are seen from inside a container that really ran;
* :meth:`containers` — the jobs' containers still on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.adapters.launchers.fake_docker import FakeEngine, Program
from tests.containers import PodmanService, podman
from tests.registry import Registry

#: Variables a real engine or the test image sets, which are not the launcher's.
ENGINE_ENV = {"PATH", "HOSTNAME", "HOME", "container", "PWD", "SHLVL", "TERM", "_"}


@dataclass
class Seen:
    """What a container was given."""

    #: The arguments after the executable (entrypoint's then command's).
    args: list[str]
    env: dict[str, str]
    workdir: str
    #: "uid:gid" (the fake: as asked; None for the image's own).
    user: str | None


class FakeUnderTest:
    """The fake engine (fake_docker.py) behind the common questions."""

    name = "fake"

    def __init__(self) -> None:
        self.fake = FakeEngine()
        self.url = self.fake.url
        self.count = 0

    def image(self, program: Program | None = None) -> str:
        self.count += 1
        ref = f"example/tacobot:{self.count}"
        self.fake.images.add(ref)
        self.fake.programs[ref] = program or Program()
        return ref

    def pullable(self, program: Program | None = None) -> str:
        ref = self.image(program)
        self.fake.images.discard(ref)
        return ref

    def unpullable(self) -> tuple[str, str]:
        """An image no pull finds, and what the engine says of it."""
        self.fake.unpullable.add("example/nowhere:1")
        return "example/nowhere:1", "pull access denied for example/nowhere"

    def pulls(self) -> int:
        return len(self.fake.requested("POST", "/images/create"))

    def seen(self, archive_dir: Path) -> Seen:
        (create,) = self.fake.requested("POST", "/containers/create")
        body = create.body
        args = (body.get("Entrypoint") or [None])[1:] + (body.get("Cmd") or [])
        env = dict(item.split("=", 1) for item in body["Env"])
        assert body["HostConfig"]["Binds"] == [f"{archive_dir}:/archive:rw"]
        return Seen(args, env, body["WorkingDir"], body.get("User") or None)

    def containers(self) -> list[str]:
        return list(self.fake.containers)

    def close(self) -> None:
        self.fake.close()
        assert self.fake.unknown == [], "the SDK called an endpoint the fake does not serve"


class PodmanUnderTest:
    """The session's podman service, with the session's test registry."""

    name = "podman"

    def __init__(self, service: PodmanService, registry: Registry, tmp_path: Path) -> None:
        self.service, self.registry, self.tmp_path = service, registry, tmp_path
        self.url = service.url
        self.pulls_before = sum(registry.pulls.values())
        self.pulled: list[str] = []

    def image(self, program: Program | None = None) -> str:
        program = program or Program()
        return self.service.program_image(
            exit_code=program.exit_code,
            stdout=program.stdout,
            stderr=program.stderr,
            forever=program.forever,
        )

    def pullable(self, program: Program | None = None) -> str:
        local = self.image(program)
        tag = local.rsplit(":", 1)[1]
        layout = self.service.save(local, self.tmp_path / f"oci-{tag}")
        ref = self.registry.add("pipelinejobs-test/pullable", tag, layout)
        self.pulled.append(ref)
        return ref

    def unpullable(self) -> tuple[str, str]:
        return f"{self.registry.host}/pipelinejobs-test/nowhere:1", "manifest unknown"

    def pulls(self) -> int:
        return sum(self.registry.pulls.values()) - self.pulls_before

    def seen(self, archive_dir: Path) -> Seen:
        probe = archive_dir / ".probe"
        lines = (probe / "env").read_text().splitlines()
        env = {
            k: v
            for k, v in (line.split("=", 1) for line in lines if "=" in line)
            if k not in ENGINE_ENV and not k.startswith("PROBE_")
        }
        args = (probe / "argv").read_text().splitlines()
        user = (probe / "user").read_text().strip()
        return Seen(args, env, (probe / "pwd").read_text().strip(), user)

    def containers(self) -> list[str]:
        return self.service.job_containers()

    def close(self) -> None:
        self.service.remove_job_containers()
        for ref in self.pulled:  # so the next test's pull is a pull
            podman("rmi", "--force", ref, check=False)
