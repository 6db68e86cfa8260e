"""Synthetic runs for the report tests: tasks with known answers, predictions that solve some, find some, miss some."""

import json
import random
from pathlib import Path

from arc_kit.data import Pair, Task, TaskSet


def grid(rng: random.Random, h: int, w: int) -> list[list[int]]:
    return [[rng.randrange(10) if rng.random() < 0.4 else 0 for _ in range(w)] for _ in range(h)]


def synthetic(n_tasks: int, side: int, seed: int = 0, n_train: int = 3) -> tuple[TaskSet, list[dict]]:
    """`n_tasks` tasks of side x side grids and their predictions: task i is solved when i % 3 == 0 (the answer
    wins the vote), found but not selected when i % 3 == 1 (the answer has the fewest votes of three), unsolved
    otherwise (never predicted). Ids are 8 hex digits, as ARC's."""
    rng = random.Random(seed)
    tasks, preds = {}, []
    for i in range(n_tasks):
        tid = f"{i:08x}"
        train = [Pair(grid(rng, side, side), grid(rng, side, side)) for _ in range(n_train)]
        answer = grid(rng, side, side)
        tasks[tid] = Task(tid, train, [Pair(grid(rng, side, side), answer)])
        wrong = [grid(rng, side, side) for _ in range(3)]
        if i % 3 == 0:
            plan = [(answer, 5), (wrong[0], 2), (wrong[1], 1)]
        elif i % 3 == 1:
            plan = [(wrong[0], 5), (wrong[1], 4), (wrong[2], 3), (answer, 1)]
        else:
            plan = [(wrong[0], 3), (wrong[1], 1)]
        for g, n in plan:
            for k in range(n):
                preds.append(
                    {"task_id": tid, "test_index": 0, "augmentation": f"{tid}|||t{k}", "grid": g, "q_halt": 0.5}
                )
    return TaskSet(tasks, source="synthetic"), preds


def write_predictions(path: Path, preds: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    return path


def write_task_files(root: Path, task_set: TaskSet) -> tuple[Path, Path]:
    """Kaggle layout: challenges (no test outputs) and solutions files."""
    root.mkdir(parents=True, exist_ok=True)
    ch = {
        t.id: {
            "train": [{"input": p.input, "output": p.output} for p in t.train],
            "test": [{"input": p.input} for p in t.test],
        }
        for t in task_set.tasks.values()
    }
    sol = {t.id: [p.output for p in t.test] for t in task_set.tasks.values()}
    (root / "x_challenges.json").write_text(json.dumps(ch))
    (root / "x_solutions.json").write_text(json.dumps(sol))
    return root / "x_challenges.json", root / "x_solutions.json"
