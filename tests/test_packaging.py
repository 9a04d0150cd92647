"""One import name: the installed code is `pipelinejobs` and nothing else.

pyproject.toml maps the design card's folders (common/, actors/, schemas/) onto the
`pipelinejobs` package; these tests keep that list whole and show, from outside the
repository, that `common`, `actors` and `schemas` are not importable while every
`pipelinejobs` module is.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"pipelinejobs": "common", "pipelinejobs.actors": "actors"}


def declared() -> tuple[list[str], dict[str, str]]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setuptools["packages"], setuptools["package-dir"]


def test_every_package_folder_is_declared() -> None:
    packages, mapping = declared()
    found = {"pipelinejobs.schemas"}
    for name, folder in FOLDERS.items():
        assert mapping[name] == folder
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([name, *rel]))
    assert sorted(found) == sorted(packages)


def test_only_pipelinejobs_is_importable_from_outside_the_repository(tmp_path: Path) -> None:
    probe = (
        "import importlib, importlib.util as u\n"
        "for name in ('common', 'actors', 'schemas'):\n"
        "    assert u.find_spec(name) is None, name\n"
        "import pipelinejobs.cli, pipelinejobs.actors.jobs_manager\n"
        "from importlib import resources\n"
        "assert resources.files('pipelinejobs.schemas').joinpath('pipelinejob.json').is_file()\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH: only what is installed
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
