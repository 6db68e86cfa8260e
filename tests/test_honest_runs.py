"""Honest runs: the answers only score, a checkpoint's trained rows are the ones used, a run does what was asked."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import (
    BROKEN,
    TINY_ARCH,
    run_cli,
    simple_task,
    tiny_config,
    tiny_trm_config,
    write_challenges,
    write_task_dir,
)

from arc_kit.base.errors import ArcKitError
from arc_kit.data import load_tasks
from arc_kit.model.checkpoint import fingerprint, load_checkpoint, save_checkpoint, table_mean
from arc_kit.model.trm import TRM
from arc_kit.run.config import load_run_config
from arc_kit.submission import read_submission, validate_submission

ARCH = TINY_ARCH


def leaky_task(size: int = 3) -> dict:
    """A valid task whose test answer (5x5) is larger than every grid a solver may look at (3x3)."""
    t = simple_task(size=size)
    t["test"][0]["output"] = [[1] * 5 for _ in range(5)]
    return t


# ---------------------------------------------------------------- 1. the run never sees the answers


@pytest.mark.e2e
def test_run_is_identical_with_and_without_solutions_on_disk(tmp_path):
    root = tmp_path / "data"
    path = write_challenges(root, {"a": leaky_task(), "b": simple_task(size=2, colour=3)}, with_solutions=True)
    cfg = tiny_config(path, **{"ttt.max_steps": 3, "inference.views": 2, "model.canvas": "task"})
    with_sol = run_cli(cfg, tmp_path / "with")
    assert with_sol.returncode == 0, with_sol.stderr[-3000:]
    assert (tmp_path / "with" / "score.json").is_file()  # the solutions were found: they score
    (root / "arc-agi_test_solutions.json").unlink()
    blind = run_cli(cfg, tmp_path / "blind")
    assert blind.returncode == 0, blind.stderr[-3000:]
    assert not (tmp_path / "blind" / "score.json").exists()

    a, b = tmp_path / "with", tmp_path / "blind"
    # byte-identical stage inputs: the stages never receive a test output
    for name in ("tasks.json", "config.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert all(
        "output" not in p for t in json.loads((a / "tasks.json").read_text())["tasks"].values() for p in t["test"]
    )
    # the same plan (timings aside), canvas and augmentation names
    timing = {
        "created",
        "train_seq_per_s",
        "infer_seq_per_s",
        "train_seconds",
        "expected_train_seconds",
        "infer_seconds",
        "train_until",
        "train_steps",
        "notes",
    }
    plan_a, plan_b = (json.loads((d / "plan.json").read_text()) for d in (a, b))
    assert {k: v for k, v in plan_a.items() if k not in timing} == {k: v for k, v in plan_b.items() if k not in timing}
    assert plan_a["canvas"] == 4  # 3x3 visible grids + EOS border, not the 5x5 answer
    assert (a / "ttt/model/puzzles.json").read_bytes() == (b / "ttt/model/puzzles.json").read_bytes()
    assert (
        json.loads((a / "run.json").read_text())["tasks_hash"] == json.loads((b / "run.json").read_text())["tasks_hash"]
    )


def test_canvas_margin_makes_room_for_answers_larger_than_anything_visible(tmp_path):
    from arc_kit.run.ttt_setup import ttt_canvas

    task = load_tasks(write_task_dir(tmp_path / "t", {"a": leaky_task()})).tasks["a"]
    assert ttt_canvas(load_run_config(None, ["model.canvas=task"]), [task]) == 4
    assert ttt_canvas(load_run_config(None, ["model.canvas=task", "model.canvas_margin=2"]), [task]) == 6
    assert ttt_canvas(load_run_config(None, ["model.canvas=task", "model.canvas_margin=28"]), [task]) == 30
    with pytest.raises(ArcKitError, match="model.canvas_margin"):
        load_run_config(None, ["model.canvas_margin=-1"])


# ---------------------------------------------------------------- 2. a checkpoint's trained rows are the ones used


def stored_checkpoint(path: Path, names: list[str], canvas: int = 4) -> Path:
    torch.manual_seed(0)
    model = TRM(tiny_trm_config(seq_len=canvas * canvas, num_puzzle_identifiers=len(names)))
    with torch.no_grad():
        model.puzzle_emb.weights.copy_(torch.randn(len(names), ARCH["puzzle_emb_ndim"]) + 3.0)
    save_checkpoint(path, model, names)
    return path


STALE = ["t0|||t1|||0123456789", "t0|||t2|||0987654321", "t1|||t5|||0192837465"]


@pytest.fixture
def three_tasks(tmp_path) -> Path:
    return write_task_dir(tmp_path / "tasks", {f"t{i}": simple_task(size=3, colour=1 + i) for i in range(3)})


@pytest.mark.e2e
def test_ttt_from_a_checkpoint_predicts_with_the_rows_it_trained(tmp_path, three_tasks):
    ck = stored_checkpoint(tmp_path / "ck", ["<blank>", "t0", *STALE, "zz", "t1"])
    cfg = tiny_config(three_tasks, **{"ttt.max_steps": 3, "ttt.augmentations": 2, "inference.views": 3})
    cfg["model"]["halt_max_steps"] = 2  # the checkpoint brings its architecture; steps may still be set
    res = run_cli(cfg, tmp_path / "run", "--checkpoint", str(ck))
    assert res.returncode == 0, res.stderr[-3000:]
    trained = json.loads((tmp_path / "run/ttt/model/puzzles.json").read_text())
    assert trained[0] == "<blank>" and not set(trained) & set(STALE) and "zz" not in trained
    assert [n for n in trained if "|||" not in n] == ["<blank>", "t0", "t1", "t2"]  # identity first, task by task
    used = {json.loads(line)["augmentation"] for line in (tmp_path / "run/predictions.jsonl").read_text().splitlines()}
    assert used and used <= set(trained[1:])
    infer = json.loads((tmp_path / "run/state.json").read_text())["stages"]["infer"]
    assert infer["model"].endswith("ttt/model")

    # without TTT the checkpoint's own rows are used (identity first), and only those rows are loaded
    cfg["ttt"]["enabled"] = False
    res = run_cli(cfg, tmp_path / "plain", "--checkpoint", str(ck))
    assert res.returncode == 0, res.stderr[-3000:]
    used = [json.loads(line) for line in (tmp_path / "plain/predictions.jsonl").read_text().splitlines()]
    assert {p["augmentation"] for p in used if p["task_id"] == "t0"} <= {"t0", *STALE[:2]}
    assert {p["augmentation"] for p in used if p["task_id"] == "t0" and p["rank"] == 0} == {"t0"}
    infer = json.loads((tmp_path / "plain/state.json").read_text())["stages"]["infer"]
    assert infer["puzzle_rows_loaded"] == 3 + 2  # t0: its 3 views, t1: its 2 rows, t2: none (row 0); never "zz"
    assert "zz" not in {p["augmentation"] for p in used}


def test_new_rows_start_at_the_mean_of_the_whole_stored_table(tmp_path):
    import logging

    names = ["<blank>"] + [f"task{i}" for i in range(40)]
    ck = stored_checkpoint(tmp_path / "ck", names)
    full = load_checkpoint(ck)[0].puzzle_emb.weights.detach().clone()
    assert torch.allclose(table_mean(ck), full.mean(0), atol=1e-6)
    from arc_kit.run.ttt_setup import checkpoint_model_for

    cfg = load_run_config(None, [f"model.checkpoint={ck}"])
    model = checkpoint_model_for(cfg, ["<blank>", "task7", "new", "new|||t1|||0123456789"], logging.getLogger("t"))
    table = model.puzzle_emb.weights
    assert table.shape[0] == 4
    assert torch.equal(table[1], full[8])  # a stored row starts from its stored value
    for row in (2, 3):  # new rows: the mean of all 41 rows, not of the 2 loaded
        assert torch.allclose(table[row], full.mean(0), atol=1e-6)
        assert not torch.allclose(table[row], full[[0, 8]].mean(0), atol=1e-3)


@pytest.mark.parametrize("how", ["zero", "normal"])
def test_row_init_sets_only_the_new_rows(tmp_path, how):
    import logging

    from arc_kit.run.ttt_setup import checkpoint_model_for

    names = ["<blank>", "task7", "new", "new|||t1|||0123456789"]
    ck = stored_checkpoint(tmp_path / "ck", ["<blank>"] + [f"task{i}" for i in range(40)])
    full = load_checkpoint(ck)[0].puzzle_emb.weights.detach().clone()
    cfg = load_run_config(None, [f"model.checkpoint={ck}", f"ttt.row_init={how}", "runtime.seed=3"])
    table = checkpoint_model_for(cfg, names, logging.getLogger("t")).puzzle_emb.weights
    assert torch.equal(table[1], full[8])  # a stored row keeps its stored value whatever row_init says
    new = table[2:]
    if how == "zero":
        assert torch.count_nonzero(new) == 0
    else:  # distinct rows at the token embeddings' scale, centred on 0 (the stored rows sit near 3)
        assert not torch.allclose(new[0], new[1])
        assert 0.5 < float(new.std()) * ARCH["hidden_size"] ** 0.5 < 1.5
        assert abs(float(new.mean())) < 0.2
        again = checkpoint_model_for(cfg, names, logging.getLogger("t")).puzzle_emb.weights
        assert torch.equal(again[2:], new)  # seeded by runtime.seed: every process and a resume agree


def test_row_init_normal_from_scratch_leaves_the_blank_row_zero():
    from arc_kit.run.ttt_setup import scratch_model

    arch = [f"model.arch.{k}={v}" for k, v in ARCH.items()]
    mean = scratch_model(load_run_config(None, arch), 4, 6).puzzle_emb.weights
    assert torch.count_nonzero(mean) == 0  # the default: every row starts at zero, as the reference's table
    normal = scratch_model(load_run_config(None, [*arch, "ttt.row_init=normal"]), 4, 6).puzzle_emb.weights
    assert torch.count_nonzero(normal[0]) == 0  # <blank> is never trained
    assert torch.count_nonzero(normal[1:]) == normal[1:].numel()
    assert len({tuple(r.tolist()) for r in normal[1:]}) == 5


def test_row_init_rejects_an_unknown_choice():
    with pytest.raises(ArcKitError, match="config key 'ttt.row_init': expected one of mean, zero, normal"):
        load_run_config(None, ["ttt.row_init=random"])


@pytest.mark.parametrize("steps", [None, 1])
def test_plan_times_inference_at_the_inference_steps(tmp_path, monkeypatch, steps):
    """`inference.steps` below the training steps makes inference cheaper: the plan must time that, not the
    training's supervision steps (else it reserves inference time that training could have used)."""
    import logging
    import time

    from arc_kit.run import train_stage, ttt_setup

    timed: list[int] = []

    def fake_infer_rate(model, *a, **k):
        timed.append(model.config.halt_max_steps)
        return 100.0

    monkeypatch.setattr(train_stage, "measure_infer_rate", fake_infer_rate)
    monkeypatch.setattr(train_stage, "measure_train_rate", lambda *a, **k: 50.0)
    arch = [f"model.arch.{k}={v}" for k, v in ARCH.items()]  # halt_max_steps 2
    cfg = load_run_config(None, [*arch, "runtime.threads=1", f"inference.steps={'null' if steps is None else steps}"])
    env = ttt_setup.StageEnv(tmp_path, cfg, logging.getLogger("t"), None, 1, True, torch.device("cpu"), None, 1)
    model = ttt_setup.scratch_model(cfg, 4, 1)
    targets = list(load_tasks(str(write_task_dir(tmp_path / "tasks", {"t0": simple_task(size=3)}))).tasks.values())
    now = time.time()
    train_stage.plan_training(env, model, 4, targets, [], now + 300, now + 250, resume=False)
    assert timed == [steps or 2]
    assert model.config.halt_max_steps == 2  # training still runs its own supervision steps


