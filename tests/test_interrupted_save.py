"""A checkpoint save killed at any moment leaves the previous checkpoint or the new one, whole, never a mix.

The kill is real: a forked child saves and dies (os._exit, no cleanup) at its k-th file rename, for every k
a save makes (the atomic writes into the staging folder, the commit, each move into place)."""

import errno
import os

import pytest
import torch
from test_checkpoint import names, small_model

from arc_kit.base.errors import ArcKitError
from arc_kit.base.fileset import COMMIT, DONE, MANIFEST, SAVING
from arc_kit.model import checkpoint
from arc_kit.model.checkpoint import (
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
    strip_puzzle_rows,
)
from arc_kit.model.starter import export_checkpoint


def save_with_state(directory, seed: int, step: int) -> None:
    model = small_model(seed=seed)
    opt = {"step": torch.tensor(step), "exp_avg": torch.full((3,), float(step))}
    ema = {"ema.w": torch.full((2,), float(step))}
    save_checkpoint(
        directory, model, names(6), extra_config={"train": {"step": step}}, optimizer_state=opt, ema_state=ema
    )


def fingerprint(directory) -> tuple:
    """(step in config, step in optimizer, step in ema, a weight, a table row): one save's values throughout."""
    model, info = load_checkpoint(directory)
    opt, ema = info.state("optimizer"), info.state("ema")
    return (
        info.extra["train"]["step"],
        None if opt is None else int(opt["step"]),
        None if ema is None else float(ema["ema.w"][0]),
        float(model.q_head.weight.detach().flatten()[0]),
        float(model.puzzle_emb.weights.detach()[1, 0]),
    )


