"""Every DVC stage depends on the code that determines its output: the package modules its CLI
module imports (transitively, inside functions too), read from the source, not hard-coded."""

import ast
from pathlib import Path

import pytest
import yaml

from tests.pipelines.conftest import REPO

#: The CLI module each stage runs (the subcommand's module; the CLI dispatcher is left out).
STAGE_CLI = {
    "prepare": "neurosam3d.cli.prepare",
    "combine": "neurosam3d.cli.combine",
    "train": "neurosam3d.cli.train",
    "evaluate": "neurosam3d.cli.evaluate",
    "register": "neurosam3d.cli.register",
}
_DISPATCHER = REPO / "neurosam3d" / "cli" / "__init__.py"


def _module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> set[str]:
    package = path.parent.relative_to(REPO).as_posix().replace("/", ".")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def code_of(module: str) -> set[Path]:
    """The package files ``module`` imports, transitively (every prefix package included)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):
            if parts[0] != "neurosam3d":
                break
            found = _module_file(".".join(parts[:i]))
            if found and found not in seen and found != _DISPATCHER:
                seen.add(found)
                todo.extend(_imported(found))
    return seen


@pytest.mark.parametrize("stage", sorted(STAGE_CLI))
def test_stage_depends_on_every_module_it_imports(stage: str) -> None:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    deps = [REPO / d for d in (spec.get("do") or spec)["deps"] if not d.startswith("$")]
    code = code_of(STAGE_CLI[stage])
    assert REPO / (STAGE_CLI[stage].replace(".", "/") + ".py") in code
    uncovered = sorted(
        str(f.relative_to(REPO)) for f in code if not any(f == d or d in f.parents for d in deps)
    )
    assert not uncovered, f"dvc.yaml stage {stage} lacks code deps on {uncovered}"
    if REPO / "neurosam3d" / "taxonomy.py" in code:  # its rules are packaged data
        assert REPO / "neurosam3d" / "resources" in deps
