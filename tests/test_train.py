"""Trainer: determinism, exact resume, stop conditions, frozen network, data parallel, and learning a real task."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_trm_config

from arc_kit.augment import AugmentConfig
from arc_kit.base.errors import ArcKitError
from arc_kit.data import Pair, Task, load_tasks
from arc_kit.encoding import decode_grid, encode_grid
from arc_kit.model.checkpoint import load_checkpoint
from arc_kit.model.dataset import TrainData
from arc_kit.model.train import NonFiniteLoss, TrainConfig, Trainer
from arc_kit.model.trm import TRM, TRMConfig


def _task(tid="t1", size=3, n_train=3):
    def grid(i):
        return [[(r * size + c + i) % 5 + 1 for c in range(size)] for r in range(size)]

    return Task(id=tid, train=[Pair(grid(i), grid(i + 1)) for i in range(n_train)], test=[Pair(grid(9), grid(10))])


def _data():
    return TrainData.from_tasks([_task("a"), _task("b", n_train=2)], 2, seed=0, canvas=4)


def _model(data, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(hidden_size=32, H_cycles=2, puzzle_emb_ndim=32, halt_max_steps=3)
    cfg |= dict(seq_len=data.seq_len, num_puzzle_identifiers=len(data.puzzle_names))
    return TRM(tiny_trm_config(**(cfg | kw)))


def _config(**kw):
    base = dict(
        global_batch_size=8, max_steps=50, lr=1e-3, lr_warmup_steps=3, ema=True, ema_rate=0.9, progress=False, seed=0
    )
    base.update(kw)
    return TrainConfig(**base)


def test_deterministic_for_a_seed():
    runs = []
    for _ in range(2):
        data = _data()
        tr = Trainer(_model(data), data, _config())
        runs.append([tr.step()["loss"] for _ in range(4)])
    assert runs[0] == runs[1]
    data = _data()
    other = Trainer(_model(data), data, _config(seed=1))
    assert [other.step()["loss"] for _ in range(4)] != runs[0]


def test_resume_continues_the_same_loss_curve(tmp_path):
    n = 4
    data = _data()
    full = Trainer(_model(data), data, _config())
    full_losses = [full.step()["loss"] for _ in range(2 * n)]

    data = _data()
    first = Trainer(_model(data), data, _config())
    half = [first.step()["loss"] for _ in range(n)]
    first.save(tmp_path / "ckpt", extra_config={"data": {"note": "test"}})

    data = _data()
    resumed = Trainer(_model(data, seed=123), data, _config())  # different init: everything comes from disk
    resumed.load_state(tmp_path / "ckpt")
    assert resumed.step_count == n
    rest = [resumed.step()["loss"] for _ in range(n)]
    np.testing.assert_allclose(half + rest, full_losses, rtol=1e-6, atol=1e-7)

    # the checkpoint's model is the EMA model, and loads for prediction
    model, info = load_checkpoint(tmp_path / "ckpt")
    assert info.extra["train"]["lr"] == 1e-3 and info.extra["data"] == {"note": "test"}
    ema = first.ema_model()
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), ema.named_parameters(), strict=False):
        assert n1 == n2 and torch.equal(p1, p2)
    assert torch.equal(model.puzzle_emb.weights, first.model.puzzle_emb.weights)


def test_stop_conditions_and_log(tmp_path):
    data = _data()
    tr = Trainer(_model(data), data, _config(max_steps=6), log_path=tmp_path / "log.jsonl")
    out = tr.train(until=time.time() - 1)
    assert tr.step_count == 0 and out["stopped"] == "deadline_or_callback"
    out = tr.train(should_stop=lambda: tr.step_count >= 2)
    assert tr.step_count == 2
    out = tr.train()
    assert tr.step_count == 6 and out["stopped"] == "steps"
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 7))
    assert {"loss", "exact_accuracy", "steps", "lr", "accuracy", "count"} <= set(lines[-1])


def test_progress_bar_counts_the_steps_that_fit_by_the_deadline(monkeypatch):
    from arc_kit.base import progress

    totals = []
    update = progress.StatusLine.update  # stderr is no terminal under pytest: the status line is the bar

    def counting_update(self, n=1):
        totals.append(self.total)
        return update(self, n)

    monkeypatch.setattr(progress.StatusLine, "update", counting_update)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = _data()
        tr = Trainer(_model(data), data, _config(max_steps=1_000_000, progress=True))
        tr.train(until=time.time() + 1.5)
    finally:
        torch.set_num_threads(threads)
    # the deadline stops training after a few steps: the bar's total (its time left) follows it, not max_steps
    assert len(totals) == tr.step_count >= 2
    assert all(t < 1_000_000 for t in totals)
    assert tr.step_count <= totals[-1] <= tr.step_count + 2
    assert tr.steps_by(time.time() - 1) == tr.step_count and Trainer(_model(data), data, _config()).steps_by(0) is None


def test_nan_loss_raises_clear_error():
    data = _data()
    model = _model(data)
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    tr = Trainer(model, data, _config())
    with pytest.raises(NonFiniteLoss, match="step 1: loss is nan"):
        tr.step()


def test_frozen_network_trains_embeddings_only():
    data = _data()
    model = _model(data)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    table = model.puzzle_emb.weights.clone()
    tr = Trainer(model, data, _config(freeze_network=True, lr_warmup_steps=0))
    for _ in range(3):
        tr.step()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    changed = (model.puzzle_emb.weights != table).any(-1)
    assert changed.any() and not changed[0]  # trained rows moved; the blank row is never in a batch


def _dp_worker(out_path):
    """One process of a 2-process CPU data-parallel run (launched by accelerate.debug_launcher)."""
    torch.set_num_threads(1)
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    data = _data()
    tr = Trainer(_model(data, halt_exploration_prob=0.0), data, _config(), accelerator=acc)
    losses = [tr.step()["loss"] for _ in range(5)]
    table = tr.model.puzzle_emb.weights
    gathered = [torch.empty_like(table) for _ in range(2)]
    torch.distributed.all_gather(gathered, table)
    param_sum = float(sum(p.detach().double().sum() for p in tr.model.parameters()))
    # train(): sync points every 3 steps, where the processes agree on stopping and plan the deadline's step
    tr.config.log_every = 3
    last = tr.train(max_steps=11, until=time.time() + 600)
    if acc.is_main_process:
        out_path.write_text(
            json.dumps(
                {
                    "losses": losses,
                    "tables_equal": bool(torch.equal(*gathered)),
                    "param_sum": param_sum,
                    "trained_to": tr.step_count,
                    "stopped": last["stopped"],
                }
            )
        )


@pytest.mark.e2e
def test_two_process_data_parallel_follows_single_process(tmp_path):
    # debug_launcher forks: a parent whose OpenMP pool already ran (earlier tests) can deadlock its
    # children, so launch from a fresh interpreter.
    out = tmp_path / "dp.json"
    script = (
        f"import sys, pathlib; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_train; "
        f"from accelerate import debug_launcher; "
        f"debug_launcher(test_train._dp_worker, args=(pathlib.Path({str(out)!r}),), num_processes=2)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=240)
    dp = json.loads(out.read_text())
    data = _data()
    single = Trainer(_model(data, halt_exploration_prob=0.0), data, _config())
    losses = [single.step()["loss"] for _ in range(5)]
    # same global batches, gradients summed across processes: equal up to float summation order
    print(
        "2-process vs 1-process max relative loss difference:",
        max(abs(a - b) / abs(b) for a, b in zip(dp["losses"], losses, strict=False)),
    )
    np.testing.assert_allclose(dp["losses"], losses, rtol=1e-4)
    assert dp["tables_equal"]  # sign-SGD gathered every process's rows
    assert dp["trained_to"] == 11 and dp["stopped"] == "steps"
    assert dp["param_sum"] == pytest.approx(
        float(sum(p.detach().double().sum() for p in single.model.parameters())), rel=1e-5
    )


@pytest.mark.e2e
def test_learns_an_arc_task_and_solves_its_test_input():
    """A tiny TRM trained on the 4 demonstrations of ARC-AGI-1 training task 0d3d703e (a colour mapping),
    under dihedral augmentation and translation on a 6x6 canvas, predicts the held-out test output exactly."""
    task = load_tasks("arc-agi-1/training", ids=["0d3d703e"]).tasks["0d3d703e"]
    data = TrainData.from_tasks(
        [task], num_augmentations=7, augment_config=AugmentConfig(colors=False), seed=0, canvas=6, translate=True
    )
    torch.manual_seed(0)
    model = TRM(
        TRMConfig(
            hidden_size=64,
            num_heads=4,
            L_layers=2,
            H_cycles=1,
            L_cycles=2,
            expansion=4,
            seq_len=36,
            puzzle_emb_ndim=64,
            puzzle_emb_len=1,
            num_puzzle_identifiers=len(data.puzzle_names),
            halt_max_steps=3,
        )
    )
    tr = Trainer(
        model,
        data,
        TrainConfig(
            global_batch_size=32, max_steps=250, lr=3e-3, lr_warmup_steps=20, ema=False, progress=False, seed=0
        ),
    )
    last = tr.train()
    assert last["loss"] < 0.2
    x = torch.from_numpy(encode_grid(task.test[0].input, 6).astype(np.int32))[None]
    ids = torch.tensor([data.puzzle_names.index(task.id)], dtype=torch.int32)
    pred = decode_grid(model.predict({"inputs": x, "puzzle_identifiers": ids})["preds"][0].numpy(), 6)
    assert pred == task.test[0].output


def test_cli_train_writes_checkpoint_and_resumes(tmp_path, capsys):
    from helpers import simple_task, tiny_train_args, write_task_dir

    from arc_kit.cli.main import main

    tasks = write_task_dir(tmp_path / "tasks", {"x1": simple_task(), "x2": simple_task(colour=3)})
    out = tmp_path / "run"
    tiny = tiny_train_args()
    argv = ["train", "--config", "pretrain-arc-agi-1", "--tasks", str(tasks), "--out", str(out)]
    assert main(argv + tiny + ["train.max_steps=3"]) == 0
    model, info = load_checkpoint(out)
    assert info.config.seq_len == 16 and info.puzzle_names[0] == "<blank>" and len(info.puzzle_names) == 9
    assert info.extra["data"]["demo_sources"] == [str(tasks)]
    assert main(argv + tiny + ["train.max_steps=3"]) == 2  # refuses to overwrite
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(argv + ["--resume"] + tiny + ["train.max_steps=5"]) == 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_host_reads_metrics_only_at_sync_points_and_batches_are_prefetched(tmp_path, monkeypatch):
    from arc_kit.model.batches import BatchPrefetcher, BatchSampler

    data = _data()
    tr = Trainer(_model(data), data, _config(max_steps=12, log_every=5), log_path=tmp_path / "log.jsonl")
    reads = []
    read = Trainer._read_metrics
    monkeypatch.setattr(Trainer, "_read_metrics", lambda self, *a: reads.append(self.step_count) or read(self, *a))
    seen = []
    build = BatchPrefetcher._build
    monkeypatch.setattr(BatchPrefetcher, "_build", lambda self: seen.append(build(self)) or seen[-1])
    out = tr.train()
    assert tr.step_count == 12 and out["stopped"] == "steps" and np.isfinite(out["loss"])
    assert reads == [1, 5, 10, 12]  # first step, every log_every steps, the last step
    assert [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()] == [5, 10]
    # one batch built ahead (13 for 12 steps), each equal to the sampler's batch for the seed
    ref = BatchSampler(data, 8, seed=0)
    assert len(seen) == 13
    for batch in seen:
        for k, v in ref.next_batch().items():
            np.testing.assert_array_equal(batch[k].numpy(), v)


def test_nan_between_sync_points_is_caught_and_never_saved(tmp_path):
    data = _data()
    tr = Trainer(_model(data), data, _config(max_steps=40, log_every=10, checkpoint_every=10))

    def poison():
        if tr.step_count == 12:
            with torch.no_grad():
                tr.model.lm_head.weight.fill_(float("nan"))
        return False

    with pytest.raises(NonFiniteLoss, match="step 13: loss is nan"):
        tr.train(should_stop=poison, checkpoint_dir=tmp_path / "ck")
    assert tr.step_count == 20  # found at the next sync point
    saved = load_checkpoint(tmp_path / "ck")[0]  # the step-10 checkpoint, finite
    assert all(torch.isfinite(p).all() for p in saved.parameters())
    with pytest.raises(NonFiniteLoss):
        tr.save(tmp_path / "ck")


@pytest.mark.e2e
def test_compiled_training_step_follows_eager():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = {}
        for mode in ("off", "default"):
            data = _data()
            tr = Trainer(_model(data, halt_exploration_prob=0.0), data, _config(compile=mode))
            losses[mode] = [tr.step()["loss"] for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(losses["default"], losses["off"], rtol=1e-4)
    # the compiling first step is kept out of the step times that plan the deadline
    assert tr.compile_seconds is not None and len(tr._step_seconds) == 2
    with pytest.raises(ArcKitError, match="compile.* off or default"):
        Trainer(_model(_data()), _data(), _config(compile="max"))


@pytest.mark.e2e
def test_compiled_training_runs_to_a_deadline():
    # the compiling first step leaves no step time to plan the deadline from: planning starts at the second step
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = _data()
        tr = Trainer(_model(data, halt_exploration_prob=0.0), data, _config(compile="default"))
        out = tr.train(until=time.time() + 3600, max_steps=3)
    finally:
        torch.set_num_threads(threads)
    assert out["stopped"] == "steps" and tr.step_count == 3
    assert tr.compile_seconds is not None and len(tr._step_seconds) == 2


def test_coordinate_position_model_trains_and_resumes_exactly(tmp_path):
    data = _data()  # 4x4 canvas: square crops, so the model derives the coordinate positions itself
    full = Trainer(_model(data, positions="coords"), data, _config())
    losses = [full.step()["loss"] for _ in range(4)]
    data = _data()
    first = Trainer(_model(data, positions="coords"), data, _config())
    half = [first.step()["loss"] for _ in range(2)]
    first.save(tmp_path / "ck")
    model, info = load_checkpoint(tmp_path / "ck")
    assert info.config.positions == "coords" and model.rotary_emb.cos.shape[0] == 900 + 1
    resumed = Trainer(model, data, _config())
    resumed.load_state(tmp_path / "ck")
    np.testing.assert_allclose(half + [resumed.step()["loss"] for _ in range(2)], losses, rtol=1e-6, atol=1e-7)
