"""The package's shape (issue 22): packages by direction, each saying in its `__init__` what it
may import, and the code holding to it.

- every import between packages is one its `__init__` docstring allows (`May import: …`), and
  the neutral top-level modules import only what `NEUTRAL` says: nothing imports upward, and
  neither direction imports the other;
- no leading-underscore name is imported from another package;
- no module is over 500 lines, and the top level holds at most 12 modules.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "data_migration"
# The assembly: may import anything (nothing imports it but the assembly itself).
ASSEMBLY = {"__init__", "definitions", "components", "cli", "console", "resources", "schedules", "alerts"}
# Top-level modules both directions share; each may import only these units.
NEUTRAL = {
    "errors": {"files"},  # a storage conflict is not worth retrying
    "conventions": {"config"},
    "dagster_private": set(),
    "shutdown": set(),
}
MAX_LINES = 500
MAX_TOP_LEVEL_MODULES = 12


def unit(module: str) -> str:
    """The package (or top-level module) a dotted module name belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> list[tuple[Path, str, str, str]]:
    """(file, its unit, the unit it imports from, the name imported) for every project import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        source = "__init__" if module == "data_migration" else unit(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "data_migration":
                for alias in node.names:
                    target = node.module if node.module != "data_migration" else f"data_migration.{alias.name}"
                    found.append((path, source, unit(target), alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "data_migration":
                        found.append((path, source, unit(alias.name), alias.name))
    return found


def allowed_by_docstring(package: str) -> set[str]:
    """The units a package's `__init__` docstring says it may import: the backticked names after
    `May import:`, up to `; never` or the end of the paragraph."""
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    match = re.search(r"May import:(.*?)(?:; never|\n\n|$)", doc, re.DOTALL)
    assert match, f"data_migration/{package}/__init__.py does not say what it may import (`May import: …`)"
    return {name.split(".")[0] for name in re.findall(r"`([a-z_.]+)`", match.group(1))}


PACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())


def allowed() -> dict[str, set[str]]:
    return {**{package: allowed_by_docstring(package) for package in PACKAGES}, **NEUTRAL}


def test_every_unit_is_assembly_neutral_or_a_package():
    top = {p.stem for p in PACKAGE.glob("*.py")} | set(PACKAGES)
    assert top - {"__init__"} <= ASSEMBLY | set(NEUTRAL) | set(PACKAGES)
    assert not ASSEMBLY & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_its_docstring_allows(package: str):
    rules = allowed()
    wrong = sorted(
        f"{path.relative_to(PACKAGE.parent)} imports {name} from {target}"
        for path, source, target, name in imports()
        if source == package and target != source and target not in rules[package]
    )
    assert not wrong, "\n".join(wrong)


def test_neutral_modules_import_only_their_own_allowance():
    wrong = sorted(
        f"{path.relative_to(PACKAGE.parent)} imports {name} from {target}"
        for path, source, target, name in imports()
        if source in NEUTRAL and target != source and target not in NEUTRAL[source]
    )
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_assembly_and_the_units_form_no_cycle():
    upward = sorted(
        f"{path.relative_to(PACKAGE.parent)} imports {name} from {target}"
        for path, source, target, name in imports()
        if target in ASSEMBLY and source not in ASSEMBLY
    )
    assert not upward, "\n".join(upward)
    graph: dict[str, set[str]] = defaultdict(set)
    for _, source, target, _ in imports():
        if source != target:
            graph[source].add(target)
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"the units import each other in a cycle: {' -> '.join(error.args[1])}") from None
    # The two directions never import each other.
    assert "loads" not in graph["exports"] and "exports" not in graph["loads"]


def test_no_private_name_crosses_a_package():
    private = sorted(
        f"{path.relative_to(PACKAGE.parent)} imports {name} from {target}"
        for path, source, target, name in imports()
        if source != target and name.split(".")[-1].startswith("_")
    )
    assert not private, "\n".join(private)


def test_modules_are_small_and_the_top_level_is_the_assembly():
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_the_rules_catch_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The checks above read real files; one planted upward import must fail them."""
    planted = tmp_path / "data_migration"
    for path in PACKAGE.rglob("*.py"):
        target = planted / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (planted / "config" / "planted.py").write_text("from data_migration.snowflake.queries import run_statement\n")
    (planted / "loads" / "planted.py").write_text("from data_migration.exports.assets import _description\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", planted)
    with pytest.raises(AssertionError, match="config/planted.py imports run_statement"):
        test_a_package_imports_only_what_its_docstring_allows("config")
    with pytest.raises(AssertionError, match="loads/planted.py imports _description"):
        test_no_private_name_crosses_a_package()
    with pytest.raises(AssertionError, match="a cycle: .*(config -> snowflake|snowflake -> config)"):
        test_nothing_imports_the_assembly_and_the_units_form_no_cycle()
