"""The package's shape: no import cycles, imports point down, nothing imports the CLI, the wheel holds it all,
no module over 450 lines; and the user docs cite only what exists.

Docs citations (CONTRIBUTING.md, "Docs"): inside inline code spans and fenced code blocks of README.md and
docs/*.md, a token `arc_kit.a.b` names a module, or an attribute reached from the longest importable module
prefix; a token `<section>.<field>[.<field>...]` whose first part is a field of RunConfig (`ttt.row_init`,
`model.arch.halt_max_steps`, `inference.views=8`) names a run-config key, walked through the dataclasses. A
token whose last part is a file extension (`tasks.json`, `model.safetensors`) is a file name, not a key; a
token inside a path (`runs/x/model.safetensors`, `configs/cpu-demo.yaml`) is not a citation either.
"""

import ast
import dataclasses
import importlib
import re
import subprocess
import sys
import typing
import zipfile
from pathlib import Path

import pytest

from arc_kit.run.config import RunConfig

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
            "arc_kit.invariants",
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


# ---- the docs cite only what exists ----------------------------------------------------------------------
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

FILE_EXTENSIONS = {
    "json", "jsonl", "yaml", "yml", "md", "py", "safetensors", "npz", "txt", "log", "gz", "whl", "ipynb",
    "png", "svg", "toml", "sh",
}  # fmt: skip
SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"(`+)(.+?)\1", re.S)
# not preceded by a word character, a dot, a slash or a hyphen: `runs/x/model.safetensors` is a path
_ARC_KIT_NAME = re.compile(r"(?<![\w./-])arc_kit(?:\.\w+)+")
_CONFIG_KEY = re.compile(r"(?<![\w./-])(?:" + "|".join(SECTIONS) + r")(?:\.\w+)+")


def code_spans(text: str) -> list[str]:
    """The contents of fenced code blocks and inline code spans, in order."""
    blocks = _FENCE.findall(text)
    prose = _FENCE.sub("", text)
    return blocks + [m.group(2) for m in _INLINE.finditer(prose)]


def cited_names(text: str) -> set[str]:
    return {m.group(0) for span in code_spans(text) for m in _ARC_KIT_NAME.finditer(span)}


def cited_keys(text: str) -> set[str]:
    keys = set()
    for span in code_spans(text):
        for m in _CONFIG_KEY.finditer(span):
            key = m.group(0)
            if key.rsplit(".", 1)[1] not in FILE_EXTENSIONS:
                keys.add(key)
    return keys


def resolves(name: str) -> bool:
    """An importable module, or an attribute chain from the longest importable module prefix."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        for attr in parts[n:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def config_key_exists(key: str) -> bool:
    """Walk RunConfig's dataclass fields (model.arch -> TRMConfig, ttt.train -> TrainConfig)."""
    cls: typing.Any = RunConfig
    for part in key.split("."):
        if cls is None or part not in {f.name for f in dataclasses.fields(cls)}:
            return False
        hint = typing.get_type_hints(cls)[part]
        cls = hint if dataclasses.is_dataclass(hint) else None
    return True


def renamed_keys(cls: typing.Any = RunConfig, prefix: str = "") -> set[str]:
    """Every old key a RunConfig dataclass's `RENAMED` table still answers (with an error naming the new one)."""
    out = {prefix + old for old in getattr(cls, "RENAMED", {})}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            out |= renamed_keys(hint, f"{prefix}{f.name}.")
    return out


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_the_checker_finds_and_rejects_what_it_should():
    text = (
        "Set `ttt.row_init: mean` and `ttt.no_such_key`; see `arc_kit.crops.BUCKETS` and `arc_kit.crops.NOPE`.\n"
        "Files `tasks.json`, `runs/x/model.safetensors`, `model.safetensors` are not keys.\n"
        "```bash\narc-kit run --config cpu-demo model.arch.halt_max_steps=1 inference.views=8\n"
        "python -m arc_kit.no_such_module\n```\n"
    )
    keys, names = cited_keys(text), cited_names(text)
    assert keys == {"ttt.row_init", "ttt.no_such_key", "model.arch.halt_max_steps", "inference.views"}
    assert names == {"arc_kit.crops.BUCKETS", "arc_kit.crops.NOPE", "arc_kit.no_such_module"}
    assert [k for k in sorted(keys) if not config_key_exists(k)] == ["ttt.no_such_key"]
    assert [n for n in sorted(names) if not resolves(n)] == ["arc_kit.crops.NOPE", "arc_kit.no_such_module"]
    assert not config_key_exists("voting.strategy")  # voting is a name, not a section with fields
    assert not config_key_exists("model.arch.halt_max_steps.x")


def test_every_cited_arc_kit_name_resolves():
    cited = {(p.relative_to(ROOT).as_posix(), n) for p in doc_files() for n in cited_names(p.read_text())}
    assert len(cited) >= 5, "the docs cite arc_kit names; finding almost none means the extraction broke"
    missing = sorted(f"{where}: {name}" for where, name in cited if not resolves(name))
    assert not missing, "docs cite arc_kit names that do not exist:\n" + "\n".join(missing)


def test_every_cited_config_key_exists():
    cited = {(p.relative_to(ROOT).as_posix(), k) for p in doc_files() for k in cited_keys(p.read_text())}
    assert len({k for _, k in cited}) >= 50, "the configuration reference cites every key; extraction broke?"
    renamed = renamed_keys()  # old names: cited only by the page that lists them with their new names
    missing = sorted(
        f"{where}: {key}"
        for where, key in cited
        if not config_key_exists(key) and not (where == "docs/renamed-config-keys.md" and key in renamed)
    )
    assert not missing, "docs cite run-config keys that RunConfig does not have:\n" + "\n".join(missing)


def test_the_configuration_reference_lists_every_run_config_key():
    def leaves(cls, prefix):
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                yield from leaves(hint, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    documented = cited_keys((DOCS / "configuration.md").read_text())
    nested = [k for k in leaves(RunConfig, "") if "." in k]  # `name` and `voting` are plain top-level keys
    assert sorted(k for k in nested if k not in documented) == []


def test_readme_is_short_and_its_docs_links_exist():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#\s]*)", text)
    assert links, "the README links to the docs pages"
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_every_docs_page_is_in_the_index():
    index = (DOCS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)", index))
    assert sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.name not in linked) == []


def _readme_commands() -> list[str]:
    return [
        line.split("  #")[0].strip()
        for block in _FENCE.findall(README.read_text())
        for line in block.splitlines()
        if line.startswith("pip install")
    ]


def test_readme_setup_is_two_commands_and_ci_runs_the_test_command_verbatim():
    main = [c for c in _readme_commands() if "arc-kit run" in c]
    tests = [c for c in _readme_commands() if "pytest" in c]
    assert len(main) == 1 and len(tests) == 1, (main, tests)
    # the main job works with the base install: no extra in the install half of the command
    assert "[" not in main[0].split("&&")[0], main[0]
    ci_lines = [line.split("  #")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests[0] in ci_lines, f".ci/run must run the README's test command verbatim: {tests[0]}"
