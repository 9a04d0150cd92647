"""The code's layers, checked on its source: what each module may import.

* Actors talk only by messages: no actor module imports another, and nothing in
  ``pipelinejobs`` outside ``actors`` imports an actor statically (the runtime loads
  them by name).
* The layers of ``common/`` (installed as ``pipelinejobs``), bottom up: **domain**
  (lifecycle, jobs, pipelines, identifiers — the rules, knowing nothing of HTTP,
  brokers, databases or processes), **access** (tokens, keys, nonces, the boundary),
  **adapters** (store, bus, launchers, storage: each backend behind its interface),
  **observability** (metrics, heartbeats, the process log: it reads the store and the
  bus; the layers below announce on ``pipelinejobs.signals`` instead of importing it),
  **runtime** (actors, dispatch, executions, the system wiring them), and the entry
  points on top (**console** — the operator's pages, which the gateway's app serves —,
  **gateway**, **client** — the HTTP client library —, **cli**). A layer imports only
  itself and the layers
  below it; the domain and access layers import none of flask, celery, kombu, redis,
  pymongo, sqlite3, docker or subprocess. What they may use of the adapters is the
  store's port: its interface, its codec and its compare-and-set loop
  (``pipelinejobs.adapters.store.base``, ``.codec``, ``.cas``), which import no backend.

The checks read the source with :mod:`ast`, so an import hidden inside a function
or an ``if TYPE_CHECKING:`` block is found too. The checkers are tested on small
sources first, so a checker that finds nothing cannot pass by accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACTORS = ROOT / "actors"
COMMON = ROOT / "common"

LAYERS = (
    "domain", "access", "adapters", "observability", "runtime", "console", "gateway", "client",
    "cli",
)  # fmt: skip
#: Importable from any layer: the version, the errors, the settings, the schema files,
#: the signals (what lower layers announce for observers above them).
SHARED = (
    "pipelinejobs",
    "pipelinejobs.errors",
    "pipelinejobs.config",
    "pipelinejobs.schemas",
    "pipelinejobs.signals",
)
PORTS = (
    "pipelinejobs.adapters.store.base",
    "pipelinejobs.adapters.store.codec",
    "pipelinejobs.adapters.store.cas",
)
PURE = ("domain", "access")
INFRASTRUCTURE = (
    "flask", "werkzeug", "celery", "kombu", "redis", "pymongo", "docker", "subprocess",
    "sqlite3", "waitress", "gunicorn", "requests", "urllib.request", "http",
)  # fmt: skip


def module_name(path: Path) -> str:
    """The import name of a file: ``actors/jobs_manager.py`` ->
    ``pipelinejobs.actors.jobs_manager``, ``common/domain/jobs.py`` ->
    ``pipelinejobs.domain.jobs``; packages drop ``__init__``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    rest = parts[1:] if parts[0] == "common" else parts
    return ".".join(["pipelinejobs", *rest])


