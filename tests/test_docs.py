"""The user docs cite only what exists: `arc_kit.*` names, run-config keys, docs pages; README size and commands.

Citation syntax (CONTRIBUTING.md, "Docs"): inside inline code spans and fenced code blocks of README.md and
docs/*.md, a token `arc_kit.a.b` names a module, or an attribute reached from the longest importable module
prefix; a token `<section>.<field>[.<field>...]` whose first part is a field of RunConfig (`ttt.row_init`,
`model.arch.halt_max_steps`, `inference.views=8`) names a run-config key, walked through the dataclasses. A
token whose last part is a file extension (`tasks.json`, `model.safetensors`) is a file name, not a key; a
token inside a path (`runs/x/model.safetensors`, `configs/cpu-demo.yaml`) is not a citation either.
"""

import dataclasses
import importlib
import re
import typing
from pathlib import Path

from arc_kit.run.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
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
