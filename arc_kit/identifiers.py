"""Reference TRM puzzle identifiers: the reference ARC builder's exact (task, augmentation) -> embedding-row list."""

# A published TRM checkpoint's puzzle-embedding table has one row per augmented puzzle of its
# training build, numbered by the reference dataset builder (`dataset/build_arc_dataset.py`,
# seed 42, 1000 augmentations). The checkpoint does not ship the row -> name mapping, so we
# replay the builder's random draws exactly:
#   np.random.seed(seed)
#   for subset in subsets:                       # given order
#       tasks = list(challenges.items()); np.random.shuffle(tasks)
#       for task in tasks:                       # up to 5 * num_aug trials
#           t = np.random.randint(0, 8); perm = [0] + np.random.permutation(1..9)
#           version = dihedral_t(perm[grid]) for every grid (test outputs included)
#           keep it if its multiset of (input, output) pairs is new; stop at num_aug + 1 versions
# Names are `TASK|||t{t}|||{perm digits}` (the original: plain `TASK`); identifiers count from 1
# in order of first appearance, 0 is `<blank>`. Nothing else draws from the RNG before the
# identifiers are fixed (the translation draws come later, when the arrays are written).
#
# Speed: augment.TaskVersions makes a trial one lookup-table gather plus a sort of per-pair byte
# strings; a full ARC-AGI-1 build (~1M trials) takes well under a minute.

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arc_kit.augment import SEP, Augmentation, TaskVersions, split_name
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import read_json
from arc_kit.base.progress import progress as progress_bar
from arc_kit.data import Task, load_tasks

RETRIES_FACTOR = 5  # reference ARCAugmentRetriesFactor
BLANK = "<blank>"  # identifier 0: the reference builder's padding puzzle


@dataclass(frozen=True)
class Recipe:
    """One reference build: which subsets went in, which one became the test split."""

    subsets: tuple[str, ...]
    test_set: str
    rows: int  # puzzle-embedding rows of the published checkpoint (identifiers incl. <blank>)


# The two published builds (ARC Prize Foundation `trm_arc_prize_verification` checkpoints).
RECIPES = {
    "arc1": Recipe(("training", "evaluation", "concept"), "evaluation", 876_406),
    "arc2": Recipe(("training2", "evaluation2", "concept"), "evaluation2", 1_191_730),
}


def recipe_for_rows(rows: int) -> Recipe | None:
    """The reference build whose table has `rows` rows, or None."""
    return next((r for r in RECIPES.values() if r.rows == rows), None)


def load_subset(data_dir: str | Path, subset: str, prefix: str = "arc-agi") -> dict[str, Task]:
    """`{prefix}_{subset}_challenges.json` (validated) with test outputs from the solutions file beside it.

    Like the reference, a subset without a solutions file gets the dummy output [[0]] for every test
    input; a solutions file that lacks a task is an error (the reference builder would stop there too).
    """
    path = Path(data_dir) / f"{prefix}_{subset}_challenges.json"
    tasks = load_tasks(path).tasks
    sols_path = path.with_name(f"{prefix}_{subset}_solutions.json")
    for task_id, task in tasks.items():
        for pair in task.test:
            if pair.output is None:
                if sols_path.is_file():
                    raise ArcKitError(f"{sols_path}: task {task_id}: no solution for its test inputs")
                pair.output = [[0]]
    return tasks


def augmentation_names(task: Task, num_aug: int, rng: np.random.RandomState) -> list[str]:
    """Names of the kept versions of one task, the original first, drawing from `rng` as the reference does.

    Test outputs count (the reference augments them too): load_subset fills unknown ones with [[0]]."""
    task_id = task.id
    names = [task_id]
    if num_aug <= 0:
        return names
    versions = TaskVersions(task, test_outputs=True)  # the reference builder's rule, replayed exactly
    identity = np.arange(10, dtype=np.uint8)
    seen = {versions.key(0, identity)}
    digits = np.frombuffer(b"0123456789", dtype=np.uint8)
    colours = np.arange(1, 10, dtype=np.uint8)
    lut = identity.copy()  # [0] + permutation of 1..9: new colour of old colour i
    for _ in range(RETRIES_FACTOR * num_aug):
        trans = rng.randint(0, 8)
        lut[1:] = rng.permutation(colours)  # the reference's np.random.permutation(np.arange(1, 10))
        key = versions.key(trans, lut)
        if key not in seen:
            seen.add(key)
            names.append(f"{task_id}{SEP}t{trans}{SEP}{digits[lut].tobytes().decode()}")
        if len(names) >= num_aug + 1:
            break
    return names


