"""Shared test fixtures: one torch thread, the ../shared folder and small ARC task-file builders."""

import json
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread: CI has 2 cores shared with other jobs, where 2 threads run a
    TRM step several times slower than 1. Only when a test module already imported torch (importing it
    here would slow every data-only test)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def shared_dir() -> Path:
    """The project's ../shared folder (reference fixtures and data)."""
    return SHARED


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


@pytest.fixture
def challenges_file(tmp_path) -> Path:
    """A Kaggle challenges file of 3 tasks (a: 3x3, b: 2 test inputs, c: 5x5) with solutions beside it."""
    return write_challenges(
        tmp_path / "kaggle",
        {"a": simple_task(), "b": simple_task(n_test=2, colour=3), "c": simple_task(size=5, colour=5)},
    )
