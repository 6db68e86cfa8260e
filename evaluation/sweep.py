"""Run configs over several seeds with `arc-kit run`, tabulate mean and spread, and compare two configs paired.

    python evaluation/sweep.py run NAME --config cpu-demo --seeds 0 1 2 [--checkpoint DIR] [--out runs/sweep]
                                   [--note "..."] [key=value ...]
    python evaluation/sweep.py table [--out runs/sweep] [NAME ...]
    python evaluation/sweep.py compare A B [--out runs/sweep] [--vote STRATEGY]
    python evaluation/sweep.py vote NAME A B ... [--out runs/sweep] [--vote STRATEGY]

`run` writes OUT/NAME/seed-S/ (one `arc-kit run` directory per seed; the seed sets runtime.seed)
and appends one JSON line per seed to OUT/results.jsonl: per-output and per-task score, coverage, training
steps, wall time, threads, the 1-minute load average before and after, the machine and the exact command.
`table` prints one markdown row per config: mean and spread (min-max) over its seeds. `compare` pairs two
configs seed by seed with `arc-kit compare` and on the per-task scores averaged over the common seeds
(a paired bootstrap over tasks). `vote` votes the predictions of configs A, B, ... together seed by seed
(`arc-kit vote`, e.g. two models at half the budget each) into OUT/NAME/seed-S/ and records it as a config of
its own (steps and wall time: the members' sums; load: the worst member's), so `table` and `compare` take it.

Load: the 1-minute load average lags (right after the previous seed's run it still reads ~2), so each row also
records what *other* processes used: the machine's busy CPU seconds during the run (/proc/stat) minus the
run's own (its process tree's rusage), divided by the wall time (`other_cores`), and the cores busy in the
2 s before it started (`busy_before`). A run with other_cores > 0.1 or busy_before > 0.5 is marked
"under load" in the table (rows without these fields: load average before > 0.5): such rows must not
decide anything.
"""

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LOADED = 0.5  # 1-minute load average above which a row without CPU accounting is marked "under load"
OTHER_CORES = 0.1  # other processes' mean busy cores during a run above which it is "under load"


def _busy_cpu_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot, all cores (/proc/stat), or None where unreadable."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for descendants: the run and its stages
    return r.ru_utime + r.ru_stime


def _busy_cores(seconds: float = 2.0) -> float | None:
    a = _busy_cpu_s()
    time.sleep(seconds)
    b = _busy_cpu_s()
    return None if a is None or b is None else round((b - a) / seconds, 2)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "arc_kit.cli", *args]


def _coverage(run_dir: Path, score: dict) -> float | None:
    """Per-output coverage of a run's score.json; 0.0 when inference ran but every view decoded empty (the run
    then scores its fallback submission, which has no coverage); None when nothing was predicted at all."""
    cov = score.get("coverage")
    if cov:
        return cov.get("per_output")
    preds = run_dir / "predictions.jsonl"
    return 0.0 if preds.is_file() and preds.stat().st_size == 0 else None


def run_one(name: str, seed: int, args, out: Path) -> dict:
    run_dir = out / name / f"seed-{seed}"
    cmd = _cli("run", "--config", args.config, "--out", str(run_dir), "--fresh")
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    cmd += [f"runtime.seed={seed}", "output.progress=false", *args.overrides]
    load_before = os.getloadavg()[0]
    busy_before = _busy_cores()
    busy0, own0 = _busy_cpu_s(), _children_cpu_s()
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t0
    busy1, own1 = _busy_cpu_s(), _children_cpu_s()
    other = None if busy0 is None or busy1 is None else round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 3)
    row: dict = {
        "name": name,
        "seed": seed,
        "config": args.config,
        "checkpoint": args.checkpoint,
        "overrides": list(args.overrides),
        "command": " ".join(cmd[2:]),
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "busy_before": busy_before,  # cores busy in the 2 s before the run started
        "other_cores": other,  # other processes' mean busy cores during the run
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "note": args.note,
    }
    score_file = run_dir / "score.json"
    if score_file.is_file():
        s = json.loads(score_file.read_text())
        row.update(
            per_output=s["score_per_output"],
            per_task=s["score_per_task"],
            solved=s["n_solved_outputs"],
            outputs=s["n_outputs"],
            coverage=_coverage(run_dir, s),
        )
    state_file = run_dir / "state.json"
    if state_file.is_file():
        st = json.loads(state_file.read_text())["stages"]
        row["steps"] = st.get("train", {}).get("steps")
    saved = run_dir / "config.yaml"
    if saved.is_file():  # the model it started from, resolved (--checkpoint or the config's model.checkpoint)
        row["checkpoint"] = (yaml.safe_load(saved.read_text()).get("model") or {}).get("checkpoint")
    plan_file = run_dir / "plan.json"
    if plan_file.is_file():
        row["threads"] = json.loads(plan_file.read_text()).get("threads")
    if proc.returncode not in (0, 4):
        row["stderr_tail"] = proc.stderr[-500:]
    return row