def test_fingerprint_is_bounded_and_tracks_kit_written_tables(tmp_path):
    ck = stored_checkpoint(tmp_path / "ck", ["<blank>", "a", "b"])
    copy = tmp_path / "copy"
    shutil.copytree(ck, copy)
    assert fingerprint(ck) == fingerprint(copy)
    doc = yaml.safe_load((ck / "config.yaml").read_text())
    assert len(doc["table_sha256"]) == 64  # recorded as the kit wrote the table
    # a table larger than what is hashed in full: its recorded hash (in config.yaml) still tells changes apart
    model, info = load_checkpoint(ck)
    with torch.no_grad():
        model.puzzle_emb.weights[1, 3] += 1.0
    save_checkpoint(copy, model, info.puzzle_names)
    assert fingerprint(ck, full_bytes=64) != fingerprint(copy, full_bytes=64)


# ---------------------------------------------------------------- 3. a run does what the user asked


def test_tasks_option_starts_a_fresh_selection():
    from arc_kit.cli.main import build_parser
    from arc_kit.cli.run import run_config_from_args

    args = build_parser().parse_args(["run", "--config", "cpu-demo", "--tasks", "arc-agi-2/evaluation"])
    cfg = run_config_from_args(args)
    assert cfg.tasks.source == "arc-agi-2/evaluation" and cfg.tasks.max_size is None
    args = build_parser().parse_args(
        ["run", "--config", "cpu-demo", "--tasks", "my #1_challenges.json", "--checkpoint", "010", "tasks.max_size=12"]
    )
    cfg = run_config_from_args(args)
    assert cfg.tasks.source == "my #1_challenges.json" and cfg.model.checkpoint == "010"  # paths, not YAML
    assert cfg.tasks.max_size == 12  # given again: kept
    args = build_parser().parse_args(["run", "--config", "cpu-demo"])
    assert run_config_from_args(args).tasks.max_size == 8  # without --tasks the config's selection applies