def killed_at(k: int, action) -> bool:
    """Run `action` in a forked child that dies at its k-th os.replace; whether it got that far."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        calls = [0]
        real = os.replace

        def replace(src, dst):
            calls[0] += 1
            if calls[0] == k:
                os._exit(9)  # killed: no except/finally block runs
            real(src, dst)

        os.replace = replace
        try:
            action()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 9


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to kill a save half-way")
def test_a_save_killed_at_any_rename_leaves_one_whole_checkpoint(tmp_path):
    save_with_state(tmp_path / "old", seed=0, step=10)
    save_with_state(tmp_path / "new", seed=1, step=20)
    old, new = fingerprint(tmp_path / "old"), fingerprint(tmp_path / "new")
    seen = set()
    for k in range(1, 40):
        d = tmp_path / f"k{k}"
        save_with_state(d, seed=0, step=10)
        (d / "metrics.jsonl").write_text("{}\n")  # not part of the checkpoint: a save never touches it
        if not killed_at(k, lambda d=d: save_with_state(d, seed=1, step=20)):
            break  # the save makes fewer than k renames: every moment was covered
        got = fingerprint(d)  # reading completes a committed save
        assert got in (old, new), (k, got)
        seen.add(got[0])
        assert not (d / COMMIT).exists() and (d / "metrics.jsonl").read_text() == "{}\n"
        save_with_state(d, seed=2, step=30)  # the next save clears what the killed one left
        assert fingerprint(d)[:3] == (30, 30, 30.0) and not (d / SAVING).exists()
    else:
        raise AssertionError("a save made 40 renames or more")
    assert seen == {10, 20}, seen  # kills before the commit kept step 10; after it, the save finished


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to kill a save half-way")
def test_stripping_the_table_killed_half_way_keeps_a_loadable_checkpoint(tmp_path):
    for k in range(1, 20):
        d = tmp_path / f"k{k}"
        save_with_state(d, seed=0, step=10)
        if not killed_at(k, lambda d=d: strip_puzzle_rows(d)):
            break
        info = read_checkpoint_info(d)
        assert len(info.puzzle_names) in (1, 6)
        model, _ = load_checkpoint(d)  # table, names and config agree
        assert model.puzzle_emb.weights.shape[0] == len(info.puzzle_names)
        if len(info.puzzle_names) == 1:
            assert info.state("optimizer") is None and info.state("ema") is not None
    else:
        raise AssertionError("stripping made 20 renames or more")


def committed_but_not_moved(tmp_path, name: str):
    """A folder whose save of step 20 was killed right after its commit point (nothing moved in yet)."""
    for k in range(1, 40):
        d = tmp_path / f"{name}{k}"
        save_with_state(d, seed=0, step=10)
        assert killed_at(k, lambda d=d: save_with_state(d, seed=1, step=20))
        if (d / COMMIT).is_dir():
            return d
    raise AssertionError("no kill left a committed save")


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to kill a save half-way")


@needs_fork
def test_ranks_resuming_together_finish_a_committed_save_once(tmp_path):
    save_with_state(tmp_path / "new", seed=1, step=20)
    new = fingerprint(tmp_path / "new")
    for trial in range(5):
        d = committed_but_not_moved(tmp_path, f"t{trial}-")
        r, w = os.pipe()
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                os.close(w)
                os.read(r, 1)  # all four start reading at once
                try:
                    read_checkpoint_info(d)
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            pids.append(pid)
        os.close(r)
        os.write(w, b"go" * 4)
        os.close(w)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        assert codes == [0, 0, 0, 0], (trial, codes)
        assert fingerprint(d) == new and not (d / COMMIT).exists()


def test_a_crash_while_removing_a_finished_commit_folder_costs_nothing(tmp_path):
    save_with_state(tmp_path / "a", seed=1, step=20)
    want = fingerprint(tmp_path / "a")
    (tmp_path / "a" / DONE).mkdir()  # this kit renames the emptied folder before removing it
    (tmp_path / "a" / DONE / "model.safetensors").write_bytes(b"left over")
    assert fingerprint(tmp_path / "a") == want and not (tmp_path / "a" / DONE).exists()
    save_with_state(tmp_path / "b", seed=1, step=20)
    (tmp_path / "b" / COMMIT).mkdir()  # an older kit removed the folder in place: the manifest went first
    (tmp_path / "b" / COMMIT / "model.safetensors").write_bytes(b"left over")
    assert fingerprint(tmp_path / "b") == want and not (tmp_path / "b" / COMMIT).exists()
    save_with_state(tmp_path / "b", seed=2, step=30)  # and the next save goes through
    assert fingerprint(tmp_path / "b")[0] == 30


@needs_fork
def test_resume_checks_and_exports_see_the_checkpoint_a_read_sees(tmp_path):
    d = committed_but_not_moved(tmp_path, "fp")
    (d / SAVING).mkdir()  # and a stale staging folder of a later crash
    (d / SAVING / "model.safetensors").write_bytes(b"half")
    first = checkpoint.fingerprint(d)  # taken before anything read the folder (pipeline: --checkpoint)
    read_checkpoint_info(d)
    assert checkpoint.fingerprint(d) == first
    d = committed_but_not_moved(tmp_path, "export")
    export_checkpoint(d, tmp_path / "shipped")
    shipped, _ = load_checkpoint(tmp_path / "shipped")
    newest, _ = load_checkpoint(d)
    assert torch.equal(shipped.q_head.weight, newest.q_head.weight)  # step 20's network, not step 10's
    assert fingerprint(d)[0] == 20


def test_a_full_disk_mid_save_names_the_folder_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    d = tmp_path / "ck"
    save_with_state(d, seed=0, step=10)
    old = fingerprint(d)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ArcKitError) as e:
        save_with_state(d, seed=1, step=20)
    monkeypatch.undo()
    assert str(d) in str(e.value) and "No space left" in str(e.value) and "\n" not in str(e.value)
    assert fingerprint(d) == old and not (d / SAVING).exists() and not (d / COMMIT).exists()
    assert not (d / MANIFEST).exists()