def imported_modules(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module an import statement in ``source`` names, made absolute.

    ``from X import a, b`` yields ``X.a`` and ``X.b`` as well as ``X``: the names may
    be submodules (``from pipelinejobs.actors import jobs_manager``).
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            prefix = f"{target}." if target else ""
            found.extend([target] if target else [])
            found.extend(f"{prefix}{alias.name}" for alias in node.names if alias.name != "*")
    return found


def actor_of(module: str) -> str | None:
    """``pipelinejobs.actors.x`` (and below) belongs to actor ``x``; the ``actors``
    package itself to none (""); any other module is not an actor's (None)."""
    parts = module.split(".")
    if parts[:2] != ["pipelinejobs", "actors"]:
        return None
    return parts[2] if len(parts) > 2 else ""


def foreign_actor_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports in actor ``module`` that reach the ``actors`` package or another actor."""
    own = actor_of(module)
    bad = []
    for target in imported_modules(source, module, is_package):
        other = actor_of(target)
        if other is None or (other == own and other != ""):
            continue
        bad.append(target)
    return sorted(set(bad))


def actors_imported(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports in a module outside ``actors`` that reach an actor at all."""
    targets = imported_modules(source, module, is_package)
    return sorted({t for t in targets if actor_of(t) is not None})


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pipelinejobs" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _infrastructure(target: str) -> bool:
    return any(target == i or target.startswith(i + ".") for i in INFRASTRUCTURE)


def layer_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports in ``module`` that break the layer rules (see the module docstring)."""
    own = layer_of(module)
    if own is None:
        return []
    allowed = set(LAYERS[: LAYERS.index(own) + 1])
    bad = []
    for target in imported_modules(source, module, is_package):
        if own in PURE and _infrastructure(target):
            bad.append(target)
            continue
        if target in SHARED or target.startswith(PORTS) or actor_of(target) is not None:
            continue  # actors: the rule above reports those
        other = layer_of(target)
        if other is not None and other not in allowed:
            bad.append(target)
    return sorted(set(bad))


def actor_modules() -> list[Path]:
    return sorted(p for p in ACTORS.rglob("*.py") if p != ACTORS / "__init__.py")


def package_modules() -> list[Path]:
    return sorted(COMMON.rglob("*.py"))


# -- the checkers, on known sources -------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import pipelinejobs.actors.jobs_manager",
        "import pipelinejobs.actors.jobs_manager as jm",
        "import pipelinejobs.actors",
        "from pipelinejobs.actors import jobs_manager",
        "from pipelinejobs.actors.jobs_manager import ACTOR",
        "from pipelinejobs.actors.jobs_manager.helpers import x",
        "from . import jobs_manager",
        "from .jobs_manager import ACTOR",
        "from .. import actors",
        "def f():\n    from pipelinejobs.actors import jobs_indexer\n",
        "if TYPE_CHECKING:\n    import pipelinejobs.actors.jobs_indexer\n",
    ],
)
def test_the_checker_finds_imports_of_other_actors(source: str) -> None:
    assert foreign_actor_imports(source, "pipelinejobs.actors.launcher_proxy")


@pytest.mark.parametrize(
    "source",
    [
        "import pipelinejobs.runtime.dispatch",
        "from pipelinejobs.domain import validation",
        "from pipelinejobs.adapters.launchers import Launch",
        "import importlib\nimportlib.import_module('pipelinejobs.actors.jobs_manager')",
        "import json, re",
        "from __future__ import annotations",
    ],
)
def test_the_checker_allows_the_package_and_the_standard_library(source: str) -> None:
    assert foreign_actor_imports(source, "pipelinejobs.actors.launcher_proxy") == []


def test_the_checker_allows_an_actor_packages_own_modules() -> None:
    inside = "pipelinejobs.actors.launcher_proxy.backends"
    assert foreign_actor_imports("from . import helpers", inside) == []
    assert foreign_actor_imports("from .helpers import x", inside) == []
    own = "from pipelinejobs.actors.launcher_proxy import helpers"
    assert foreign_actor_imports(own, inside) == []
    assert foreign_actor_imports("from ..jobs_manager import ACTOR", inside) == [
        "pipelinejobs.actors.jobs_manager",
        "pipelinejobs.actors.jobs_manager.ACTOR",
    ]


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import pipelinejobs.actors", True),
        ("from pipelinejobs.actors import launcher_proxy", True),
        ("if True:\n    from pipelinejobs.actors.jobs_manager import ACTOR\n", True),
        ("from .. import actors", True),
        ("from . import executions", False),
        ("importlib.import_module('pipelinejobs.actors.jobs_manager')", False),
        ("import pipelinejobs.actorsish", False),
    ],
)
def test_the_checker_finds_actors_imported_by_the_package(source: str, found: bool) -> None:
    assert bool(actors_imported(source, "pipelinejobs.runtime.dispatch")) is found


def test_relative_imports_resolve_against_the_package() -> None:
    assert imported_modules("from .x import y", "p.a") == ["p.x", "p.x.y"]
    assert imported_modules("from . import y", "p.a", is_package=True) == ["p.a", "p.a.y"]
    assert imported_modules("from .. import y", "p.a.b") == ["p", "p.y"]


@pytest.mark.parametrize(
    ("source", "module", "bad"),
    [
        ("import subprocess", "pipelinejobs.domain.jobs", True),
        ("from flask import request", "pipelinejobs.access.nonces", True),
        ("def f():\n    import docker\n", "pipelinejobs.domain.lifecycle", True),
        ("from pymongo import MongoClient", "pipelinejobs.domain.jobs", True),
        ("from celery import Celery", "pipelinejobs.domain.pipelines", True),
        ("import kombu.messaging", "pipelinejobs.access.tokens", True),
        ("from pipelinejobs.runtime.executions import x", "pipelinejobs.access.keys", True),
        ("from pipelinejobs.gateway import create_app", "pipelinejobs.runtime.system", True),
        ("from pipelinejobs.adapters.bus import base", "pipelinejobs.domain.jobs", True),
        ("from ..runtime import dispatch", "pipelinejobs.domain.jobs", True),
        ("import subprocess", "pipelinejobs.adapters.launchers.local", False),
        ("from pipelinejobs.adapters.store.base import Store", "pipelinejobs.domain.jobs", False),
        ("from pipelinejobs.domain import lifecycle", "pipelinejobs.gateway.read_api", False),
        ("from pipelinejobs.errors import NotFound", "pipelinejobs.domain.jobs", False),
        ("import re2, json", "pipelinejobs.domain.components", False),
    ],
)
def test_the_layer_checker(source: str, module: str, bad: bool) -> None:
    assert bool(layer_violations(source, module)) is bad


# -- the code base ---------------------------------------------------------------------------


def test_there_are_modules_to_check() -> None:
    names = {module_name(p) for p in actor_modules()}
    assert {
        "pipelinejobs.actors.pipelines_manager",
        "pipelinejobs.actors.jobs_manager",
        "pipelinejobs.actors.jobs_indexer",
        "pipelinejobs.actors.launcher_proxy",
    } <= names
    assert set(LAYERS) <= {layer_of(module_name(p)) for p in package_modules()}


@pytest.mark.parametrize("path", actor_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_actor_imports_another_actor(path: Path) -> None:
    module = module_name(path)
    bad = foreign_actor_imports(path.read_text(), module, path.name == "__init__.py")
    assert bad == [], f"{module} imports {bad}: actors talk only through Context.send"


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_package_never_imports_actors_statically(path: Path) -> None:
    module = module_name(path)
    bad = actors_imported(path.read_text(), module, path.name == "__init__.py")
    assert bad == [], f"{module} imports {bad}: the runtime loads actors by name only"


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_imports_only_its_layer_and_those_below(path: Path) -> None:
    module = module_name(path)
    bad = layer_violations(path.read_text(), module, path.name == "__init__.py")
    assert bad == [], f"{module} (layer {layer_of(module)}) imports {bad}"
