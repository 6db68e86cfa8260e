"""Budget: deadline arithmetic, train/infer planning from throughput, the child-process watchdog, fault hooks."""

import signal
import sys
import time
from pathlib import Path

import pytest

from arc_kit.run.faults import fault_requested, inject_fault
from arc_kit.run.hardware import free_cores
from arc_kit.run.plan import Budget, plan_run
from arc_kit.run.watchdog import watch_child


def test_budget_deadline_keeps_the_safety_margin():
    b = Budget(total_minutes=2, safety_margin_minutes=0.5, start=1000.0)
    assert b.end == 1120.0
    assert b.deadline == 1090.0
    assert b.left(now=1080.0) == 10.0
    assert b.left(now=1100.0) < 0


def _plan(**kw):
    args = dict(
        n_test_inputs=100,
        infer_views=10,
        infer_seq_per_s=100.0,
        train_seq_per_s=1000.0,
        batch_size=100,
        max_steps=10_000,
        n_demo_pairs=300,
        ttt_augmentations=10,
        train_share=0.8,
        min_infer_share=0.1,
        min_epochs=2.0,
        startup_seconds=5.0,
    )
    args.update(kw)
    return plan_run(**args)


def test_plan_without_a_step_cap_trains_every_step_that_fits():
    free = _plan(time_left=600.0, max_steps=0)
    assert free.train_steps == int(free.train_seconds * 1000 / 100) == 5350
    assert not any("limited by time" in n for n in free.notes)
    assert _plan(time_left=600.0, max_steps=100).train_steps == 100  # a cap ends training sooner
    capped = _plan(time_left=600.0, max_steps=10_000)  # a cap above what fits: the time decides, and says so
    assert capped.train_steps == 5350 and "training steps limited by time: 5350 of 10000" in capped.notes


def test_plan_gives_inference_what_it_needs_and_training_the_rest():
    # inference: 5 s start-up + 100 inputs x 10 views / 100 per s = 15 s of 600 (under the 10% floor -> 60 s)
    p = _plan(time_left=600.0)
    assert p.infer_views == 10
    assert p.infer_seconds == pytest.approx(60.0)
    assert p.train_seconds == pytest.approx(600 - 60 - 5)
    assert p.train_steps == int(p.train_seconds * 1000 / 100)
    assert p.train_seconds + p.infer_seconds + 5 == pytest.approx(600)  # the whole time left, start-up included


def test_plan_trims_views_when_inference_would_not_fit_its_share():
    # 100 inputs x 10 views at 1 view/s = 1000 s, but inference may take at most 20% of 600 s = 120 s
    p = _plan(time_left=600.0, infer_seq_per_s=1.0)
    assert p.infer_seconds == pytest.approx(120.0)
    assert p.infer_views == 1  # (120 - 5) s x 1/s / 100 inputs -> 1 view
    assert any("views trimmed" in n for n in p.notes)


def test_plan_caps_steps_and_trims_augmentations_when_steps_are_few():
    p = _plan(time_left=600.0, max_steps=50)
    assert p.train_steps == 50
    assert p.expected_train_seconds == pytest.approx(5.0)
    # 50 steps x 100 = 5000 examples seen; 300 pairs x 10 augs x 2 epochs = 6000 -> trimmed to 8
    assert p.ttt_augmentations == 8
    assert p.infer_views <= p.ttt_augmentations + 1
    assert any("augmentations trimmed" in n for n in p.notes)


def test_plan_with_no_time_left_is_empty_but_valid():
    p = _plan(time_left=0.0)
    assert p.train_steps == 0 and p.train_seconds == 0.0
    assert p.infer_views >= 1


def test_watchdog_kills_a_hanging_stage_at_its_deadline():
    lines = []
    res = watch_child(
        "hang",
        [sys.executable, "-c", "import time; time.sleep(60); print('finished', flush=True)"],
        deadline=time.time() + 1.0,
        grace_seconds=1.0,
        output=lines.append,
    )
    # killed by SIGTERM at the deadline, long before its 60 s were up (no wall-clock threshold: load-proof)
    assert res.status == "timeout" and res.returncode == -signal.SIGTERM and "finished" not in lines


@pytest.mark.e2e
def test_watchdog_escalates_to_sigkill_when_sigterm_is_ignored():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    res = watch_child("stubborn", [sys.executable, "-c", code], deadline=time.time() + 1.5, grace_seconds=0.5)
    assert res.status == "timeout" and res.returncode == -signal.SIGKILL


def test_watchdog_reports_exit_status_and_polls():
    polls = []
    res = watch_child(
        "ok",
        [sys.executable, "-c", "import time; time.sleep(1.2)"],
        deadline=time.time() + 30,
        poll=lambda: polls.append(1),
        poll_every=0.3,
    )
    assert res.status == "done" and res.returncode == 0
    assert polls, "the periodic callback (re-vote) never ran"
    res = watch_child("bad", [sys.executable, "-c", "raise SystemExit(3)"], deadline=time.time() + 30)
    assert res.status == "failed" and res.returncode == 3


def test_watchdog_survives_a_failing_poll():
    def boom():
        raise ValueError("vote bug")

    res = watch_child(
        "ok",
        [sys.executable, "-c", "import time; time.sleep(0.8)"],
        deadline=time.time() + 30,
        poll=boom,
        poll_every=0.2,
    )
    assert res.status == "done"


def _alive(pid: int) -> bool:
    try:  # a killed process not yet reaped by init is a zombie: dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_watchdog_relays_output_and_kills_grandchildren():
    # the grandchild keeps the output pipe open: the reader must not wait for it, the group kill ends it
    lines = []
    code = (
        "import subprocess, sys; print('out'); print('err', file=sys.stderr, flush=True); "
        "print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']).pid, flush=True)"
    )
    res = watch_child("talk", [sys.executable, "-c", code], deadline=time.time() + 30, output=lines.append)
    assert res.status == "done"  # a reader waiting for the grandchild's pipe would hit the 30 s deadline instead
    assert sorted(lines[:2]) == ["err", "out"] and len(lines) == 3  # stdout and stderr, newlines stripped
    grandchild = int(lines[2])
    for _ in range(50):
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild)


def test_watchdog_skips_a_stage_with_no_time_left():
    res = watch_child("late", [sys.executable, "-c", "pass"], deadline=time.time() - 1)
    assert res.status == "skipped"


def test_fault_hook(monkeypatch):
    monkeypatch.setenv("ARC_KIT_FAULT", "train,infer:oom,train:nan")
    with pytest.raises(RuntimeError, match="injected fault at train"):
        inject_fault("train")
    with pytest.raises(MemoryError):
        inject_fault("infer")
    inject_fault("vote")  # not named: nothing happens
    assert fault_requested("train", "nan") and not fault_requested("infer", "nan")
    monkeypatch.delenv("ARC_KIT_FAULT")
    inject_fault("train")


def test_free_cores_is_at_least_one():
    assert free_cores() >= 1
