"""The compute curve: dev-bench score against the training budget, fitted, drawn, and projected (issue 23).

    python evaluation/curve.py --out runs/sweep22 --point 0.5=trm-half --point 1=trm --point 2=curve-2x \\
        --point 4=curve-4x --point 8=curve-8x --png evaluation/compute_curve.png \\
        [--kaggle-hours 12 --kaggle-gpus 4 --kaggle-tasks 240 --gpu-seq-per-s 20000]

Each `--point MULTIPLE=NAME` names a config of `sweep.py` rows (OUT/results.jsonl) run at MULTIPLE times the
cpu-demo budget. Rows marked under load (sweep.py's rule) are listed but left out of the means and the fit.
Per point: seeds, solved outputs (each seed, mean), training steps and training sequences per task (steps x
global batch / tasks, from the runs' config.yaml and report). The fit is least squares over every seed's row:
    solved = a + b log2(sequences per task)
so b is the gain per doubling of compute. The projection puts a Kaggle run's sequences per task into the fit:
    sequences per task = gpu_seq_per_s x 3600 x hours x gpus x train_share / tasks
Everything in it beyond the measured range is an extrapolation of a log-linear fit, and gpu_seq_per_s is an
assumption until `gpu_check.sh` measures it: the printout marks it a projection and states its inputs.
The PNG needs matplotlib (`pip install -e .[plot]`).
"""

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import _under_load, read_rows  # noqa: E402  (the harness that wrote the rows)


@dataclass
class Run:
    seed: int
    solved: int
    outputs: int
    steps: int
    seq_per_task: float
    loaded: bool


@dataclass
class Point:
    multiple: float  # of the cpu-demo budget
    name: str
    runs: list[Run]

    @property
    def used(self) -> list[Run]:
        return [r for r in self.runs if not r.loaded]


@dataclass
class Fit:
    a: float
    b: float  # solved outputs gained per doubling of sequences per task
    r2: float
    n: int

    def predict(self, seq_per_task: float) -> float:
        return self.a + self.b * math.log2(seq_per_task)


