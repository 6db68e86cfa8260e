"""The package's shape: no import cycles, imports point down, nothing imports the CLI, the wheel holds it all."""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "arc_kit"

# Layers, lowest first (ARCHITECTURE.md): a module may import its own layer and those below, never above.
LAYERS = [
    ("package", {"arc_kit"}),  # arc_kit/__init__.py: the version
    ("base", "arc_kit.base"),  # arc_kit/base/: errors, files, config, progress
    (
        "core",
        {
            "arc_kit.data",
            "arc_kit.augment",
            "arc_kit.encoding",
            "arc_kit.crops",
            "arc_kit.identifiers",
            "arc_kit.shipped_identifiers",
            "arc_kit.predictions",
            "arc_kit.vote",
            "arc_kit.scoring",
            "arc_kit.submission",
            "arc_kit.render",
            "arc_kit.infer",
            "arc_kit.revote",
            "arc_kit.consistency",
            "arc_kit.report_html",
            "arc_kit.report_assets",
        },
    ),
    ("model", "arc_kit.model"),
    ("run", "arc_kit.run"),
    ("kaggle", "arc_kit.kaggle"),
    ("cli", "arc_kit.cli"),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every arc_kit module `path` imports, at the top or inside a function (both count for cycles and layers)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "arc_kit":
            assert node.level == 0, f"{path}: relative import"
            for alias in node.names:  # `from arc_kit.model import trm` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (the kit uses absolute imports)")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "arc_kit")
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    mods = all_modules()
    return {m: imports_of(p, set(mods)) - {m} for m, p in mods.items()}


def layer(mod: str) -> int:
    for i, (_, spec) in enumerate(LAYERS):
        if (isinstance(spec, set) and mod in spec) or (
            isinstance(spec, str) and (mod == spec or mod.startswith(spec + "."))
        ):
            return i
    raise AssertionError(f"{mod}: in no layer: add it to LAYERS and to ARCHITECTURE.md")


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_imports_point_down_the_layers_and_nothing_imports_the_cli():
    bad = [
        f"{m} ({LAYERS[layer(m)][0]}) imports {n} ({LAYERS[layer(n)][0]})"
        for m, deps in graph().items()
        for n in deps
        if layer(n) > layer(m)
    ]
    assert not bad, "\n".join(bad)
    assert all(layer(m) is not None for m in graph())


def test_every_module_has_a_one_line_docstring():
    for _mod, path in all_modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
        assert doc and doc.strip(), f"{path}: no module docstring"
        assert "\n" not in doc.strip().split("\n\n")[0], f"{path}: the first docstring paragraph is not one line"


@pytest.mark.e2e
def test_the_wheel_holds_every_sub_package_and_imports_from_it(tmp_path):
    """pyproject lists packages explicitly: a new sub-package must reach the wheel the Kaggle notebook installs."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("arc_kit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for _mod, path in all_modules().items():
        assert str(path.relative_to(ROOT)) in names, f"{path.relative_to(ROOT)} is not in {wheel.name}"
    for path in sorted((PACKAGE / "starter").iterdir()):  # the shipped starter model is package data
        assert str(path.relative_to(ROOT)) in names, f"{path.relative_to(ROOT)} is not in {wheel.name}"
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    packages = sorted({m for m in all_modules() if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()})
    code = (
        f"import importlib, arc_kit; assert arc_kit.__file__.startswith({str(site)!r}), arc_kit.__file__; "
        f"[importlib.import_module(m) for m in {packages!r}]; "
        "from arc_kit.base.config import resolve_config_path; print(resolve_config_path('cpu-demo')); "
        "from arc_kit.model.starter import resolve_checkpoint, verify_manifest; d = resolve_checkpoint('starter'); "
        "assert not verify_manifest(d); print(d)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    config_path, starter_path = r.stdout.split()
    assert config_path.startswith(str(site))  # the shipped configs come from the wheel too
    assert starter_path.startswith(str(site))  # and `--checkpoint starter` finds the model in it (Kaggle)


def test_no_module_exceeds_450_lines():
    # the team guide's hard limit: a longer module holds more than one concept; split it by concept
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "arc_kit").rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not long, f"modules over 450 lines: {long}"
