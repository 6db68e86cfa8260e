"""Invariants: what every demonstration of a task shares (output size, palette), and the candidates that break it.

Voting ranks a candidate that breaks an invariant below every candidate that keeps it (VoteConfig.invariants):
the model often finds the right answer among its candidates but ranks a wrong-sized or off-palette grid above it.
Only the demonstrations and the test input are read (answer-blind), so the rule can run on hidden tasks.

Output size, from the (input, output) shapes of the demonstrations:
  same   every output has its input's shape                      -> the test input's shape
  fixed  every output has one shape                              -> that shape
  ratio  every output is its input scaled by one (rows, cols) ratio -> the test input's shape scaled by it
When several rules hold and imply different shapes for the test input (e.g. all inputs 3x3 and all outputs 3x3,
with a 5x5 test input: "same" and "fixed" disagree), the size is left open.

Palette: every colour of a candidate must be in the test input or among the colours some demonstration's output
introduced (present in its output, absent from its input). It holds for every demonstration by construction, so
it rules out only colours no demonstration ever produced from nothing.

Invariants need at least MIN_DEMONSTRATIONS demonstrations: with one, everything is "shared" and proves little.
"""

from dataclasses import dataclass
from fractions import Fraction

from arc_kit.data import Grid, Task

MIN_DEMONSTRATIONS = 2


@dataclass(frozen=True)
class Invariants:
    """The invariants of one test input: its implied output shape and the colours an output may use."""

    shape: tuple[int, int] | None = None  # (rows, cols) every demonstration implies; None: no size rule
    shape_rule: str = ""  # "same", "fixed" or "ratio" (the rules that hold, joined by "+"); "" when none
    colours: frozenset[int] | None = None  # colours an output may use; None: no palette rule

    def broken(self, grid: Grid) -> tuple[str, ...]:
        """The invariants `grid` breaks: () when it keeps all of them, else a subset of ("size", "palette")."""
        out = []
        if self.shape is not None and _shape(grid) != self.shape:
            out.append("size")
        if self.colours is not None and any(c not in self.colours for row in grid for c in row):
            out.append("palette")
        return tuple(out)


def _shape(grid: Grid) -> tuple[int, int]:
    return len(grid), len(grid[0]) if grid else 0


def _colours(grid: Grid) -> set[int]:
    return {c for row in grid for c in row}


def implied_shape(task: Task, test_index: int) -> tuple[tuple[int, int] | None, str]:
    """The output shape the demonstrations imply for test input `test_index`, and the rules that imply it."""
    pairs = [(_shape(p.input), _shape(p.output)) for p in task.train if p.output is not None]
    if len(pairs) < MIN_DEMONSTRATIONS:
        return None, ""
    h, w = _shape(task.test[test_index].input)
    implied: dict[str, tuple[int, int]] = {}
    if all(i == o for i, o in pairs):
        implied["same"] = (h, w)
    if len({o for _, o in pairs}) == 1:
        implied["fixed"] = pairs[0][1]
    ratios = {(Fraction(o[0], i[0]), Fraction(o[1], i[1])) for i, o in pairs if i[0] and i[1]}
    if len(ratios) == 1 and "same" not in implied:  # "same" is the ratio (1, 1): one name per rule
        rh, rw = next(iter(ratios))
        sh, sw = h * rh, w * rw
        if sh.denominator == 1 and sw.denominator == 1 and sh >= 1 and sw >= 1:
            implied["ratio"] = (int(sh), int(sw))
    shapes = set(implied.values())
    if len(shapes) != 1:
        return None, ""
    return shapes.pop(), "+".join(implied)


def allowed_colours(task: Task, test_index: int) -> frozenset[int] | None:
    """Colours an output for test input `test_index` may use: its input's, plus those demonstrations introduced."""
    pairs = [(p.input, p.output) for p in task.train if p.output is not None]
    if len(pairs) < MIN_DEMONSTRATIONS:
        return None
    introduced = set().union(*(_colours(o) - _colours(i) for i, o in pairs))
    return frozenset(_colours(task.test[test_index].input) | introduced)


def task_invariants(task: Task, test_index: int) -> Invariants:
    """The invariants every demonstration of `task` shares, applied to its test input `test_index`."""
    shape, rule = implied_shape(task, test_index)
    return Invariants(shape=shape, shape_rule=rule, colours=allowed_colours(task, test_index))