def _batch_and_tasks(run_dir: Path) -> tuple[int, int]:
    """(ttt global batch size, scored tasks) of one `arc-kit run` directory."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    batch = int(cfg["ttt"]["train"]["global_batch_size"])
    for line in (run_dir / "report.md").read_text().splitlines():
        if line.startswith("per-task score") and "tasks)" in line:
            return batch, int(line.rsplit("(", 1)[1].split()[0])
    raise SystemExit(f"curve: {run_dir / 'report.md'}: no per-task score line (was the run scored?)")


def load_points(out: Path, specs: list[str]) -> list[Point]:
    rows = read_rows(out)
    points = []
    for spec in specs:
        multiple, _, name = spec.partition("=")
        if not name:
            raise SystemExit(f"curve: --point {spec!r}: expected MULTIPLE=NAME, e.g. 2=curve-2x")
        runs = []
        for r in rows:
            if r["name"] != name or "solved" not in r or r.get("steps") is None:
                continue
            batch, tasks = _batch_and_tasks(out / name / f"seed-{r['seed']}")
            seq = r["steps"] * batch / tasks
            runs.append(Run(r["seed"], r["solved"], r["outputs"], r["steps"], seq, _under_load(r)))
        if not runs:
            raise SystemExit(f"curve: no scored rows named {name!r} in {out / 'results.jsonl'}")
        points.append(Point(float(multiple), name, runs))
    return sorted(points, key=lambda p: p.multiple)


def fit(points: list[Point]) -> Fit:
    """Least squares of solved on log2(sequences per task) over every row not under load."""
    xs = [math.log2(r.seq_per_task) for p in points for r in p.used]
    ys = [float(r.solved) for p in points for r in p.used]
    if len(set(xs)) < 2:
        raise SystemExit("curve: the fit needs rows at two budgets at least")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return Fit(a, b, 1 - ss_res / ss_tot if ss_tot else 1.0, len(xs))


def table(points: list[Point], minutes: float) -> list[str]:
    lines = [
        "| budget | minutes | seeds | solved outputs (each seed) | mean | steps (mean) | sequences per task (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        used = p.used
        each = ", ".join(f"{r.solved}" + (" (under load, left out)" if r.loaded else "") for r in p.runs)
        mean = statistics.fmean(r.solved for r in used) if used else float("nan")
        steps = statistics.fmean(r.steps for r in used) if used else float("nan")
        seq = statistics.fmean(r.seq_per_task for r in used) if used else float("nan")
        lines.append(
            f"| {p.multiple:g}x | {p.multiple * minutes:g} | {len(used)} | {each} (of {p.runs[0].outputs}) "
            f"| {mean:.1f} | {steps:,.0f} | {seq:,.0f} |"
        )
    return lines


def projection(f: Fit, points: list[Point], args) -> list[str]:
    seq = args.gpu_seq_per_s * 3600 * args.kaggle_hours * args.kaggle_gpus * args.train_share / args.kaggle_tasks
    top = max(r.seq_per_task for p in points for r in p.used)
    outputs = points[0].runs[0].outputs
    pred = min(float(outputs), f.predict(seq))
    return [
        f"**Projection, not a measurement**: {args.kaggle_hours:g} h x {args.kaggle_gpus} GPUs x "
        f"{args.train_share:.0%} training, {args.kaggle_tasks} tasks, assuming {args.gpu_seq_per_s:,.0f} training "
        f"sequences/s per GPU for this model -> {seq:,.0f} sequences per task, {seq / top:,.1f}x the largest "
        f"measured; the fit gives {pred:.1f} of {outputs} dev-bench outputs ({pred / outputs:.0%}). It assumes "
        "tasks like the dev bench's (grids within 8x8) and that the log-linear trend holds that far.",
    ]


def draw(points: list[Point], f: Fit, png: Path, minutes: float) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("curve: drawing the PNG needs matplotlib: pip install -e .[plot]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for p in points:
        for r in p.runs:
            ax.scatter(r.seq_per_task, r.solved, color="0.6" if r.loaded else "C0", s=22, zorder=3)
        if p.used:
            ax.scatter(
                statistics.fmean(r.seq_per_task for r in p.used),
                statistics.fmean(r.solved for r in p.used),
                marker="D",
                color="C1",
                s=40,
                zorder=4,
            )
            ax.annotate(f"{p.multiple:g}x ({p.multiple * minutes:g} min)", (p.used[0].seq_per_task, 0.4), fontsize=8)
    lo = min(r.seq_per_task for p in points for r in p.runs) / 1.3
    hi = max(r.seq_per_task for p in points for r in p.runs) * 1.3
    xs = [lo * (hi / lo) ** (i / 50) for i in range(51)]
    ax.plot(xs, [f.predict(x) for x in xs], color="C1", lw=1.2, label=f"fit: {f.b:+.2f} outputs per doubling")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training sequences per task (cpu-demo recipe)")
    ax.set_ylabel(f"solved dev-bench outputs (of {points[0].runs[0].outputs})")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Dev-bench score against test-time training compute", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/sweep", help="sweep.py's output folder (results.jsonl, run folders)")
    ap.add_argument("--point", action="append", required=True, help="MULTIPLE=NAME, e.g. 2=curve-2x (repeat)")
    ap.add_argument("--minutes", type=float, default=9.0, help="the 1x budget (cpu-demo's budget.total_minutes)")
    ap.add_argument("--png", type=Path, help="draw the curve here")
    ap.add_argument("--kaggle-hours", type=float, default=12.0)
    ap.add_argument("--kaggle-gpus", type=int, default=4)
    ap.add_argument("--kaggle-tasks", type=int, default=240)
    ap.add_argument("--train-share", type=float, default=0.9, help="share of the time spent training")
    ap.add_argument("--gpu-seq-per-s", type=float, help="assumed training sequences/s per GPU (projection)")
    args = ap.parse_args(argv)
    points = load_points(Path(args.out), args.point)
    f = fit(points)
    print("\n".join(table(points, args.minutes)))
    print(
        f"\nfit over {f.n} rows: solved = {f.a:.2f} + {f.b:.2f} log2(sequences per task), R^2 {f.r2:.2f}: "
        f"{f.b:+.2f} outputs per doubling of compute"
    )
    if args.gpu_seq_per_s:
        print("\n" + "\n".join(projection(f, points, args)))
    if args.png:
        draw(points, f, args.png, args.minutes)
        print(f"\nwrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
