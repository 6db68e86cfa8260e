"""TRM model: conformance with the reference fixture, parameter layout, halting, gradients, dtypes, variants."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml
from helpers import PREFIX, REF, SMALL, tiny_trm_config

from arc_kit.base.errors import ArcKitError
from arc_kit.model.loss import act_loss, compute_loss, stablemax_cross_entropy
from arc_kit.model.trm import TRM, TRMConfig


def reference_model() -> tuple[TRM, dict]:
    """The fixture's step_0 loaded directly (prefix strip) into a kit TRM, plus reference_io.npz."""
    sd = torch.load(REF / "step_0", map_location="cpu", weights_only=True)
    sd = {k.removeprefix(PREFIX): v for k, v in sd.items()}
    arch = yaml.safe_load((REF / "all_config.yaml").read_text())["arch"]
    cfg = TRMConfig.from_reference(
        arch, seq_len=900, vocab_size=12, num_puzzle_identifiers=sd["puzzle_emb.weights"].shape[0]
    )
    model = TRM(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval(), dict(np.load(REF / "reference_io.npz"))


def tiny_config(**kw) -> TRMConfig:
    return tiny_trm_config(**(SMALL | kw))


def tiny_batch(cfg: TRMConfig, B: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, cfg.vocab_size, (B, cfg.seq_len), generator=g)
    labels = torch.randint(0, cfg.vocab_size, (B, cfg.seq_len), generator=g)
    labels[:, -3:] = -100
    return {
        "inputs": inputs,
        "labels": labels,
        "puzzle_identifiers": torch.randint(0, cfg.num_puzzle_identifiers, (B,), generator=g),
    }


# the first ACT step is the fast tier's check (a quarter of the work); all four run in the e2e tier
@pytest.mark.parametrize(
    "steps", [pytest.param(1, id="first-step"), pytest.param(4, id="all-steps", marks=pytest.mark.e2e)]
)
def test_conformance_with_reference_fixture(steps):
    model, ref = reference_model()
    batch = {k: torch.from_numpy(ref[k]) for k in ("inputs", "labels", "puzzle_identifiers")}
    carry = model.initial_carry(batch)
    assert ref["logits"].shape[0] == model.config.halt_max_steps
    cells, states = ref["logit_cells"], ref["state_cells"]
    with torch.no_grad():
        for k in range(steps):
            carry, out = model(carry, batch)
            loss, _ = act_loss(carry, out)
            # the fixture keeps logits at every 4th cell, the argmax at every cell, states at sampled cells
            logits = out["logits"].numpy()
            np.testing.assert_allclose(
                logits[:, cells], ref["logits"][k], rtol=0, atol=1e-4, err_msg=f"logits step {k}"
            )
            assert (logits.argmax(-1) == ref["preds"][k]).all()
            for key in ("q_halt_logits", "q_continue_logits"):
                np.testing.assert_allclose(out[key].numpy(), ref[key][k], rtol=0, atol=1e-4, err_msg=f"{key} step {k}")
            np.testing.assert_allclose(carry.z_H.numpy()[:, states], ref[f"z_H_step{k}"], rtol=0, atol=1e-4)
            np.testing.assert_allclose(carry.z_L.numpy()[:, states], ref[f"z_L_step{k}"], rtol=0, atol=1e-4)
            assert abs(loss.item() / ref["loss"][k] - 1) < 1e-6
            assert carry.halted.tolist() == ref["halted"][k].tolist()
    assert carry.halted.all() == (steps == model.config.halt_max_steps)  # eval: all run exactly halt_max_steps


@pytest.mark.e2e
def test_predict_matches_act_loop_and_early_halt():
    torch.manual_seed(0)
    model, ref = reference_model()
    batch = {k: torch.from_numpy(ref[k]) for k in ("inputs", "puzzle_identifiers")}
    out = model.predict(batch, return_logits=True, return_all_steps=True)
    np.testing.assert_allclose(out["logits"].numpy()[:, ref["logit_cells"]], ref["logits"][-1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["q_halt"].numpy(), ref["q_halt_logits"][-1], atol=1e-4, rtol=0)
    assert out["preds"].tolist() == ref["preds"][-1].tolist()
    assert out["steps_run"].tolist() == [4] * 4
    assert out["all_preds"].shape == (4, 4, 900) and out["all_q_halt"].shape == (4, 4)
    np.testing.assert_allclose(out["all_q_halt"].numpy(), ref["q_halt_logits"], atol=1e-4, rtol=0)

    # early halt: shift the q_halt bias so that q_halt > 0 exactly where the reference q_halt > thresh
    with torch.no_grad():
        thresh = float(np.median(ref["q_halt_logits"][1]))
        model.q_head.bias[0] -= thresh - 1e-4  # q_halt' = q_halt - thresh: > 0 exactly where q_halt > thresh
    q = ref["q_halt_logits"] - thresh + 1e-4
    first = [next((s + 1 for s in range(4) if q[s, b] > 0), 4) for b in range(4)]
    assert len(set(first)) > 1  # the test exercises mixed halting
    out = model.predict(batch, early_halt=True, return_all_steps=True)
    assert out["steps_run"].tolist() == first
    for b, s in enumerate(first):
        assert out["preds"][b].tolist() == ref["preds"][s - 1, b].tolist()
        np.testing.assert_allclose(out["q_halt"][b].item(), q[s - 1, b], atol=1e-4)
        assert out["all_preds"][-1, b].tolist() == out["preds"][b].tolist()
    assert not model.training


def test_full_size_parameter_count_and_layout():
    spec = json.loads((REF / "arc_full_size_state_dict_shapes.json").read_text())
    cfg = TRMConfig.from_reference(spec["arch"])
    with torch.device("meta"):
        model = TRM(cfg)
    assert model.num_params() == spec["num_parameters_excluding_puzzle_embeddings"] == 6_829_058
    shapes = {PREFIX + k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == spec["state_dict_shapes"]
    assert model.H_init.dtype == torch.bfloat16  # stored in the forward dtype, like the reference
    assert dict(model.named_buffers())["puzzle_emb.weights"].shape == (1000, 512)


def test_initialisation():
    torch.manual_seed(0)
    model = TRM(tiny_config(hidden_size=256, num_heads=4))
    w = model.L_level.layers[0].mlp.gate_up_proj.weight
    assert abs(w.std().item() - 256**-0.5) < 0.05 * 256**-0.5  # truncated LeCun normal, true std
    assert w.abs().max().item() <= 2 * 256**-0.5 / 0.87  # truncated at 2 (rescaled) std
    assert model.q_head.weight.abs().sum() == 0 and model.q_head.bias.tolist() == [-5.0, -5.0]
    assert model.puzzle_emb.weights.abs().sum() == 0
    assert "puzzle_emb.weights" not in dict(model.named_parameters())  # a buffer: not in the dense optimiser
    assert abs(model.H_init.std().item() - 1) < 0.25


def test_training_step_gradients_and_detached_carry():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = TRM(cfg).train()
    batch = tiny_batch(cfg)
    carry = model.initial_carry(batch)
    carry, out = model(carry, batch)
    loss, metrics = act_loss(carry, out)
    loss.backward()
    assert not carry.z_H.requires_grad and not carry.z_L.requires_grad
    assert all(p.grad is not None for p in model.parameters())
    emb = model.puzzle_emb
    assert emb.local_weights.grad is not None and emb.local_weights.grad.shape == (4, cfg.puzzle_emb_ndim)
    assert emb.local_ids.tolist() == batch["puzzle_identifiers"].tolist()
    assert metrics["count"].item() == int(carry.halted.sum())


def test_only_last_h_cycle_has_gradient():
    torch.manual_seed(0)
    cfg = tiny_config(H_cycles=3)
    model = TRM(cfg).train()
    batch = tiny_batch(cfg)
    x = model.embed(batch["inputs"], batch["puzzle_identifiers"])
    z_H, z_L = model.initial_state(4)
    z_H2, z_L2 = model.recurse(z_H, z_L, x)
    grads = torch.autograd.grad(
        z_H2.float().pow(2).sum(), list(model.parameters()), allow_unused=True, retain_graph=True
    )
    # by hand: H_cycles-1 cycles without grad, the last with grad
    cs = model.rotary_emb()

    def h_cycle(z_H, z_L):  # L_cycles updates of z_L from (z_H + x), then one of z_H from z_L
        for _ in range(cfg.L_cycles):
            z_L = model.L_level(z_L, z_H + x, cs)
        return model.L_level(z_H, z_L, cs), z_L

    with torch.no_grad():
        for _ in range(cfg.H_cycles - 1):
            z_H, z_L = h_cycle(z_H, z_L)
    z_H, z_L = h_cycle(z_H, z_L)
    expect = torch.autograd.grad(z_H.float().pow(2).sum(), list(model.parameters()), allow_unused=True)
    for g, e in zip(grads, expect, strict=False):
        assert (g is None) == (e is None)
        if g is not None:
            torch.testing.assert_close(g, e)


def test_training_halting_rules():
    cfg = tiny_config(halt_max_steps=4, halt_exploration_prob=0.0)
    model = TRM(cfg).train()
    batch = tiny_batch(cfg)
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)  # q_halt > 0 everywhere: halt after one step
    carry, _ = model(model.initial_carry(batch), batch)
    assert carry.halted.all() and carry.steps.tolist() == [1] * 4
    model.eval()  # evaluation ignores q: runs all steps
    carry = model.initial_carry(batch)
    for s in range(4):
        carry, _ = model(carry, batch)
        assert carry.halted.all() == (s == 3)
    # exploration forces a random minimum of 2..max steps
    model = TRM(dataclasses.replace(cfg, halt_exploration_prob=1.0)).train()
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)
    carry, _ = model(model.initial_carry(batch), batch)
    assert not carry.halted.any()
    # q_halt < 0: training runs to halt_max_steps, then halted sequences restart on new data
    model = TRM(cfg).train()
    carry = model.initial_carry(batch)
    for _ in range(4):
        carry, _ = model(carry, batch)
    assert carry.halted.all() and carry.steps.tolist() == [4] * 4
    new = tiny_batch(cfg, seed=1)
    carry, _ = model(carry, new)
    assert carry.steps.tolist() == [1] * 4
    assert torch.equal(carry.current_data["inputs"], new["inputs"])


def test_act_continue_target():
    torch.manual_seed(0)
    cfg = tiny_config(no_ACT_continue=False)
    model = TRM(cfg).train()
    batch = tiny_batch(cfg)
    carry, out = model(model.initial_carry(batch), batch)
    assert out["target_q_continue"].shape == (4,)
    assert ((out["target_q_continue"] >= 0) & (out["target_q_continue"] <= 1)).all()
    loss, metrics = act_loss(carry, out)
    assert "q_continue_loss" in metrics
    expect = metrics["lm_loss"] + 0.5 * (metrics["q_halt_loss"] + metrics["q_continue_loss"])
    assert abs(loss.item() - expect.item()) < 1e-9


def test_loss_formula():
    logits = torch.tensor([[[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    labels = torch.tensor([[0, 1], [1, -100]])
    s = lambda x: np.where(x < 0, 1 / (1 - np.minimum(x, 0)), x + 1)  # noqa: E731
    p = s(logits.double().numpy())
    p = p / p.sum(-1, keepdims=True)
    ce = -np.log([[p[0, 0, 0], p[0, 1, 1]], [p[1, 0, 1], 1.0]])
    torch.testing.assert_close(stablemax_cross_entropy(logits, labels).numpy(), ce * [[1, 1], [1, 0]])
    q = torch.tensor([0.3, -0.2])
    loss, m = compute_loss({"logits": logits, "q_halt_logits": q, "q_continue_logits": q}, labels)
    seq_correct = [1.0, 0.0]  # seq 0 argmax [0, 1] right; seq 1 predicts 0 for label 1
    pairs = zip(q.tolist(), seq_correct, strict=True)
    bce = sum(np.log1p(np.exp(-qi)) if y else np.log1p(np.exp(qi)) for qi, y in pairs)
    assert abs(loss.item() - (ce[0].mean() + ce[1, 0] + 0.5 * bce)) < 1e-6
    assert m["exact_accuracy"].item() == 1 and m["count"].item() == 2


def test_bfloat16_forward_close_to_float32():
    torch.manual_seed(0)
    cfg = tiny_config()
    m32 = TRM(cfg).eval()
    m16 = TRM(dataclasses.replace(cfg, forward_dtype="bfloat16")).eval()
    m16.load_state_dict(m32.state_dict())
    batch = tiny_batch(cfg)
    o32, o16 = m32.predict(batch, return_logits=True), m16.predict(batch, return_logits=True)
    assert o16["q_halt"].dtype == torch.float32
    assert (o16["logits"] - o32["logits"]).abs().mean() < 0.05  # bf16 rounding compounds over the recursion
    assert (o16["preds"] == o32["preds"]).float().mean() > 0.9
    carry, out = m16(m16.initial_carry(batch), batch)
    assert out["logits"].dtype == torch.bfloat16 and carry.z_H.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "variant",
    [
        dict(mlp_t=True),
        dict(pos_encodings="learned"),
        dict(pos_encodings="none"),
        dict(puzzle_emb_ndim=0, puzzle_emb_len=0),
        dict(puzzle_emb_len=0),
    ],
)
def test_variants_run_and_train(variant):
    torch.manual_seed(0)
    cfg = tiny_config(**variant)
    model = TRM(cfg).train()
    batch = tiny_batch(cfg, B=3)
    carry, out = model(model.initial_carry(batch), batch)
    assert out["logits"].shape == (3, cfg.seq_len, cfg.vocab_size)
    assert carry.z_H.shape == (3, cfg.seq_len + cfg.prefix_len, cfg.hidden_size)
    act_loss(carry, out)[0].backward()
    assert model.embed_tokens.embedding_weight.grad is not None
    if variant.get("mlp_t"):
        assert "L_level.layers.0.mlp_t.gate_up_proj.weight" in model.state_dict()
    if variant.get("pos_encodings") == "learned":
        assert model.state_dict()["embed_pos.embedding_weight"].shape == (cfg.seq_len + cfg.prefix_len, 32)


def test_config_errors():
    with pytest.raises(ArcKitError, match="forward_dtype"):
        tiny_config(forward_dtype="float64")
    with pytest.raises(ArcKitError, match="multiple of num_heads"):
        tiny_config(num_heads=3)
    with pytest.raises(ArcKitError, match="does not fit"):
        tiny_config(puzzle_emb_ndim=100, puzzle_emb_len=1)


def _crop_batch(shapes, seed=0, P=2):
    """One sequence per (h, w) crop, all of the same length: random tokens, coordinate positions."""
    from arc_kit.model.trm import coord_positions

    g = torch.Generator().manual_seed(seed)
    L = shapes[0][0] * shapes[0][1]
    assert all(h * w == L for h, w in shapes)
    return {
        "inputs": torch.randint(0, 12, (len(shapes), L), generator=g, dtype=torch.int32),
        "puzzle_identifiers": torch.randint(1, 5, (len(shapes),), generator=g, dtype=torch.int32),
        "positions": torch.stack([coord_positions(h, w) for h, w in shapes]),
    }


def test_coordinate_positions_batched_crop_equals_crop_alone():
    torch.manual_seed(0)
    model = TRM(tiny_config(positions="coords", seq_len=900)).eval()
    # a 4x5 crop (3x4 grid + EOS border) alone, then in a 20-token bucket with 5x4, 2x10 and another 4x5 crop
    alone = _crop_batch([(4, 5)], seed=1)
    mixed = _crop_batch([(5, 4), (2, 10), (4, 5), (4, 5)], seed=2)
    mixed["inputs"][2], mixed["puzzle_identifiers"][2] = alone["inputs"][0], alone["puzzle_identifiers"][0]
    a = model.predict(alone, return_logits=True)
    b = model.predict(mixed, return_logits=True)
    torch.testing.assert_close(b["logits"][2], a["logits"][0], rtol=1e-5, atol=1e-5)
    assert torch.equal(b["preds"][2], a["preds"][0])
    # the rows' shapes matter: the same tokens read as a 5x4 crop give other logits
    other = dict(alone, positions=_crop_batch([(5, 4)])["positions"])
    assert not torch.allclose(model.predict(other, return_logits=True)["logits"][0], a["logits"][0], atol=1e-4)
    # early halting drops rows (and their position tables) from the batch: still the same answer
    with torch.no_grad():
        model.q_head.weight.normal_(0, 1.0)
        model.q_head.bias.zero_()
        q = model.predict(mixed, steps=1)["q_halt"]  # halting threshold between the rows' first q_halt
        model.q_head.bias[0] = -(q.min() + q.max()) / 2
    a, b = model.predict(alone, early_halt=True), model.predict(mixed, early_halt=True)
    assert b["steps_run"].unique().numel() > 1  # some rows stopped before others
    assert torch.equal(b["preds"][2], a["preds"][0]) and b["steps_run"][2] == a["steps_run"][0]
    # ACT training interface: positions travel in the carry with the rest of the data
    model.train()
    carry, out = model(model.initial_carry(mixed), mixed)
    assert torch.equal(carry.current_data["positions"], mixed["positions"]) and out["logits"].shape == (4, 20, 12)


def test_coordinate_positions_follow_the_cell_not_the_crop():
    from arc_kit.model.trm import coord_positions

    torch.manual_seed(0)
    model = TRM(tiny_config(positions="coords", seq_len=900))
    P = model.config.prefix_len
    assert model.rotary_emb.cos.shape[0] == P + 900  # one table for every crop up to 30x30
    small, big = _crop_batch([(3, 3)]), _crop_batch([(5, 5)])
    cs, cb = model.rope(small)[0][0], model.rope(big)[0][0]  # [T, hd]
    # cell (1, 0) is token 3 of the 3x3 crop and token 5 of the 5x5 crop: same position P + 30
    torch.testing.assert_close(cs[P + 3], cb[P + 5])
    torch.testing.assert_close(cs[P + 3], model.rotary_emb.cos[P + 30])
    # square crops need no explicit positions; other lengths do
    del small["positions"]
    torch.testing.assert_close(model.rope(small)[0], cs)
    assert coord_positions(2, 3).tolist() == [0, 1, 2, 30, 31, 32]
    with pytest.raises(ArcKitError, match="not square crops"):
        model.rope({"inputs": torch.zeros(1, 20, dtype=torch.int32)})
    # canvas positions (the reference's, the default) are unchanged: the token index
    canvas = TRM(tiny_config())
    assert canvas.config.positions == "canvas" and canvas.rotary_emb.cos.shape[0] == 16 + canvas.config.prefix_len


def test_coordinate_positions_refusals():
    with pytest.raises(ArcKitError, match="learned"):
        tiny_config(positions="coords", pos_encodings="learned")
    with pytest.raises(ArcKitError, match="mlp_t"):
        tiny_config(positions="coords", mlp_t=True)
    with pytest.raises(ArcKitError, match="positions.: expected canvas or coords"):
        tiny_config(positions="grid")
    tiny_config(positions="coords", pos_encodings="none")  # no positions at all: nothing to refuse


def test_position_scheme_saved_with_checkpoints(tmp_path):
    from arc_kit.model.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = TRM(tiny_config(positions="coords", num_puzzle_identifiers=2))
    save_checkpoint(tmp_path / "c", model, ["<blank>", "a"])
    loaded, info = load_checkpoint(tmp_path / "c")
    assert info.config.positions == "coords" and loaded.config.positions == "coords"
    batch = _crop_batch([(4, 4)])
    batch["puzzle_identifiers"][:] = 1
    torch.testing.assert_close(
        loaded.predict(batch, return_logits=True)["logits"], model.predict(batch, return_logits=True)["logits"]
    )
    # a checkpoint written before the field existed loads with the canvas positions it was trained with
    cfg_file = tmp_path / "c" / "config.yaml"
    doc = yaml.safe_load(cfg_file.read_text())
    del doc["model"]["positions"]
    cfg_file.write_text(yaml.safe_dump(doc))
    assert load_checkpoint(tmp_path / "c")[1].config.positions == "canvas"
