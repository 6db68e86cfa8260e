"""The voting levers measured offline on sweep runs: invariants, snapshot pooling, q_halt vs consistency.

    python evaluation/levers.py [--out runs/sweep] [NAME ...] [--json FILE]

Every run of a config NAME in OUT/NAME/seed-S (made by `sweep.py run`; with `inference.snapshots=[...]` it holds
the predictions of every training snapshot, with `inference.consistency=true` the consistency scores of every
view). Each lever is the same run's predictions voted again, without the model:

- baseline: the final model's predictions only (lines of snapshot 1.0), reference voting (votes, then q_halt),
  invariants off;
- +invariants: the same, with candidates that break an invariant of the demonstrations ranked last;
- +consistency / +votes-consistency: the same predictions ranked by consistency (configs/voting/);
- +snapshots: every snapshot's predictions, reference voting (equal weights; `+snapshots 0.5/0.75`: earlier
  snapshots weighted down);
- +snapshots +consistency: both.

A run without consistency scores gets no consistency lever, one without earlier snapshots no snapshot lever.

The final-only files are written to RUN/levers/final/ (predictions.jsonl and consistency.jsonl of snapshot 1.0)
and scored with `arc-kit score --vote`, which reads consistency.jsonl beside the predictions. Prints one
markdown table per config: solved outputs, per-output and per-task score (mean and min-max over seeds),
coverage (any view's grid right), and each lever against the baseline: per-seed differences of the per-task
score and a paired bootstrap over tasks of the per-task scores averaged over seeds.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from sweep import _paired_bootstrap, _spread

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT_WEIGHTS = {"0.6": 0.5, "0.8": 0.75}
# voting configs written to OUT (the shipped ones by name: configs/voting/)
WRITTEN = {
    "plain": "strategy: reference\nfallback: input\ninvariants: false\n",
    "invariants": "strategy: reference\nfallback: input\ninvariants: true\n",
    "snapshot-weighted": "strategy: reference\nfallback: input\ninvariants: false\nsnapshot_weights:\n"
    + "".join(f'  "{k}": {v}\n' for k, v in SNAPSHOT_WEIGHTS.items()),
}
CONSISTENCY = ("consistency", "votes-consistency")
LEVERS = [  # (name, prediction set, voting config)
    ("baseline", "final", "plain"),
    ("+invariants", "final", "invariants"),
    ("+consistency", "final", "consistency"),
    ("+votes-consistency", "final", "votes-consistency"),
    ("+snapshots", "all", "plain"),
    ("+snapshots 0.5/0.75", "all", "snapshot-weighted"),
    ("+snapshots +consistency", "all", "consistency"),
    ("+snapshots +votes-consistency", "all", "votes-consistency"),
]


def split_final(run: Path) -> Path:
    """RUN/levers/final/: the run's predictions and consistency lines of the final model (snapshot 1.0)."""
    d = run / "levers" / "final"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("predictions.jsonl", "consistency.jsonl"):
        src = run / name
        if not src.is_file():
            continue
        keep = [x for x in src.read_text().splitlines() if x.strip() and json.loads(x).get("snapshot", 1.0) == 1.0]
        (d / name).write_text("".join(x + "\n" for x in keep))
    return d


def score(predictions: Path, run: Path, vote: str) -> dict:
    """`arc-kit score` of a predictions file under a voting config, on the run's own task selection."""
    ran = json.loads((run / "score.json").read_text())
    ids = run / "levers" / "ids.txt"
    ids.write_text("\n".join(ran["tasks"]) + "\n")
    cmd = [sys.executable, "-m", "arc_kit.cli", "score", str(predictions), "--tasks", ran["source"]]
    cmd += ["--ids", f"@{ids}", "--vote", vote, "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"levers: {' '.join(cmd[2:])} failed: {proc.stderr.strip()[-300:]}")
    if "no consistency scores" in proc.stderr:  # a consistency lever must never be votes alone in disguise
        raise SystemExit(f"levers: {predictions}: no consistency scores beside it")
    return json.loads(proc.stdout)


def measure(run: Path, configs: dict[str, Path]) -> dict[str, dict]:
    final = split_final(run)
    files = {"final": final / "predictions.jsonl", "all": run / "predictions.jsonl"}
    pooled = files["all"].read_text() != files["final"].read_text()  # earlier snapshots voted too
    scored = (run / "consistency.jsonl").is_file()
    out = {}
    for name, which, vote in LEVERS:
        if (which == "all" and not pooled) or (vote in CONSISTENCY and not scored):
            continue
        s = score(files[which], run, str(configs.get(vote, vote)))
        out[name] = {
            "solved": s["n_solved_outputs"],
            "outputs": s["n_outputs"],
            "per_output": s["score_per_output"],
            "per_task": s["score_per_task"],
            "coverage": (s.get("coverage") or {}).get("per_output"),
            "tasks": s["tasks"],
        }
    return out


def table(name: str, runs: dict[int, dict[str, dict]]) -> list[str]:
    seeds = sorted(runs)
    lines = [
        f"\n### {name} (seeds {', '.join(map(str, seeds))})",
        "| lever | solved outputs | per-output | per-task | coverage | Δ per-task by seed | paired Δ per-task "
        "(95% CI low, P(Δ<=0)) |",
        "|---|---|---|---|---|---|---|",
    ]
    n = runs[seeds[0]]["baseline"]["outputs"]
    for lever, _, _ in LEVERS:
        if not all(lever in runs[s] for s in seeds):
            continue
        rs = [runs[s][lever] for s in seeds]
        by_seed = [runs[s][lever]["per_task"] - runs[s]["baseline"]["per_task"] for s in seeds]
        tasks = sorted(rs[0]["tasks"])
        diffs = [
            statistics.fmean(runs[s][lever]["tasks"][t] - runs[s]["baseline"]["tasks"][t] for s in seeds) for t in tasks
        ]
        mean, low, p = _paired_bootstrap(diffs)
        paired = "-" if lever == "baseline" else f"{mean:+.3f} ({low:+.3f}, {p:.2f})"
        lines.append(
            f"| {lever} | {_spread([r['solved'] for r in rs], '.1f')} (of {n}) "
            f"| {_spread([r['per_output'] for r in rs], '.3f')} | {_spread([r['per_task'] for r in rs], '.3f')} "
            f"| {_spread([r['coverage'] for r in rs if r['coverage'] is not None], '.3f')} "
            f"| {' '.join(f'{d:+.3f}' for d in by_seed) if lever != 'baseline' else '-'} | {paired} |"
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--out", default="runs/sweep")
    ap.add_argument("--json", help="also write every measurement to this file")
    args = ap.parse_args()
    out = Path(args.out)
    names = args.names or sorted(p.name for p in out.iterdir() if p.is_dir())
    configs = {}
    for vote, text in WRITTEN.items():
        configs[vote] = out / f"voting-{vote}.yaml"
        configs[vote].write_text(text)
    everything = {}
    for name in names:
        runs = {}
        for run in sorted((out / name).glob("seed-*")):
            if (run / "score.json").is_file():
                runs[int(run.name.removeprefix("seed-"))] = measure(run, configs)
        if not runs:
            print(f"levers: {name}: no scored run", file=sys.stderr)
            continue
        everything[name] = runs
        print("\n".join(table(name, runs)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
