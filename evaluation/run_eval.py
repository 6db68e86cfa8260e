"""Run a config on a public evaluation set with `arc-kit run` and append one row to the results table.

    python evaluation/run_eval.py --config cpu-demo [--tasks arc-agi-1/evaluation] [--out runs/eval-cpu-demo]
                                  [--checkpoint DIR] [--table evaluation/README.md] [--note "..."] [key=value ...]

The row (date, config + hash, hardware, budget and wall time, steps, per-output and per-task score with the
95% bootstrap interval) goes under the `<!-- results -->` marker of evaluation/README.md (or of --table).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "<!-- results -->"
HEADER = (
    "| date | config | tasks | hardware | budget / wall | training | per-output | per-task (95% CI) | note |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)


def table_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    return HERE / "README.md"


def append_row(path: Path, row: str) -> None:
    """Insert `row` at the end of the table that follows MARKER (the file and table are created when missing)."""
    if not path.is_file():
        path.write_text(f"# Results of `evaluation/run_eval.py`\n\n{MARKER}\n{HEADER}", encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    if MARKER not in text:
        text = text.rstrip("\n") + f"\n\n{MARKER}\n{HEADER}"
    head, tail = text.split(MARKER, 1)
    lines = tail.split("\n")
    # the table: header lines right after the marker, then rows until the first line that is not a table line
    i = 1
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    if i == 1:  # marker without a table under it
        lines[1:1] = HEADER.rstrip("\n").split("\n")
        i = 3
    lines.insert(i, row)
    path.write_text(head + MARKER + "\n".join(lines), encoding="utf-8")


def describe_hardware(hw: dict, processes: int) -> str:
    if hw.get("gpu"):
        return f"{hw.get('gpus', 1)}x {hw['gpu']}" + (f" ({processes} proc)" if processes > 1 else "")
    return f"CPU {hw.get('cores_free', '?')}/{hw.get('cpu_cores', '?')} cores, {hw.get('threads', '?')} threads"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--tasks", default=None, help="evaluation set (default: the config's tasks.source)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--table", default=None, help="results table file (default: see above)")
    ap.add_argument("--note", default="")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out instead of starting fresh")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    name = Path(args.config).stem
    out = Path(args.out or f"runs/eval-{name}")
    cmd = [sys.executable, "-m", "arc_kit.cli", "run", "--config", args.config, "--out", str(out)]
    cmd += (["--tasks", args.tasks] if args.tasks else []) + (
        ["--checkpoint", args.checkpoint] if args.checkpoint else []
    )
    cmd += ([] if args.resume else ["--fresh"]) + args.overrides
    print("running:", " ".join(cmd), file=sys.stderr)
    t0 = time.time()
    rc = subprocess.run(cmd).returncode
    wall = time.time() - t0
    if rc != 0 or not (out / "score.json").is_file():
        print(
            f"run_eval: the run exited {rc} without score.json (no solutions, or no submission): no row added",
            file=sys.stderr,
        )
        return 1
    score = json.loads((out / "score.json").read_text())
    manifest = json.loads((out / "run.json").read_text())
    stages = json.loads((out / "state.json").read_text())["stages"]
    import yaml

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    hw = stages.get("train", {}).get("hardware") or stages.get("infer", {}).get("hardware") or {}
    train = stages.get("train", {})
    lo, hi = score["ci95"]
    row = (
        "| "
        + " | ".join(
            [
                time.strftime("%Y-%m-%d"),
                f"`{name}` ({manifest['config_hash'][:8]}"
                + (" " + " ".join(args.overrides) if args.overrides else "")
                + ")",
                f"{score.get('source') or cfg['tasks']['source']} ({score['n_tasks']} tasks)",
                describe_hardware(hw, cfg["runtime"]["num_processes"]),
                f"{cfg['budget']['total_minutes']:g} min / {wall / 60:.1f} min",
                f"{train.get('steps', 0)} steps"
                if train.get("status") in ("done", "timeout", "kept")
                else train.get("status", "-"),
                f"{score['score_per_output']:.4f} ({score['n_solved_outputs']}/{score['n_outputs']})",
                f"{score['score_per_task']:.4f} [{lo:.3f}, {hi:.3f}]",
                args.note or "-",
            ]
        )
        + " |"
    )
    path = table_path(args.table)
    append_row(path, row)
    print(row)
    print(f"appended to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
