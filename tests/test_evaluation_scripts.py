"""The sweep harness's load accounting and the offline lever analysis (evaluation/sweep.py, evaluation/levers.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EVALUATION = Path(__file__).resolve().parents[1] / "evaluation"


@pytest.fixture()
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(EVALUATION))
    import levers
    import sweep

    return sweep, levers


@pytest.mark.e2e
def test_cpu_accounting_sees_a_child_and_separates_it_from_other_processes(scripts):
    sweep, _ = scripts
    busy0, own0 = sweep._busy_cpu_s(), sweep._children_cpu_s()
    subprocess.run(
        [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"]
    )
    busy1, own1 = sweep._busy_cpu_s(), sweep._children_cpu_s()
    assert own1 - own0 >= 0.45  # the waited-for child's CPU time
    assert busy1 - busy0 >= (own1 - own0) - 0.05  # the machine's busy time includes it (clock ticks)


def test_rows_are_under_load_by_other_processes_not_by_the_lagging_load_average(scripts):
    sweep, _ = scripts
    # right after the previous seed's run the load average reads ~2 although nothing else runs
    assert not sweep._under_load({"load_before": 1.99, "busy_before": 0.05, "other_cores": 0.02})
    assert sweep._under_load({"load_before": 0.1, "busy_before": 0.0, "other_cores": 0.19})
    assert sweep._under_load({"load_before": 0.1, "busy_before": 1.5, "other_cores": 0.0})
    assert sweep._under_load({"load_before": 0.9})  # older rows: the load average is all there is
    assert not sweep._under_load({"load_before": 0.2})


def _line(snapshot, grid, tid="t", view="t"):
    d = {"task_id": tid, "test_index": 0, "augmentation": view, "grid": grid, "q_halt": 0.0}
    return json.dumps(d | ({"snapshot": snapshot} if snapshot is not None else {}))


def test_split_final_keeps_the_final_models_lines_only(scripts, tmp_path):
    _, levers = scripts
    lines = [_line(None, [[1]]), _line(1.0, [[2]]), _line(0.6, [[3]]), _line(0.8, [[4]])]
    (tmp_path / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    cons = [
        json.dumps({"task_id": "t", "test_index": 0, "augmentation": "t", "snapshot": s, "scores": {}})
        for s in (1.0, 0.6)
    ]
    (tmp_path / "consistency.jsonl").write_text("\n".join(cons) + "\n")
    d = levers.split_final(tmp_path)
    kept = [json.loads(x)["grid"] for x in (d / "predictions.jsonl").read_text().splitlines()]
    assert kept == [[[1]], [[2]]]  # a line without a snapshot is the final model's
    assert [json.loads(x)["snapshot"] for x in (d / "consistency.jsonl").read_text().splitlines()] == [1.0]


def test_lever_table_pairs_each_lever_with_the_baseline_per_seed(scripts):
    _, levers = scripts

    def m(solved, tasks):
        return {
            "solved": solved,
            "outputs": 4,
            "per_output": solved / 4,
            "per_task": sum(tasks.values()) / 2,
            "coverage": 0.5,
            "tasks": tasks,
        }

    runs = {}
    for seed in (0, 1):
        runs[seed] = {lever: m(1, {"a": 1.0, "b": 0.0}) for lever, _, _ in levers.LEVERS}
        runs[seed]["+snapshots"] = m(2, {"a": 1.0, "b": 1.0})  # solves b in both seeds
    lines = levers.table("demo", runs)
    row = next(x for x in lines if x.startswith("| +snapshots |"))
    assert "| +0.500 +0.500 | +0.500 (+0.000, " in row  # per seed; then paired over tasks (a: 0, b: +1)
    p_not_better = float(row.rsplit(", ", 1)[1].split(")")[0])
    assert 0.2 < p_not_better < 0.3  # resampling 2 tasks: both are a with probability 1/4
    base = next(x for x in lines if x.startswith("| baseline |"))
    assert base.endswith("| - | - |")


def test_coverage_of_a_run_whose_views_all_decoded_empty_is_zero_not_missing(scripts, tmp_path):
    sweep, _ = scripts
    assert sweep._coverage(tmp_path, {"coverage": {"per_task": 0.2, "per_output": 0.25}}) == 0.25
    assert sweep._coverage(tmp_path, {"coverage": None}) is None  # no inference: nothing to cover
    (tmp_path / "predictions.jsonl").write_text("")
    assert sweep._coverage(tmp_path, {"coverage": None}) == 0.0


def test_lever_table_leaves_out_levers_a_run_did_not_measure(scripts):
    _, levers = scripts
    tasks = {"a": 1.0, "b": 0.0}
    m = {"solved": 1, "outputs": 2, "per_output": 0.5, "per_task": 0.5, "coverage": 0.5, "tasks": tasks}
    lines = levers.table("plain", {0: {"baseline": m, "+invariants": m}})  # no snapshots, no consistency scores
    rows = [x.split(" |")[0] for x in lines if x.startswith("| ") and not x.startswith("| lever")]
    assert rows == ["| baseline", "| +invariants"]


def _sweep_run(out: Path, name: str, seed: int, grids: list, tasks: Path) -> dict:
    d = out / name / f"seed-{seed}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"tasks: {{source: {tasks}}}\n")
    lines = [{"task_id": "t", "test_index": 0, "augmentation": "t", "grid": g, "q_halt": 0.0} for g in grids]
    (d / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    row = {"name": name, "seed": seed, "per_output": 0.0, "per_task": 0.0, "solved": 0, "outputs": 1}
    return row | {"steps": 100, "wall_s": 60.0, "threads": 2, "load_before": 0.1, "other_cores": 0.01 * (seed + 1)}


def test_sweep_vote_votes_two_configs_together_seed_by_seed(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    task = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]], "output": [[2]]}]}
    (tasks / "t.json").write_text(json.dumps(task))
    out = tmp_path / "sweep"
    # a alone ranks [[3]] first (2 votes); a + b: [[2]] gets 3 votes
    rows = [_sweep_run(out, "a", 0, [[[3]], [[3]], [[2]]], tasks), _sweep_run(out, "b", 0, [[[2]], [[2]]], tasks)]
    rows.append(_sweep_run(out, "a", 1, [[[2]]], tasks))  # seed 1 has no b: not voted
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, str(EVALUATION / "sweep.py"), "vote", "ab", "a", "b", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    voted = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()][-1]
    assert voted["name"] == "ab" and voted["seed"] == 0 and voted["members"] == ["a", "b"]
    assert voted["solved"] == 1 and voted["steps"] == 200 and voted["wall_s"] == 120.0
    assert voted["other_cores"] == 0.01  # the worst member's load
    sub = json.loads((out / "ab" / "seed-0" / "submission.json").read_text())
    assert sub["t"][0]["attempt_1"] == [[2]]
    assert not (out / "ab" / "seed-1").exists()


def _curve_run(out: Path, name: str, seed: int, solved: int, steps: int, other_cores: float = 0.01) -> None:
    run = out / name / f"seed-{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("ttt:\n  train:\n    global_batch_size: 32\n")
    (run / "report.md").write_text("per-task score (pass@2):   0.2391  95% CI [0.0870, 0.4130]  (16 tasks)\n")
    row = {"name": name, "seed": seed, "solved": solved, "outputs": 20, "steps": steps, "load_before": 0.2}
    row |= {"busy_before": 0.0, "other_cores": other_cores}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def test_compute_curve_fits_the_gain_per_doubling_and_leaves_loaded_rows_out(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EVALUATION))
    import curve

    # solved = 1 + 2 log2(sequences per task); sequences per task = steps x 32 / 16 = 2 steps
    for seed, solved in ((0, 9), (1, 9)):
        _curve_run(tmp_path, "one", seed, solved, steps=8)  # 16 sequences per task: 1 + 2*4
    _curve_run(tmp_path, "two", 0, 11, steps=16)  # 32 per task: 1 + 2*5
    _curve_run(tmp_path, "two", 1, 0, steps=16, other_cores=0.5)  # under load: listed, left out
    _curve_run(tmp_path, "four", 0, 13, steps=32)
    points = curve.load_points(tmp_path, ["2=two", "1=one", "4=four"])
    assert [p.multiple for p in points] == [1.0, 2.0, 4.0]
    assert [len(p.runs) for p in points] == [2, 2, 1] and [len(p.used) for p in points] == [2, 1, 1]
    f = curve.fit(points)
    assert f.n == 4 and abs(f.b - 2) < 1e-9 and abs(f.a - 1) < 1e-9 and abs(f.r2 - 1) < 1e-9
    assert abs(f.predict(64) - 13) < 1e-9
    rows = curve.table(points, minutes=9)
    assert "| 2x | 18 | 1 | 11, 0 (under load, left out) (of 20) | 11.0 | 16 | 32 |" in rows


def test_compute_curve_command_prints_the_fit_and_draws_the_png(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(EVALUATION))  # matplotlib comes with .[test] (the plot extra)
    import curve

    _curve_run(tmp_path, "a", 0, 3, steps=100)
    _curve_run(tmp_path, "b", 0, 5, steps=400)
    png = tmp_path / "curve.png"
    argv = ["--out", str(tmp_path), "--point", "1=a", "--point", "4=b", "--png", str(png), "--gpu-seq-per-s", "1000"]
    assert curve.main(argv) == 0
    out = capsys.readouterr().out
    assert "+1.00 outputs per doubling" in out and "Projection, not a measurement" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
