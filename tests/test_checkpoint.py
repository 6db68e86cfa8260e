"""Kit checkpoint format: bit-exact round trip, partial table loads, growing the table, resume state, errors."""

import json

import pytest
import torch
from helpers import SMALL, tiny_trm_config
from safetensors import safe_open

from arc_kit.base.errors import ArcKitError
from arc_kit.model.build import add_puzzles
from arc_kit.model.checkpoint import (
    TABLE_FILE,
    load_checkpoint,
    load_model_tensors,
    load_puzzle_rows,
    read_checkpoint_info,
    save_checkpoint,
)
from arc_kit.model.trm import TRM

FILES = (
    "config.yaml",
    "model.safetensors",
    "puzzle_emb.safetensors",
    "puzzles.json",
    "optimizer.safetensors",
    "ema.safetensors",
)


def small_model(rows: int = 6, seed: int = 0, **kw) -> TRM:
    torch.manual_seed(seed)
    cfg = tiny_trm_config(**(SMALL | {"num_puzzle_identifiers": rows} | kw))
    model = TRM(cfg)
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()
        model.q_head.weight.normal_()
    return model.eval()


def names(n: int) -> list[str]:
    return ["<blank>"] + [f"task{i}|||t{i % 8}|||0123456789" for i in range(1, n)]


def batch(model: TRM, ids: list[int]) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "inputs": torch.randint(0, 12, (len(ids), model.config.seq_len), generator=g),
        "puzzle_identifiers": torch.tensor(ids),
    }


def test_save_load_save_is_bit_exact(tmp_path):
    model = small_model()
    extra = {"train": {"lr": 1e-4, "epochs": 3}, "data": {"versions": {"arc-agi-1/training": "arcagi"}}}
    opt = {"exp_avg.qkv": torch.randn(3, 4), "step": torch.tensor(7)}
    ema = {k: v.clone() for k, v in model.named_parameters()}
    save_checkpoint(tmp_path / "a", model, names(6), extra_config=extra, optimizer_state=opt, ema_state=ema)
    loaded, info = load_checkpoint(tmp_path / "a")
    assert info.extra == extra and info.puzzle_names == names(6) and info.config == model.config
    assert torch.equal(info.state("optimizer")["exp_avg.qkv"], opt["exp_avg.qkv"])
    assert info.state("ema").keys() == ema.keys()
    save_checkpoint(
        tmp_path / "b",
        loaded,
        info.puzzle_names,
        extra_config=info.extra,
        optimizer_state=info.state("optimizer"),
        ema_state=info.state("ema"),
    )
    for f in FILES:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    # the streamed table gets the same permissions as the other files (not mkstemp's 0600)
    assert len({(tmp_path / "a" / f).stat().st_mode for f in FILES}) == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    b = batch(model, [1, 3])
    assert torch.equal(model.predict(b)["preds"], loaded.predict(b)["preds"])


def test_table_file_is_standard_safetensors(tmp_path):
    model = small_model()
    save_checkpoint(tmp_path, model, names(6))
    with safe_open(str(tmp_path / TABLE_FILE), framework="pt") as f:
        assert list(f.keys()) == ["puzzle_emb.weights"]
        assert torch.equal(f.get_tensor("puzzle_emb.weights"), model.puzzle_emb.weights)
    assert torch.equal(load_puzzle_rows(tmp_path, [4, 0, 4]), model.puzzle_emb.weights[[4, 0, 4]])
    assert torch.equal(load_model_tensors(tmp_path)["puzzle_emb.weights"], model.puzzle_emb.weights)
    with pytest.raises(ArcKitError, match="out of range"):
        load_puzzle_rows(tmp_path, [6])


def test_load_only_some_rows(tmp_path):
    model = small_model(rows=8)
    save_checkpoint(tmp_path, model, names(8))
    part, info = load_checkpoint(tmp_path, puzzle_rows=[5, 2])
    assert part.puzzle_emb.weights.shape == (2, 32) and part.config.num_puzzle_identifiers == 2
    assert info.puzzle_rows == [5, 2] and len(info.puzzle_names) == 8
    full = model.predict(batch(model, [2, 5, 5]), return_logits=True)["logits"]
    local = part.predict(batch(model, [1, 0, 0]), return_logits=True)["logits"]
    torch.testing.assert_close(local, full, rtol=0, atol=1e-5)


def test_add_puzzles(tmp_path):
    model = small_model(rows=4)
    table = model.puzzle_emb.weights.clone()
    puzzle_names = names(4)
    rows = add_puzzles(model, ["new1", "task2|||t2|||0123456789", "new2"], puzzle_names=puzzle_names)
    assert rows == [4, 2, 5] and puzzle_names[4:] == ["new1", "new2"]
    w = model.puzzle_emb.weights
    assert w.shape == (6, 32) and torch.equal(w[:4], table) and model.config.num_puzzle_identifiers == 6
    torch.testing.assert_close(w[4], table.mean(0))
    torch.testing.assert_close(w[5], table.mean(0))
    assert add_puzzles(model, ["z"], init="zero") == [6] and model.puzzle_emb.weights[6].abs().sum() == 0
    save_checkpoint(tmp_path, model, puzzle_names + ["z"])
    loaded, info = load_checkpoint(tmp_path)
    assert torch.equal(loaded.puzzle_emb.weights, model.puzzle_emb.weights) and info.puzzle_names[-1] == "z"
    with pytest.raises(ArcKitError, match="init"):
        add_puzzles(model, ["q"], init="random")