@pytest.mark.e2e
def test_empty_selection_and_bad_config_fail_before_any_directory_is_made(tmp_path, three_tasks):
    out = tmp_path / "run"
    res = run_cli(tiny_config(three_tasks, **{"tasks.ids": ["t0"], "tasks.max_size": 1}), out)
    assert res.returncode == 2 and "leaves no task" in res.stderr and "max_size=1" in res.stderr
    assert not out.exists()
    for key, value, needle in (
        ("ttt.augmentation", "no-such-preset", "ttt.augmentation"),
        ("voting", "no-such-voting", "voting"),
        ("ttt.extra_sources", ["/no/such/dir"], "ttt.extra_sources[0]"),
        ("ttt.train.lr", 0, "ttt.train.lr"),
        ("ttt.train.global_batch_size", 0, "ttt.train.global_batch_size"),
        ("ttt.train.lrr", 0.1, "ttt.train.lrr"),
        ("model.arch.hidden_size", 0, "model.arch.hidden_size"),
        ("budget.train_share", 1.5, "budget.train_share"),
        ("runtime.threads", -1, "runtime.threads"),
        ("runtime.precision", "float16", "runtime.precision"),
        ("inference.batch_size", 0, "inference.batch_size"),
    ):
        res = run_cli(tiny_config(three_tasks, **{key: value}), out)
        assert res.returncode == 2, (key, res.stderr[-2000:])
        assert needle in res.stderr and "Traceback" not in res.stderr, (key, res.stderr[-2000:])
        assert len([line for line in res.stderr.splitlines() if line.startswith("error:")]) == 1
        assert not out.exists(), key


