"""The layers (conversion -> training -> edgetrack) as the import-linter contract in
pyproject.toml states them: kept by the tree, broken by an upward import, and the base and the
CLI import without torch."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgetrack", "training", "conversion")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` run in ``root`` (its pyproject.toml, its packages first on the path)."""
    pytest.importorskip("importlinter")
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"})


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The three packages (Python files only) and pyproject.toml, copied."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pth", "*.json"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _inject(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_the_contract() -> None:
    p = lint_imports(ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 kept, 0 broken" in p.stdout


@pytest.mark.parametrize("module, line, broken", [
    # the base reaching up to training (the copy is the only change)
    ("edgetrack/geometry.py", "import training.losses  # noqa", "edgetrack.geometry -> training.losses"),
    # the CLI outside the commands that are allowed to
    ("edgetrack/cli/_common.py", "from conversion import export  # noqa", "edgetrack.cli._common -> conversion.export"),
    # training reaching up to conversion
    ("training/losses.py", "import conversion.official  # noqa", "training.losses -> conversion.official"),
    # torch in the base
    ("edgetrack/metrics.py", "import torch  # noqa", "edgetrack.metrics -> torch"),
])
def test_an_upward_import_breaks_the_contract(tree_copy: Path, module: str, line: str, broken: str) -> None:
    assert lint_imports(tree_copy).returncode == 0  # the copy keeps it before the change
    _inject(tree_copy / module, line)
    p = lint_imports(tree_copy)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "1 kept, 1 broken" in p.stdout and broken in p.stdout


def test_base_and_cli_import_without_torch() -> None:
    """Every edgetrack module, the CLI and each command module import with torch and nncf made
    unimportable, and none of them loads training or conversion: the CLI reaches up only when a
    command runs (what import-linter cannot tell apart from a module-level import)."""
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['nncf'] = None\n"
        "import importlib, pkgutil, edgetrack, edgetrack.cli\n"
        "names = [m.name for m in pkgutil.walk_packages(edgetrack.__path__, 'edgetrack.') if m.name != 'edgetrack.cli.__main__']\n"
        "for name in names: importlib.import_module(name)\n"
        "assert {f'edgetrack.cli.{c}' for c in edgetrack.cli.COMMANDS} <= set(names)\n"
        "up = sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'conversion'))\n"
        "print(len(names), up)\n"
        "sys.exit(1 if up else 0)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stdout + p.stderr
    assert int(p.stdout.split()[0]) > 30  # it did walk the package


def test_python_m_edgetrack_cli() -> None:
    p = subprocess.run([sys.executable, "-m", "edgetrack.cli", "--help"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    assert p.returncode == 0, p.stderr
    from edgetrack.cli import COMMANDS

    listed = [line.split()[1] for line in p.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
    assert [c for c in listed if c in COMMANDS] == list(COMMANDS)


def test_torch_free_config_names_match_the_registry() -> None:
    """edgetrack.architectures (what --arch help lists, torch-free) is the torch registry's list."""
    pytest.importorskip("torch")
    from edgetrack.architectures import ARCHITECTURES, list_configs
    from training.models import CONFIGS

    assert ARCHITECTURES == {name: cfg.arch for name, cfg in CONFIGS.items()}
    assert list_configs() == sorted(CONFIGS)
    assert list_configs("mixvit") == sorted(n for n, c in CONFIGS.items() if c.arch == "mixvit")
    with pytest.raises(ValueError, match="kind 'vit'"):
        list_configs("vit")


def test_arch_help_lists_every_configuration() -> None:
    from typer.testing import CliRunner

    from edgetrack.architectures import list_configs
    from edgetrack.cli import app

    for cmd, kinds in (("convert", ("mixformerv2",)), ("train", ("mixformerv2", "mixvit"))):
        out = CliRunner().invoke(app, [cmd, "--help"], env={"COLUMNS": "400"}).output
        for kind in kinds:
            for name in list_configs(kind):
                assert name in out, (cmd, name)
