"""Crop-mode models: bucket-independent predictions, per-bucket carries, checkpoints, refusals, a tiny run."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import assert_valid_submission, run_cli, simple_task, tiny_config, tiny_trm_config, write_task_dir

from arc_kit.augment import AugmentConfig
from arc_kit.base.errors import ArcKitError
from arc_kit.crops import task_crop
from arc_kit.data import Pair, Task, TaskSet
from arc_kit.infer import encode_views, make_batches, plan_views, predict_views, run_model
from arc_kit.model.checkpoint import load_checkpoint, read_checkpoint_info
from arc_kit.model.config import crop_config
from arc_kit.model.dataset import TrainData
from arc_kit.model.train import TrainConfig, Trainer
from arc_kit.model.trm import TRM, TRMConfig
from arc_kit.predictions import read_predictions
from arc_kit.run.config import load_run_config
from arc_kit.run.predict import PredictConfig, predict


def _grid(h, w, seed):
    return np.random.default_rng(seed).integers(0, 10, (h, w)).tolist()


def _tasks():
    def task(tid, h, w, seed):
        return Task(
            id=tid,
            train=[Pair(_grid(h, w, seed + i), _grid(h, w, seed + 10 + i)) for i in range(2)],
            test=[Pair(_grid(h, w, seed + 20), None)],
        )

    # crops 3x4 (16), 4x3 (16), 5x5 (32), 9x7 (64): three buckets, two tasks sharing one
    return [task("a", 2, 3, 0), task("b", 3, 2, 1), task("c", 4, 4, 2), task("d", 8, 6, 3)]


def _model(rows, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(hidden_size=32, H_cycles=2, seq_len=900, puzzle_emb_ndim=32, num_puzzle_identifiers=rows)
    cfg |= dict(halt_max_steps=3, positions="coords", crops=True)
    return TRM(tiny_trm_config(**(cfg | kw)))


def _config(**kw):
    base = dict(global_batch_size=8, max_steps=50, lr=1e-3, lr_warmup_steps=3, ema=False, progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def crops_of(tasks):
    return {t: task_crop(x) for t, x in tasks.items()}


def _views(tasks, names=None):
    tasks = {t.id: t for t in tasks}
    names = names or {tid: [tid] for tid in tasks}
    return tasks, plan_views(tasks, names, {}, {t: 30 for t in tasks}, 8, crops=crops_of(tasks))


def test_a_task_predicts_the_same_alone_or_in_its_bucket():
    tasks, views = _views(_tasks(), {t.id: [t.id, f"{t.id}|||t1|||0123456789"] for t in _tasks()})
    model = _model(1).eval()
    batches = make_batches(views, 64)
    # per view rank (identity, then the transposed versions): bucket 16 holds a and b, then c (32), d (64)
    assert [[v.task_id for v in b] for b in batches] == [["a", "b"], ["c"], ["d"]] * 2
    assert all(len({v.length for v in b}) == 1 for b in batches)
    for batch in batches:
        together = model.predict(
            {k: torch.from_numpy(v) for k, v in encode_views(batch, tasks).items()}, return_logits=True
        )
        for i, v in enumerate(batch):
            enc = encode_views([v], tasks)
            alone = model.predict({k: torch.from_numpy(x) for k, x in enc.items()}, return_logits=True)
            n = v.crop[0] * v.crop[1]
            torch.testing.assert_close(alone["logits"][0, :n], together["logits"][i, :n], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(alone["q_halt"][0], together["q_halt"][i], rtol=1e-4, atol=1e-5)
    one = {(p.task_id, p.test_index, p.augmentation): p for p in predict_views(model, views, tasks, 1)}
    many = {(p.task_id, p.test_index, p.augmentation): p for p in predict_views(model, views, tasks, 64)}
    assert one.keys() == many.keys() and all(one[k].grid == many[k].grid for k in one)
    assert all(max(len(p.grid), len(p.grid[0])) <= 8 for p in one.values())  # never larger than the crop


def test_trainer_keeps_one_carry_per_bucket_and_resumes_exactly(tmp_path):
    def data():
        return TrainData.from_tasks(_tasks(), 3, AugmentConfig(), seed=0, crops=True)

    d = data()
    full = Trainer(_model(len(d.puzzle_names)), d, _config())
    losses = [full.step()["loss"] for _ in range(8)]
    assert set(full.carries) == set(full.sampler.lengths) == {16, 32, 64}
    for n, carry in full.carries.items():
        assert carry.current_data["inputs"].shape == (8, n) and carry.current_data["positions"].shape == (8, n)
        assert carry.z_H.shape[1] == n + 1

    d = data()
    first = Trainer(_model(len(d.puzzle_names)), d, _config())
    half = [first.step()["loss"] for _ in range(4)]
    first.save(tmp_path / "ck")
    d = data()
    resumed = Trainer(_model(len(d.puzzle_names), seed=5), d, _config())
    resumed.load_state(tmp_path / "ck")
    assert set(resumed.carries) == set(first.carries)
    rest = [resumed.step()["loss"] for _ in range(4)]
    np.testing.assert_allclose(half + rest, losses, rtol=1e-5, atol=1e-6)

    # the checkpoint records crops; reloaded, it predicts the same
    info = read_checkpoint_info(tmp_path / "ck")
    assert info.config.crops and info.config.positions == "coords" and info.config.seq_len == 900
    loaded, _ = load_checkpoint(tmp_path / "ck")
    tasks, views = _views(_tasks())
    want = first.ema_model()
    for batch in make_batches(views, 8):
        enc = encode_views(batch, tasks)
        np.testing.assert_array_equal(run_model(loaded, enc, "cpu")[0], run_model(want, enc, "cpu")[0])

    # `arc-kit predict` runs a crop-trained checkpoint on its crops: the identity views' answers are the
    # in-memory crop predictions'
    summary = predict(
        tmp_path / "ck", TaskSet(tasks=tasks), tmp_path / "pred", PredictConfig(views=2, device="cpu", progress=False)
    )
    assert summary["ran"] == 8
    got = {(p.task_id, p.augmentation): p.grid for p in read_predictions(tmp_path / "pred" / "predictions.jsonl")}
    rows = {n: i for i, n in enumerate(d.puzzle_names)}
    identity = plan_views(tasks, {t: [t] for t in tasks}, rows, {t: 30 for t in tasks}, 1, crops=crops_of(tasks))
    compared = 0
    for p in predict_views(want, identity, tasks, 8):
        assert got[(p.task_id, p.augmentation)] == p.grid
        compared += 1
    assert compared == len(got) - sum(k[1] != k[0] for k in got)


@pytest.mark.e2e
def test_compiled_training_with_crops_on_cpu():
    d = TrainData.from_tasks(_tasks()[:2], 1, AugmentConfig(), seed=0, crops=True)  # one bucket: one compile
    eager = Trainer(_model(len(d.puzzle_names), halt_exploration_prob=0.0), d, _config())
    want = [eager.step()["loss"] for _ in range(2)]
    d = TrainData.from_tasks(_tasks()[:2], 1, AugmentConfig(), seed=0, crops=True)
    compiled = Trainer(_model(len(d.puzzle_names), halt_exploration_prob=0.0), d, _config(compile="default"))
    got = [compiled.step()["loss"] for _ in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert compiled.compile_seconds is not None


@pytest.mark.parametrize(
    "over, key, needle",
    [
        (["model.arch.positions=canvas", "model.arch.mlp_t=true"], "model.canvas", "mlp_t"),
        # coordinate positions (which crops need) refuse mlp_t themselves: its sequence length is fixed
        (["model.arch.mlp_t=true"], "model.arch.positions", "mlp_t"),
        (
            ["model.arch.positions=canvas", "model.arch.pos_encodings=learned"],
            "model.canvas",
            "learned position embeddings",
        ),
    ],
)
def test_run_config_refusals_name_model_canvas(over, key, needle):
    with pytest.raises(ArcKitError, match=key) as e:
        load_run_config("cpu-demo", ["model.checkpoint=null", "model.canvas=crop", *over])  # a model built here
    assert needle in str(e.value) and "\n" not in str(e.value)
    # a checkpoint's config: learned positions and non-30-wide canvases refuse; the reference's 30x30 converts
    with pytest.raises(ArcKitError, match="model.canvas.*learned"):
        crop_config(TRMConfig(pos_encodings="learned"))
    with pytest.raises(ArcKitError, match="model.canvas.*100-token canvas"):
        crop_config(TRMConfig(seq_len=100))
    ref = crop_config(TRMConfig(), margin=1)
    assert (ref.positions, ref.crops, ref.crop_margin, ref.seq_len) == ("coords", True, 1, 900)
    with pytest.raises(ArcKitError, match="crops.*positions coords"):
        TRMConfig(crops=True)


@pytest.mark.e2e
def test_cli_refusal_is_one_line(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "arc_kit.cli",
            "run",
            "--config",
            "cpu-demo",
            "--out",
            str(tmp_path / "o"),
            "model.checkpoint=null",  # a model built here (cpu-demo starts from the starter)
            # a canvas-stride model with learned positions cannot be cropped
            "model.arch.positions=canvas",
            "model.arch.pos_encodings=learned",
            "model.canvas=crop",
        ],
        capture_output=True,
        timeout=120,
        text=True,
    )
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "model.canvas" in res.stderr


@pytest.mark.e2e
def test_tiny_run_on_crops_writes_a_valid_submission(tmp_path):
    # tasks of three crop buckets (3x3 -> 16, 5x5 -> 32, 7x7 -> 64 tokens)
    tasks = {f"t{i}": simple_task(n_train=2, size=size, colour=1 + i) for i, size in enumerate((2, 2, 4, 6))}
    tasks_dir = write_task_dir(tmp_path / "tasks", tasks)
    cfg = tiny_config(tasks_dir, **{"model.canvas": "crop", "model.arch.positions": "coords", "ttt.max_steps": 150})
    out = tmp_path / "run"
    res = run_cli(cfg, out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_valid_submission(out, tasks_dir)
    plan = json.loads((out / "plan.json").read_text())
    state = json.loads((out / "state.json").read_text())["stages"]
    assert plan["crops"] and state["train"]["canvas"] == "crop" and state["infer"]["written"] > 0
    assert read_checkpoint_info(out / "ttt" / "model").config.crops


@pytest.mark.e2e
def test_reference_model_on_a_full_crop_is_the_canvas_model():
    """A reference (30x30 canvas) checkpoint run on crops: its positions P + t are 30-wide coordinates, so a
    full 30x30 crop computes exactly the canvas function, and smaller crops run with the same weights."""
    from test_model import reference_model

    full, io = reference_model()
    crop = TRM(crop_config(full.config))
    crop.load_state_dict(full.state_dict())
    crop.eval()
    batch = {k: torch.from_numpy(io[k]) for k in ("inputs", "puzzle_identifiers")}
    want = full.predict(batch, return_logits=True)
    got = crop.predict(dict(batch, positions=torch.arange(900).expand(4, 900)), return_logits=True)
    torch.testing.assert_close(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)
    task = Task(id="t", train=[Pair(_grid(3, 4, 0), _grid(3, 4, 1))], test=[Pair(_grid(3, 4, 2), None)])
    tasks, views = _views([task])
    enc = encode_views(views, tasks)
    assert enc["inputs"].shape == (1, 32)  # a 4x5 crop in the 32-token bucket
    assert run_model(crop, enc, "cpu")[0].shape == (1, 32)


def _train_cli(tmp_path, out, *extra):
    tasks = write_task_dir(tmp_path / "tasks", {f"t{i}": simple_task(size=2 + 2 * i, colour=1 + i) for i in range(3)})
    cmd = [sys.executable, "-m", "arc_kit.cli", "train", "--config", "pretrain-starter", "--out", str(out)]
    over = [f"data.sources=[{tasks}]", "data.augmentations=2", "train.max_steps=4", "train.global_batch_size=8"]
    return subprocess.run([*cmd, *over, "--threads", "1", *extra], capture_output=True, text=True, timeout=300)


@pytest.mark.e2e
def test_pretraining_on_crops_writes_a_crop_model_that_test_time_training_keeps_on_crops(tmp_path):
    ck = tmp_path / "ck"
    r = _train_cli(tmp_path, ck, "data.canvas=crop")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "per-task crops" in r.stderr
    info = read_checkpoint_info(ck)
    assert (info.config.crops, info.config.positions, info.config.seq_len) == (True, "coords", 900)
    # test-time training from it: the crop-trained model stays on crops (no model.canvas needed)
    tasks = write_task_dir(tmp_path / "ttt", {f"u{i}": simple_task(n_train=2, size=3, colour=4 + i) for i in range(2)})
    out = tmp_path / "run"
    res = run_cli(tiny_config(tasks, **{"ttt.max_steps": 4, "inference.views": 2}), out, "--checkpoint", str(ck))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_valid_submission(out, tasks)
    assert read_checkpoint_info(out / "ttt" / "model").config.crops
    # continuing it on the canvas (or with another margin) would keep `crops: true` on a canvas-trained model
    for extra in ((), ("data.canvas=crop", "data.canvas_margin=2")):
        r = _train_cli(tmp_path, tmp_path / "ck2", "--checkpoint", str(ck), *extra)
        assert r.returncode == 2 and "data.canvas" in r.stderr and "canvas_margin=0" in r.stderr, r.stderr


@pytest.mark.e2e
def test_pretraining_refuses_crops_with_learned_positions_naming_the_key(tmp_path):
    r = _train_cli(
        tmp_path, tmp_path / "ck", "data.canvas=crop", "model.positions=canvas", "model.pos_encodings=learned"
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "data.canvas" in r.stderr and "learned" in r.stderr
    assert not (tmp_path / "ck" / "model.safetensors").exists()


@pytest.mark.e2e
def test_compiled_inference_follows_eager_across_buckets_and_early_halt():
    tasks, views = _views(_tasks(), {t.id: [t.id, f"{t.id}|||t1|||0123456789"] for t in _tasks()})
    model = _model(1).eval()
    with torch.no_grad():  # a q head that halts some rows after the first step: early halt shrinks the batch
        model.q_head.weight.normal_(0, 1.0)
        model.q_head.bias.zero_()
    batches = [encode_views(b, tasks) for b in make_batches(views, 64)]
    # run_model: the inference stage's path (torch.inference_mode), three bucket lengths
    want = [run_model(model, b, "cpu", early_halt=True) for b in batches]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.compile_inference()
        got = [run_model(model, b, "cpu", early_halt=True) for b in batches]
    finally:
        torch.set_num_threads(threads)
    assert "_compiled_step" not in dict(model.named_modules()) and "_compiled_step" not in model.state_dict()
    halted_early = 0
    for (w_tok, w_q, w_steps), (g_tok, g_q, g_steps) in zip(want, got, strict=True):
        assert np.array_equal(w_steps, g_steps) and np.array_equal(w_tok, g_tok)
        np.testing.assert_allclose(w_q, g_q, rtol=1e-4, atol=1e-5)
        halted_early += int((w_steps < 3).sum())
    assert halted_early > 0  # the early-halt path (a shrinking batch) was compiled too


def test_one_crop_rule_for_runs_and_checkpoints():
    # a scratch run model with canvas positions is built on the 30x30 grid and converted, as a checkpoint's is
    cfg = load_run_config("cpu-demo", ["model.checkpoint=null", "model.canvas=crop", "model.arch.positions=canvas"])
    assert cfg.model.canvas == "crop"
    # the same refusal text whichever key asked for crops
    for key in ("model.canvas", "data.canvas"):
        with pytest.raises(ArcKitError) as e:
            crop_config(TRMConfig(mlp_t=True), key=key)
        assert str(e.value) == f"config key '{key}': crop cannot be used with mlp_t (its sequence length is fixed)"


def test_a_checkpoint_that_fixes_its_canvas_says_which_canvas_runs():
    from arc_kit.run.checks import canvas_notice

    def said(canvas, stored):
        return canvas_notice(load_run_config("cpu-demo", [f"model.canvas={canvas}"]), stored)

    cropped = TRMConfig(positions="coords", crops=True)  # margin 0, as cpu-demo's
    (line,) = said("task", cropped)
    assert line.startswith("model.canvas: task not used") and "per-task crops (margin 0)" in line
    assert said("crop", cropped) == [] and said("task", cropped) == [line]
    margin = canvas_notice(load_run_config("cpu-demo", ["model.canvas=crop", "model.canvas_margin=2"]), cropped)
    assert margin == ["model.canvas_margin: 2 not used: the checkpoint's crops keep their margin, 0"]
    reference = TRMConfig()  # canvas positions on the 30x30 canvas
    (line,) = said("task", reference)
    assert line == "model.canvas: task not used: the checkpoint's positions fix its canvas at 30x30"
    assert said(30, reference) == [] and said("crop", reference) == []  # crops convert it (test above)
    assert said("task", TRMConfig(positions="coords")) == []  # coordinate positions run on the run's canvas


def test_a_checkpoint_that_cannot_run_on_crops_is_refused_before_the_run_starts(tmp_path):
    from arc_kit.model.checkpoint import save_checkpoint
    from arc_kit.run.checks import check_run_inputs

    ck = tmp_path / "learned"
    model = TRM(tiny_trm_config(pos_encodings="learned", seq_len=100, num_puzzle_identifiers=1))
    save_checkpoint(ck, model, ["<blank>"])
    cfg = load_run_config("cpu-demo", [f"model.checkpoint={ck}", "model.canvas=crop"])
    with pytest.raises(ArcKitError) as e:
        check_run_inputs(cfg, "cpu-demo")
    assert str(e.value).startswith("cpu-demo: config key 'model.canvas'") and "learned" in str(e.value)
    notices = check_run_inputs(load_run_config("cpu-demo", [f"model.checkpoint={ck}"]), "cpu-demo")
    (line,) = [n for n in notices if n.startswith("model.canvas")]  # besides model.arch's
    assert line == "model.canvas: task not used: the checkpoint's positions fix its canvas at 10x10"