@pytest.mark.e2e
@pytest.mark.parametrize("selection", [{}, {"tasks.max_size": 3}, {"tasks.ids": ["good"]}, {"tasks.limit": 1}])
def test_an_invalid_task_never_goes_missing_whatever_the_selection(tmp_path, selection):
    tasks = {"good": simple_task(size=3, colour=2), "bad": json.loads(BROKEN), "big": simple_task(size=6, colour=4)}
    path = write_challenges(tmp_path / "data", tasks, with_solutions=False)
    cfg = tiny_config(path, **{"ttt.max_steps": 2, "inference.views": 1, **selection})
    res = run_cli(cfg, tmp_path / "run")
    assert res.returncode == 0, res.stderr[-3000:]
    sub = read_submission(tmp_path / "run" / "submission.json")
    assert set(sub) == {"good", "bad", "big"}  # every task of the file, always
    assert validate_submission(sub, load_tasks(path, lenient=True)) == []
    assert len(sub["bad"]) == 2


@pytest.mark.e2e
def test_keep_checkpoint_false_removes_the_ttt_model_and_inference_steps_are_a_setting(tmp_path, three_tasks):
    over = {
        "ttt.max_steps": 3,
        "inference.views": 1,
        "output.keep_checkpoint": False,
        "model.arch.halt_max_steps": 3,
        "inference.steps": 1,
        "inference.early_halt": True,
    }
    res = run_cli(tiny_config(three_tasks, **over), tmp_path / "run")
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (tmp_path / "run/ttt/model").exists()
    assert (tmp_path / "run/predictions.jsonl").stat().st_size > 0
    infer = json.loads((tmp_path / "run/state.json").read_text())["stages"]["infer"]
    # trained with 3 supervision steps, inferred with 1 (early halting can only lower it)
    assert infer["steps"] == 1 and infer["early_halt"] and 0 < infer["mean_steps"] <= 1
    with pytest.raises(ArcKitError, match="inference.steps"):
        load_run_config(None, ["inference.steps=0"])


