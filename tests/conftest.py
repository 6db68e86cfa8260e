"""Test fixtures: one torch thread, tiny task folders (the builders live in helpers.py)."""

import sys
from pathlib import Path

import pytest
from helpers import simple_task, write_challenges, write_task_dir


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
def tasks_dir(tmp_path) -> Path:
    """Four tiny tasks in the ARC repository layout (t1 has 2 test inputs)."""
    tasks = {f"t{i}": simple_task(n_train=2, n_test=1 + (i == 1), size=3, colour=1 + i) for i in range(4)}
    return write_task_dir(tmp_path / "tasks", tasks)


@pytest.fixture
def challenges_file(tmp_path) -> Path:
    """A Kaggle challenges file of 3 tasks (a: 3x3, b: 2 test inputs, c: 5x5) with solutions beside it."""
    return write_challenges(
        tmp_path / "kaggle",
        {"a": simple_task(), "b": simple_task(n_test=2, colour=3), "c": simple_task(size=5, colour=5)},
    )
