"""A checkpoint save killed at any moment leaves the previous checkpoint or the new one, whole, never a mix.

The kill is real: a forked child saves and dies (os._exit, no cleanup) at its k-th file rename, for every k
a save makes (the atomic writes into the staging folder, the commit, each move into place)."""

import os

import pytest
import torch
from test_checkpoint import names, small_model

from arc_kit.base.fileset import COMMIT, SAVING
from arc_kit.model.checkpoint import (
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
    strip_puzzle_rows,
)


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