def test_extra_sources_get_their_own_augmentation_count(tmp_path):
    from arc_kit.model.dataset import TrainData

    ts = load_tasks(write_task_dir(tmp_path / "t", {"a": simple_task(size=3), "x": simple_task(size=3, colour=5)}))
    data = TrainData.from_tasks(list(ts.tasks.values()), [4, 0], canvas=4, use_test_pairs=[False, True])
    assert [len(g) for g in data.groups] == [5, 1]


def test_precision_is_one_rule_for_training_and_inference():
    from arc_kit.run.hardware import setup_torch

    cfg = load_run_config(None, ["runtime.precision=bfloat16", "runtime.device=cpu", "runtime.threads=1"])
    device, autocast, threads = setup_torch(cfg, 1)
    assert device.type == "cpu" and autocast is None and threads == 1  # bf16 only where training uses it too


def test_empty_views_and_the_deadline_round_keep_what_finished(tmp_path, monkeypatch):
    """A view that decoded to no grid is recorded (not recomputed on resume); the data-parallel round in which
    one process hits the deadline still writes what the others finished."""
    import accelerate.utils

    from arc_kit.infer import InferOptions, plan_views, run_inference
    from arc_kit.predictions import done_view_keys

    class Echo(torch.nn.Module):  # answers with the input on even rows, nothing (all PAD) on odd ones
        def predict(self, batch):
            x = batch["inputs"].clone()
            x[batch["puzzle_identifiers"] % 2 == 1] = 0
            return {"preds": x, "q_halt": torch.zeros(x.shape[0])}

    ts = load_tasks(write_task_dir(tmp_path / "t", {"a": simple_task(size=3), "b": simple_task(size=2)}))
    names = {tid: [tid, f"{tid}|||t1|||0123456789"] for tid in ts.tasks}
    rows = {n: i + 1 for i, n in enumerate(n for v in names.values() for n in v)}
    views = plan_views(ts.tasks, names, rows, {t: 4 for t in ts.tasks}, 2)
    out = tmp_path / "out"
    out.mkdir()

    class TwoProcesses:  # this is the main process; the other one asks to stop in the first round
        num_processes, process_index = 2, 0

    monkeypatch.setattr(accelerate.utils, "gather_object", lambda mine: [*mine, (True, [], [], 0, 0)])
    stats = run_inference(
        Echo(),
        views,
        ts.tasks,
        out / "predictions.jsonl",
        InferOptions(
            batch_size=8,
            accelerator=TwoProcesses(),
            show_progress=False,
            empty_path=out / "predictions_empty.jsonl",
        ),
    )
    mine = [v for v in views if v.task_id in ("a", "b")]
    assert stats.written + stats.empty > 0
    done = done_view_keys(out)
    assert done and len(done) == stats.written + stats.empty
    assert any(rows[k[2]] % 2 == 1 for k in done)  # empty views are recorded as done
    assert len(done) <= len(mine)