def test_load_does_not_touch_rng_and_respects_dtype(tmp_path):
    save_checkpoint(tmp_path, small_model(), names(6))
    torch.manual_seed(123)
    expect = torch.rand(3)
    torch.manual_seed(123)
    model, _ = load_checkpoint(tmp_path, forward_dtype="bfloat16")
    assert torch.equal(torch.rand(3), expect)
    assert model.H_init.dtype == torch.bfloat16 and model.config.forward_dtype == "bfloat16"
    assert not model.training


def test_resaving_drops_stale_resume_state(tmp_path):
    model = small_model()
    save_checkpoint(tmp_path, model, names(6), optimizer_state={"a": torch.zeros(2)})
    save_checkpoint(tmp_path, model, names(6))
    assert not (tmp_path / "optimizer.safetensors").exists()
    assert read_checkpoint_info(tmp_path).state("optimizer") is None


def test_errors(tmp_path):
    model = small_model()
    with pytest.raises(ArcKitError, match="5 puzzle names for a puzzle table of 6 rows"):
        save_checkpoint(tmp_path / "x", model, names(5))
    with pytest.raises(ArcKitError, match="reserved key 'model'"):
        save_checkpoint(tmp_path / "x", model, names(6), extra_config={"model": {}})
    with pytest.raises(ArcKitError, match="not an arc-kit checkpoint"):
        load_checkpoint(tmp_path / "nothing")
    save_checkpoint(tmp_path / "c", model, names(6))
    (tmp_path / "c" / "puzzles.json").write_text(json.dumps(names(3)))
    with pytest.raises(ArcKitError, match="3 names but the model has 6 puzzle rows"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "puzzles.json").write_text(json.dumps([0, 1, 2, 3, 4, 5]))
    with pytest.raises(ArcKitError, match="puzzles.json: expected a JSON list of puzzle names"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "puzzles.json").write_text(json.dumps(names(6)))
    save_checkpoint(tmp_path / "d", small_model(rows=4), names(4))
    (tmp_path / "c" / TABLE_FILE).write_bytes((tmp_path / "d" / TABLE_FILE).read_bytes())
    with pytest.raises(ArcKitError, match="table is \\[4, 32\\], expected 6 rows"):
        load_checkpoint(tmp_path / "c")
    save_checkpoint(tmp_path / "e", small_model(), names(6))
    (tmp_path / "e" / "config.yaml").write_text(
        (tmp_path / "e" / "config.yaml").read_text().replace("vocab_size: 12", "vocab_size: 10")
    )
    with pytest.raises(ArcKitError, match="model.safetensors: does not match its config"):
        load_checkpoint(tmp_path / "e")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArcKitError, match="model.safetensors: not a readable safetensors file"):
        load_checkpoint(tmp_path / "c")


def test_model_without_puzzle_embedding(tmp_path):
    torch.manual_seed(0)
    model = TRM(tiny_trm_config(hidden_size=32, seq_len=9, puzzle_emb_ndim=0, puzzle_emb_len=0))
    save_checkpoint(tmp_path, model, [])
    loaded, info = load_checkpoint(tmp_path)
    assert info.puzzle_names == [] and not (tmp_path / TABLE_FILE).exists()
    b = {"inputs": torch.randint(0, 12, (2, 9)), "puzzle_identifiers": torch.zeros(2, dtype=torch.long)}
    assert torch.equal(model.predict(b)["preds"], loaded.predict(b)["preds"])


def test_init_rows_mean_zero_normal():
    from arc_kit.model.build import build_model, init_rows

    model = small_model(rows=5)
    table = model.puzzle_emb.weights.clone()
    init_rows(model, [3, 4], "mean")  # the mean of the other rows
    torch.testing.assert_close(model.puzzle_emb.weights[3], table[:3].mean(0))
    init_rows(model, [4], "zero")
    assert model.puzzle_emb.weights[4].abs().sum() == 0
    torch.manual_seed(0)
    init_rows(model, [1], "normal")
    assert not torch.equal(model.puzzle_emb.weights[1], table[1])
    with pytest.raises(ArcKitError, match="row init"):
        init_rows(model, [1], "random")
    # build_model: seeded, the same weights twice; "normal" draws rows 1.., row 0 stays zero
    a = build_model(model.config, rows=4, seed=3, row_init="normal")
    b = build_model(model.config, rows=4, seed=3, row_init="normal")
    assert torch.equal(a.puzzle_emb.weights, b.puzzle_emb.weights) and a.puzzle_emb.weights[1:].abs().sum() > 0
    assert a.puzzle_emb.weights[0].abs().sum() == 0 and a.config.num_puzzle_identifiers == 4