def build_identifiers(
    data_dir: str | Path,
    subsets,
    test_set: str,
    seed: int = 42,
    num_aug: int = 1000,
    prefix: str = "arc-agi",
    test_set2: str = "evaluation2",
    progress: bool = False,
) -> tuple[list[str], list[list[int]]]:
    """Replay the reference ARC builder; return (names, test_split).

    names[i] is the puzzle of identifier i (names[0] == "<blank>"): the row order of the
    checkpoint's puzzle-embedding table. test_split lists the test split's puzzles in stored order
    as [identifier, number of test examples]. Like the reference, subsets named `test_set` or
    `test_set2` send their test pairs to the test split.
    """
    subsets = list(subsets)
    if not subsets:
        raise ArcKitError("trm-identifiers: no subsets given")
    if num_aug < 0:
        raise ArcKitError(f"trm-identifiers: --num-aug must be at least 0, got {num_aug}")
    loaded = [(s, load_subset(data_dir, s, prefix)) for s in subsets]  # read everything first: fail fast
    rng = np.random.RandomState(seed)
    ids: dict[str, int] = {}  # name -> identifier, in order of first appearance
    test_tasks: dict[str, Task] = {}
    bar = progress_bar(sum(len(p) for _, p in loaded), "identifiers", enabled=progress, unit="task")
    for subset, tasks in loaded:
        items = list(tasks.items())
        # same draws as the reference's np.random.shuffle of the (id, task) list
        rng.shuffle(items)  # type: ignore[arg-type]  # numpy stubs are wrong: shuffle takes any mutable sequence
        for task_id, task in items:
            for name in augmentation_names(task, num_aug, rng):
                ids.setdefault(name, len(ids) + 1)
            if subset in (test_set, test_set2):
                test_tasks[task_id] = task
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    # The train split (every task) numbers every puzzle; the test split's puzzles all appeared there
    # already. (The reference numbers "train" first whenever the first subset is not the test set;
    # otherwise its order depends on Python's hash seed.)
    table = [BLANK] + list(ids)
    test_split = [
        [row, len(test_tasks[t].test)] for t, puzzles in plan_test_split(test_tasks, table) for row, _ in puzzles
    ]
    return table, test_split


# -----------------------------------------------------------------------------
# Reading an identifier list: the row -> puzzle table of a checkpoint or dataset build.


def read_identifiers(path: str | Path) -> list[str]:
    """identifiers.json (or .json.gz): puzzle identifier index -> puzzle name; index 0 is `<blank>`."""
    ids = read_json(path, "identifier list")
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise ArcKitError(f"{path}: expected a JSON list of puzzle names")
    return ids


def numbered_rows(n: int) -> list[str]:
    """Names of a table imported without an identifier list: row0, row1, ... (which puzzle a row is: unknown)."""
    return [f"row{i}" for i in range(n)]


def rows_unnamed(names: list[str]) -> bool:
    """True for a table of `numbered_rows`: its rows cannot be matched to tasks (e.g. the published HRM's)."""
    return bool(names) and names[0] == "row0" and names[-1] == f"row{len(names) - 1}"


def unnamed_rows_error(where, rows: int, use: str) -> ArcKitError:
    """The one refusal of a use that needs row names on a table that has none."""
    return ArcKitError(
        f"{where}: its {rows:,} puzzle rows have no names (imported without an identifier list), so {use} "
        "cannot find a task's rows: import it with --identifiers LIST, or train on the tasks first "
        "(`arc-kit run`: test-time training uses only the network and the table's mean row)"
    )


def task_puzzles(names: list[str], task_ids) -> dict[str, list[tuple[int, str]]]:
    """task id -> [(row, puzzle name), ...] of each task in `task_ids`: identity first, then table order.

    Tasks are in order of their first row; tasks without any row are absent.
    """
    wanted = set(task_ids)
    out: dict[str, list[tuple[int, str]]] = {}
    for row, name in enumerate(names):
        base = name.split(SEP, 1)[0]
        if base in wanted:
            out.setdefault(base, []).append((row, name))
    for tid, puzzles in out.items():
        puzzles.sort(key=lambda rn: rn[1] != tid)  # stable: the plain name (identity) first
    return out


def plan_test_split(tasks: dict[str, Task], names: list[str]) -> list[tuple[str, list[tuple[int, Augmentation]]]]:
    """The reference test split's layout: [(task id, [(identifier, augmentation), ...]), ...] in stored order.

    The builder stores each test-set task's test pairs once per augmented puzzle (identity first), one
    group per task, tasks in the order the identifier list first names them.
    """
    return [
        (tid, [(row, split_name(name)[1]) for row, name in puzzles])
        for tid, puzzles in task_puzzles(names, tasks).items()
    ]