def test_the_thread_count_is_re_checked_when_steps_slow_down_and_when_a_core_may_be_back():
    """A simulated 2-core machine: two threads are fastest when idle, one when another process takes a core."""
    import torch

    from arc_kit.run.hardware import ThreadRetuner

    before = torch.get_num_threads()
    busy = False
    cost = {(False, 1): 0.15, (False, 2): 0.10, (True, 1): 0.16, (True, 2): 0.50}
    seconds: list[float] = []
    messages: list[str] = []

    def run(retuner, n):
        for _ in range(n):
            retuner(seconds)
            seconds.append(cost[busy, torch.get_num_threads()])

    try:
        torch.set_num_threads(2)
        retuner = ThreadRetuner([1, 2], 2, window=10, trial=4, recheck_seconds=3600, log=messages.append)
        run(retuner, 100)
        assert retuner.current == 2 and not retuner.changes  # steady: no trial steps spent
        busy = True
        run(retuner, 60)
        assert retuner.current == 1 and torch.get_num_threads() == 1
        assert retuner.changes[0]["threads"] == 1 and "step" in retuner.changes[0]["why"]
        assert messages == ["train: threads 2 -> 1 (re-check: step 500 ms vs 100 ms)"]
        run(retuner, 60)
        assert len(retuner.changes) == 1  # one thread on a busy machine: nothing to fix, no trial
        busy = False
        retuner.recheck_seconds = 0.0  # a core may be back: the periodic re-check with fewer threads than cores
        run(retuner, 40)
        assert retuner.current == 2 and torch.get_num_threads() == 2
        assert "periodic" in retuner.changes[-1]["why"] and retuner.changes[-1]["trial_seconds"] == {1: 0.15, 2: 0.1}
    finally:
        torch.set_num_threads(before)


@pytest.mark.e2e
def test_threads_are_chosen_by_measurement(tmp_path, three_tasks):
    import torch

    from arc_kit.run.hardware import choose_threads, usable_cores

    before = torch.get_num_threads()
    try:
        speed = {1: 5.0, 2: 9.0, 4: 9.0}
        best, rates = choose_threads(lambda: speed[torch.get_num_threads()], [1, 2, 4])
        assert best == 2 and rates == speed and torch.get_num_threads() == 2  # fastest; fewer threads on a tie
    finally:
        torch.set_num_threads(before)
    res = run_cli(
        tiny_config(three_tasks, **{"ttt.max_steps": 2, "inference.views": 1, "runtime.threads": 0}), tmp_path / "run"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    plan = json.loads((tmp_path / "run/plan.json").read_text())
    if usable_cores() > 1:  # one thread against every usable core, measured on this machine
        assert {"1", str(usable_cores())} <= set(plan["thread_rates"])
        assert plan["thread_rates"][str(plan["threads"])] == max(plan["thread_rates"].values())
    state = json.loads((tmp_path / "run/state.json").read_text())["stages"]
    assert state["train"]["hardware"]["threads"] == plan["threads"]


def test_inference_from_a_given_checkpoint_uses_the_canvas_training_would(tmp_path):
    """Without test-time training the infer stage loads the given checkpoint itself: coordinate positions run on
    the run's canvas (as training would have put them), canvas positions keep the canvas they were trained on."""
    from arc_kit.run.infer_stage import _load_model

    tasks = load_tasks(write_task_dir(tmp_path / "tasks", {"big": simple_task(size=5)}))  # needs a 6x6 canvas
    for positions, side in (("coords", 6), ("canvas", 4)):
        ck = tmp_path / positions
        save_checkpoint(ck, TRM(tiny_trm_config(positions=positions, num_puzzle_identifiers=1)), ["<blank>"])
        cfg = load_run_config(None, [f"model.checkpoint={ck}", "model.canvas=task", "ttt.enabled=false"])
        model = _load_model(ck, cfg, tasks, 2, "cpu")[0]
        assert model.config.seq_len == side * side, positions
