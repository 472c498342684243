"""The bot's packages import only downwards (models … sandbox) and never in a circle: every import statement of every
module, function-level and TYPE_CHECKING ones included, read with ast."""

from __future__ import annotations

import ast
import gc
from collections.abc import Iterator
from pathlib import Path

# Low to high: a unit may import its own layer's other units (without a circle) and any lower layer, never a higher
# one. A unit is a folder of bot/ or a top-level module; `__init__` is bot/__init__.py (the version).
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__init__", "models", "config", "logs", "telemetry", "template_files"}),
    frozenset({"stores"}),
    frozenset({"dingtalk"}),
    frozenset({"auth"}),
    frozenset({"commands"}),
    frozenset({"cards"}),
    frozenset({"stream"}),
    frozenset({"pipeline", "wiring"}),
    frozenset({"sandbox", "__main__"}),
)
LAYER_OF = {unit: height for height, units in enumerate(LAYERS) for unit in units}


def _bot_folder() -> Path:
    here = Path(__file__).resolve()
    return next(parent / "bot" for parent in here.parents if (parent / "bot" / "__init__.py").is_file())


BOT = _bot_folder()


def _module_name(path: Path) -> str:
    parts = path.relative_to(BOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str | None:
    """The unit a module of the bot belongs to; None for anything outside bot/."""
    parts = module.split(".")
    if parts[0] != "bot":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _parse(path: Path) -> ast.Module:
    # CPython 3.11's ast.parse raises SystemError ("AST constructor recursion depth mismatch") when a collection inside
    # it runs a finalizer that parses too: an earlier test's unretrieved task logging its traceback does (seen once).
    gc.disable()
    try:
        return ast.parse(path.read_text("utf-8"), str(path))
    finally:
        gc.enable()


def _imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every module this file imports, wherever the import statement stands."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from bot import app` imports the unit `app`, not bot/__init__.py
            yield from ((node.lineno, f"{base}.{alias.name}" if base == "bot" else base) for alias in node.names)


def _edges() -> Iterator[tuple[str, int, str, str]]:
    """(file, line, importing unit, imported unit) for every import of one unit by another."""
    for path in sorted(BOT.rglob("*.py")):
        source = _unit(_module_name(path))
        for line, module in _imported(path):
            target = _unit(module)
            if source is not None and target is not None and target != source:
                if target == "__init__" or (BOT / target).is_dir() or (BOT / f"{target}.py").is_file():
                    yield str(path.relative_to(BOT.parent)), line, source, target
                else:  # `from bot import __version__`: a name of bot/__init__.py
                    yield str(path.relative_to(BOT.parent)), line, source, "__init__"


def test_every_unit_of_the_bot_has_a_layer() -> None:
    units = {path.name for path in BOT.iterdir() if (path / "__init__.py").is_file()}
    units |= {path.stem for path in BOT.glob("*.py")}
    unplaced = sorted(units - LAYER_OF.keys())
    assert not unplaced, f"place each folder or top-level module of bot/ in LAYERS: {unplaced}"


def test_no_unit_imports_a_higher_layer() -> None:
    upwards = [
        f"{file}:{line}: {source} (layer {LAYER_OF[source]}) imports {target} (layer {LAYER_OF[target]})"
        for file, line, source, target in _edges()
        if LAYER_OF[target] > LAYER_OF[source]
    ]
    assert not upwards, "\n".join(upwards)


def test_no_import_cycle_between_units() -> None:
    imports: dict[str, set[str]] = {}
    for _file, _line, source, target in _edges():
        imports.setdefault(source, set()).add(target)
    cycles = {" → ".join(cycle) for unit in imports for cycle in _cycles_from(unit, imports)}
    assert not cycles, "\n".join(sorted(cycles))


def _cycles_from(start: str, imports: dict[str, set[str]]) -> Iterator[list[str]]:
    """Every simple path from `start` back to it (a few dozen units: a plain depth-first walk)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        unit, path = stack.pop()
        for imported in sorted(imports.get(unit, ())):
            if imported == start:
                yield [*path, start]
            elif imported not in path:
                stack.append((imported, [*path, imported]))
