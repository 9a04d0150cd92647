"""Actors talk only by messages: no actor module imports another, and ``common``
never imports ``actors`` statically (the runtime loads them by name).

The checks read the source with :mod:`ast`, so an import hidden inside a function
or an ``if TYPE_CHECKING:`` block is found too. The checker itself is tested on
small sources first, so a checker that finds nothing cannot pass by accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACTORS = ROOT / "actors"
COMMON = ROOT / "common"


def module_name(path: Path) -> str:
    """``actors/jobs_manager.py`` -> ``actors.jobs_manager``; packages drop ``__init__``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module an import statement in ``source`` names, made absolute.

    ``from X import a, b`` yields ``X.a`` and ``X.b`` as well as ``X``: the names may
    be submodules (``from actors import jobs_manager``).
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
    """``actors.x`` and ``actors.x.y`` belong to actor ``x``; ``actors`` itself to none."""
    parts = module.split(".")
    if parts[0] != "actors":
        return None
    return parts[1] if len(parts) > 1 else ""


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
    """Imports in a ``common`` module that reach ``actors`` at all."""
    targets = imported_modules(source, module, is_package)
    return sorted({t for t in targets if actor_of(t) is not None})


def actor_modules() -> list[Path]:
    return sorted(p for p in ACTORS.rglob("*.py") if p != ACTORS / "__init__.py")


# -- the checker, on known sources --------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import actors.jobs_manager",
        "import actors.jobs_manager as jm",
        "import actors",
        "from actors import jobs_manager",
        "from actors.jobs_manager import ACTOR",
        "from actors.jobs_manager.helpers import x",
        "from . import jobs_manager",
        "from .jobs_manager import ACTOR",
        "from .. import actors",
        "def f():\n    from actors import jobs_indexer\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import actors.jobs_indexer\n",
    ],
)
def test_the_checker_finds_imports_of_other_actors(source: str):
    assert foreign_actor_imports(source, "actors.launcher_proxy")


@pytest.mark.parametrize(
    "source",
    [
        "import common.runtime",
        "from common import schemas",
        "from common.launchers import Launch",
        "import importlib\nimportlib.import_module('actors.jobs_manager')",
        "import json, re",
        "from __future__ import annotations",
    ],
)
def test_the_checker_allows_common_and_the_standard_library(source: str):
    assert foreign_actor_imports(source, "actors.launcher_proxy") == []


def test_the_checker_allows_an_actor_packages_own_modules():
    inside = "actors.launcher_proxy.backends"
    assert foreign_actor_imports("from . import helpers", inside) == []
    assert foreign_actor_imports("from .helpers import x", inside) == []
    assert foreign_actor_imports("from actors.launcher_proxy import helpers", inside) == []
    assert foreign_actor_imports("from ..jobs_manager import ACTOR", inside) == [
        "actors.jobs_manager",
        "actors.jobs_manager.ACTOR",
    ]


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import actors", True),
        ("from actors import launcher_proxy", True),
        ("if True:\n    from actors.jobs_manager import ACTOR\n", True),
        ("from .. import actors", True),
        ("from . import schemas", False),
        ("importlib.import_module('actors.jobs_manager')", False),
        ("import actorsish", False),
    ],
)
def test_the_checker_finds_actors_imported_by_common(source: str, found: bool):
    assert bool(actors_imported(source, "common.runtime")) is found


def test_relative_imports_resolve_against_the_package():
    assert imported_modules("from .x import y", "actors.a") == ["actors.x", "actors.x.y"]
    assert imported_modules("from . import y", "actors.a", is_package=True) == [
        "actors.a",
        "actors.a.y",
    ]
    assert imported_modules("from .. import y", "actors.a.b") == ["actors", "actors.y"]


# -- the code base ---------------------------------------------------------------------------


def test_there_are_actor_modules_to_check():
    names = {module_name(p) for p in actor_modules()}
    assert {
        "actors.pipelines_manager",
        "actors.jobs_manager",
        "actors.jobs_indexer",
        "actors.launcher_proxy",
    } <= names


@pytest.mark.parametrize("path", actor_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_actor_imports_another_actor(path: Path):
    module = module_name(path)
    bad = foreign_actor_imports(path.read_text(), module, path.name == "__init__.py")
    assert bad == [], f"{module} imports {bad}: actors talk only through Context.send"


def test_common_never_imports_actors_statically():
    offenders = {}
    paths = sorted(COMMON.rglob("*.py"))
    assert paths
    for path in paths:
        module = module_name(path)
        bad = actors_imported(path.read_text(), module, path.name == "__init__.py")
        if bad:
            offenders[module] = bad
    assert offenders == {}, f"common must load actors by name only: {offenders}"