def read_rows(out: Path) -> list[dict]:
    f = out / "results.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.is_file() else []


def cmd_run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        row = run_one(args.name, seed, args, out)
        with open(out / "results.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"{args.name} seed {seed}: exit {row['exit']}, {row.get('solved', '?')}/{row.get('outputs', '?')} outputs, "
            f"per-task {row.get('per_task', float('nan')):.3f}, coverage {row.get('coverage')}, "
            f"{row.get('steps')} steps, {row['wall_s']:.0f}s, load {row['load_before']} -> {row['load_after']}, "
            f"other processes {row.get('other_cores')} cores",
            flush=True,
        )
    return 0


def _spread(xs: list[float], fmt: str) -> str:
    if not xs:
        return "-"
    mean = statistics.fmean(xs)
    return f"{mean:{fmt}} ({min(xs):{fmt}}-{max(xs):{fmt}})" if len(xs) > 1 else f"{mean:{fmt}}"


def cmd_table(args) -> int:
    rows = read_rows(Path(args.out))
    names = args.names or list(dict.fromkeys(r["name"] for r in rows))
    head = "| config | seeds | solved outputs | per-output | per-task | coverage | steps | wall s | threads |"
    print(head + " load (other processes) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        rs = [r for r in rows if r["name"] == name and "per_output" in r]
        if not rs:
            continue
        loaded = any(_under_load(r) for r in rs)
        others = [r["other_cores"] for r in rs if r.get("other_cores") is not None]
        worst = max(others) if others else max(r["load_before"] for r in rs)
        load = f"other {worst:.2f} cores" if others else f"load {worst:.2f}"
        n = rs[0]["outputs"]
        print(
            f"| {name} | {', '.join(str(r['seed']) for r in rs)} | {_spread([r['solved'] for r in rs], '.1f')} "
            f"(of {n}) | {_spread([r['per_output'] for r in rs], '.3f')}"
            f" | {_spread([r['per_task'] for r in rs], '.3f')}"
            f" | {_spread([r['coverage'] for r in rs if r.get('coverage') is not None], '.3f')}"
            f" | {_spread([r['steps'] for r in rs if r.get('steps') is not None], '.0f')}"
            f" | {_spread([r['wall_s'] for r in rs], '.0f')}"
            f" | {'/'.join(sorted({str(r.get('threads')) for r in rs}))}"
            f" | {load}"
            f"{' **under load**' if loaded else ''} |"
        )
    return 0


def _under_load(row: dict) -> bool:
    if row.get("other_cores") is None:
        return row["load_before"] > LOADED
    return row["other_cores"] > OTHER_CORES or (row.get("busy_before") or 0) > 0.5


def _paired_bootstrap(diffs: list[float], n: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean per-task difference, its 95% percentile interval over resampled tasks, and P(mean <= 0)."""
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(n))
    return statistics.fmean(diffs), means[int(0.025 * n)], sum(m <= 0 for m in means) / n


def _selection(run_dir: Path) -> list[str]:
    """`arc-kit compare` options scoring exactly the run's selected tasks (its config.yaml's tasks section)."""
    import yaml

    t = yaml.safe_load((run_dir / "config.yaml").read_text())["tasks"]
    opts = ["--tasks", str(t["source"])]
    if t.get("solutions"):
        opts += ["--solutions", str(t["solutions"])]
    if t.get("max_size") is not None:
        opts += ["--max-size", str(t["max_size"])]
    if t.get("ids"):
        opts += ["--ids", ",".join(t["ids"])]
    if t.get("limit") is not None:
        opts += ["--limit", str(t["limit"])]
    return opts


def cmd_compare(args) -> int:
    out = Path(args.out)
    rows = read_rows(out)
    seeds_a = {r["seed"] for r in rows if r["name"] == args.a and "per_output" in r}
    seeds_b = {r["seed"] for r in rows if r["name"] == args.b and "per_output" in r}
    seeds = sorted(seeds_a & seeds_b)
    if not seeds:
        print(f"compare: no seed has scored runs of both {args.a} and {args.b}", file=sys.stderr)
        return 2
    per_task: dict[str, list[tuple[float, float]]] = {}
    for seed in seeds:
        a, b = (out / n / f"seed-{seed}" for n in (args.a, args.b))
        cmd = _cli("compare", str(a / "submission.json"), str(b / "submission.json"), "--json", *_selection(a))
        if args.vote:
            cmd += ["--vote", args.vote]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"compare seed {seed}: {res.stderr.strip()}", file=sys.stderr)
            return res.returncode
        doc = json.loads(res.stdout)
        st = doc["comparison"]
        print(
            f"seed {seed}: {args.a} {doc['a']['score_per_task']:.3f} vs {args.b} {doc['b']['score_per_task']:.3f} "
            f"per task; {json.dumps({k: v for k, v in st.items() if not isinstance(v, list)})}"
        )
        for t, (fa, fb) in doc["tasks"].items():
            per_task.setdefault(t, []).append((fa, fb))
    diffs = [statistics.fmean(b for _, b in v) - statistics.fmean(a for a, _ in v) for v in per_task.values()]
    mean, lo, p_le0 = _paired_bootstrap(diffs)
    better = sum(d > 0 for d in diffs)
    worse = sum(d < 0 for d in diffs)
    print(
        f"over seeds {seeds} (per-task scores averaged over seeds, {len(diffs)} tasks): {args.b} - {args.a} = "
        f"{mean:+.3f} per task (95% lower bound {lo:+.3f}, P(<= 0) {p_le0:.3f}); "
        f"{better} tasks better, {worse} worse"
    )
    return 0


def cmd_vote(args) -> int:
    out = Path(args.out)
    rows = [r for r in read_rows(out) if "per_output" in r]
    by = {(r["name"], r["seed"]): r for r in rows}  # the last row of each (config, seed)
    seeds = sorted(set.intersection(*({r["seed"] for r in rows if r["name"] == m} for m in args.members)))
    if not seeds:
        print(f"vote: no seed has scored runs of every one of {', '.join(args.members)}", file=sys.stderr)
        return 2
    for seed in seeds:
        members = [out / m / f"seed-{seed}" for m in args.members]
        run_dir = out / args.name / f"seed-{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(members[0] / "config.yaml", run_dir / "config.yaml")  # the task selection, for `compare`
        preds = [str(m / "predictions.jsonl") for m in members]
        sel = _selection(members[0])
        for cmd, dest in (
            (_cli("vote", *preds, *sel, "-o", str(run_dir / "submission.json"), "--config", args.vote), None),
            (_cli("score", *preds, *sel, "--vote", args.vote, "--json"), run_dir / "score.json"),
        ):
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if res.returncode != 0:
                print(f"vote seed {seed}: {' '.join(cmd[2:])}: {res.stderr.strip()[-300:]}", file=sys.stderr)
                return res.returncode
            if dest is not None:
                dest.write_text(res.stdout)
        s = json.loads((run_dir / "score.json").read_text())
        parts = [by[(m, seed)] for m in args.members]
        worst = max(parts, key=lambda r: r.get("other_cores") or 0.0)
        row = {
            "name": args.name,
            "seed": seed,
            "members": list(args.members),
            "vote": args.vote,
            "command": f"vote {' '.join(preds)} {' '.join(sel)} --config {args.vote}",
            "exit": 0,
            "per_output": s["score_per_output"],
            "per_task": s["score_per_task"],
            "solved": s["n_solved_outputs"],
            "outputs": s["n_outputs"],
            "coverage": (s.get("coverage") or {}).get("per_output"),
            "steps": sum(r.get("steps") or 0 for r in parts),
            "wall_s": round(sum(r["wall_s"] for r in parts), 1),
            "threads": "/".join(sorted({str(r.get("threads")) for r in parts})),
            **{k: worst.get(k) for k in ("load_before", "load_after", "busy_before", "other_cores")},
            "machine": parts[0].get("machine"),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "note": args.note or f"vote of {' + '.join(args.members)}",
        }
        with open(out / "results.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{args.name} seed {seed}: {row['solved']}/{row['outputs']} outputs, per-task {row['per_task']:.3f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("name")
    r.add_argument("--config", required=True)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--checkpoint")
    r.add_argument("--note", default="")
    r.add_argument("--out", default="runs/sweep")
    t = sub.add_parser("table")
    t.add_argument("names", nargs="*")
    t.add_argument("--out", default="runs/sweep")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--out", default="runs/sweep")
    c.add_argument("--vote", default=None)
    v = sub.add_parser("vote")
    v.add_argument("name")
    v.add_argument("members", nargs="+")
    v.add_argument("--out", default="runs/sweep")
    v.add_argument("--vote", default="reference")
    v.add_argument("--note", default="")
    args, rest = ap.parse_known_args()
    if args.cmd == "run":
        bad = [x for x in rest if "=" not in x or x.startswith("-")]
        if bad:
            ap.error(f"unrecognized arguments: {' '.join(bad)}")
        args.overrides = rest  # key=value run-config overrides, anywhere on the line
    elif rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"run": cmd_run, "table": cmd_table, "compare": cmd_compare, "vote": cmd_vote}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
