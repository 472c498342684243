"""What deploys: the wheel (every module and template, the demo running from it), requirements.txt and app.json."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.config import REQUIRED, VARIABLES, Variable
from tests.botprocess import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SOURCES = ("pyproject.toml", "README.md", "bot", "templates")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline from a copy of its sources (the checkout gets no build/ folder)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out)]
    subprocess.run([*command, str(source)], check=True, capture_output=True, timeout=120)
    [built] = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed on its own (the venv's dependencies are reused through PYTHONPATH)."""
    target = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target)]
    subprocess.run([*command, str(wheel)], check=True, capture_output=True, timeout=120)
    return target


def test_the_wheel_holds_every_module_and_every_template(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "bot").rglob("*.py")}
    templates = {f"bot/{path.relative_to(ROOT).as_posix()}" for path in (ROOT / "templates").rglob("*.md.j2")}

    assert "bot/commands/routes.py" in modules and "bot/templates/en/help.md.j2" in templates
    assert modules <= names
    assert templates <= names


def test_the_installed_package_runs_the_demo_from_any_directory(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import bot.cards.render as r, bot.commands.routes as h; print(r.TEMPLATES_DIR, h.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    templates, handlers = where.stdout.split()
    assert Path(templates) == installed / "bot" / "templates"
    assert Path(handlers).is_relative_to(installed)

    demo = subprocess.run(
        [sys.executable, "-m", "bot", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )

    assert demo.returncode == 0, demo.stderr
    assert "Traceback" not in demo.stderr
    for title in ("📅 Calendar bot", "✅ Unsubscribed", "✅ 已取消订阅", "🐢 Slow down, please"):
        assert title in demo.stdout


class Pin(NamedTuple):
    version: str
    hashes: frozenset[str]
    applies_here: bool  # False when its environment marker excludes this platform (e.g. win32 only)


def pins(name: str) -> dict[str, Pin]:
    """A file uv wrote with --generate-hashes: canonical name -> its pin, hashes and whether it applies here."""
    found: dict[str, Pin] = {}
    for entry in re.split(r"\n(?=\S)", (ROOT / name).read_text()):
        entry = "\n".join(line for line in entry.splitlines() if not line.lstrip().startswith("#")).strip()
        if not entry:
            continue
        head, *options = [part.strip() for part in entry.split("\\")]
        requirement = Requirement(head)
        [spec] = requirement.specifier
        assert spec.operator == "==", f"{name}: {head} is not pinned exactly"
        hashes = frozenset(option.removeprefix("--hash=") for option in options if option)
        assert hashes and all(value.startswith("sha256:") for value in hashes), f"{name}: {head} has no hashes"
        here = requirement.marker is None or requirement.marker.evaluate({"extra": ""})
        found[canonicalize_name(requirement.name)] = Pin(spec.version, hashes, here)
    return found


def closure(direct: list[str]) -> set[str]:
    """Every distribution the direct dependencies need on this platform, from the installed packages' metadata."""
    needed: set[str] = set()
    todo = [Requirement(line) for line in direct]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in needed or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        needed.add(name)
        todo += [Requirement(line) for line in metadata.requires(requirement.name) or []]
    return needed


RUNTIME = PYPROJECT["project"]["dependencies"]
EVERYTHING = RUNTIME + PYPROJECT["project"]["optional-dependencies"]["test"]


@pytest.mark.parametrize("line", EVERYTHING)
def test_the_lock_pins_each_dependency_and_test_tool_at_pyprojects_version(line: str) -> None:
    requirement = Requirement(line)
    [spec] = requirement.specifier
    assert spec.operator == "==", f"pyproject.toml: pin {line} exactly"
    assert pins("requirements.lock")[canonicalize_name(requirement.name)].version == spec.version, line


def test_the_lock_holds_the_whole_tree_and_nothing_else() -> None:
    lock = pins("requirements.lock")
    here = {name for name, pin in lock.items() if pin.applies_here}
    needed = closure(EVERYTHING)

    assert sorted(needed - here) == [], "needed but not in requirements.lock: run the lock command in the README"
    assert sorted(here - needed) == [], "in requirements.lock but nothing in pyproject.toml needs it"


def test_the_tests_run_on_exactly_the_locked_versions() -> None:
    for name, pin in pins("requirements.lock").items():
        if pin.applies_here:
            assert metadata.version(name) == pin.version, f"{name}: locked at {pin.version}, installed another"


def test_herokus_requirements_are_the_locks_runtime_part() -> None:
    lock, deployed = pins("requirements.lock"), pins("requirements.txt")
    here = {name for name, pin in deployed.items() if pin.applies_here}

    assert sorted(here ^ closure(RUNTIME)) == [], (
        "requirements.txt is not the runtime tree: regenerate it from the lock"
    )
    for name, pin in deployed.items():
        assert pin == lock[name], f"{name}: requirements.txt and requirements.lock disagree"


def app_json_env() -> dict[str, dict[str, object]]:
    env: dict[str, dict[str, object]] = json.loads((ROOT / "app.json").read_text())["env"]
    return env


def test_app_json_lists_exactly_the_variables_of_the_configuration() -> None:
    assert list(app_json_env()) == [variable.name for variable in VARIABLES]


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda variable: variable.name)
def test_app_json_gives_each_variable_its_default_and_whether_it_is_required(variable: Variable) -> None:
    entry = app_json_env()[variable.name]

    assert entry["required"] is (variable.default == REQUIRED)
    assert entry.get("value") == (None if variable.default.startswith("(") else variable.default)
    assert isinstance(entry["description"], str) and len(entry["description"]) > 10


def test_the_procfile_offers_a_worker_and_a_web_process_the_worker_scaled_up_and_the_python_version_is_pinned() -> None:
    assert (ROOT / "Procfile").read_text().splitlines() == ["worker: python -m bot", "web: python -m bot"]
    formation = json.loads((ROOT / "app.json").read_text())["formation"]
    assert {kind: scale["quantity"] for kind, scale in formation.items()} == {"worker": 1, "web": 0}
    assert re.fullmatch(r"3\.11(\.\d+)?", (ROOT / ".python-version").read_text().strip())


def _tracked_text_files() -> Iterator[Path]:
    for folder in ("bot", "templates"):
        yield from (path for path in (ROOT / folder).rglob("*") if path.suffix in (".py", ".j2"))
    yield ROOT / "README.md"
    yield from (ROOT / "docs").glob("*.md")


def test_no_tracker_numbers_in_the_readme_the_code_or_the_templates() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {match.group()}"
        for path in _tracked_text_files()
        for match in re.finditer(r"(?i)\b(issue|ticket|bug|pr)\s*#\s*\d+|(?<![\w&])#\d+\b", path.read_text())
    ]
    assert found == []


def test_the_admin_guides_configuration_table_lists_every_variable() -> None:
    guide = (ROOT / "docs" / "admin.md").read_text()
    rows = re.findall(r"^\| `([A-Z_]+)` \|", guide, re.MULTILINE)

    assert rows == [variable.name for variable in VARIABLES]
