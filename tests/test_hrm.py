"""HRM: conformance with the reference hrm.py fixture (evaluation steps, one training step), config kinds, layout."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from arc_kit.base.config import from_dict
from arc_kit.base.errors import ArcKitError
from arc_kit.model.build import instantiate
from arc_kit.model.config import TRMConfig
from arc_kit.model.hrm import HRM
from arc_kit.model.loss import act_loss
from arc_kit.model.trm import TRM

REF = Path(__file__).resolve().parent / "fixtures" / "hrm-reference"
PREFIX = "_orig_mod.model.inner."
# the published ARC HRM (hidden 512, 8 heads, 4 + 4 layers; sapientinc/HRM config/arch/hrm_v1.yaml)
ARC_ARCH = dict(
    name="hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
    H_cycles=2,
    L_cycles=2,
    H_layers=4,
    L_layers=4,
    hidden_size=512,
    num_heads=8,
    expansion=4,
    puzzle_emb_ndim=512,
    pos_encodings="rope",
    halt_max_steps=16,
    halt_exploration_prob=0.1,
)


def reference_arch() -> dict:
    return yaml.safe_load((REF / "all_config.yaml").read_text())["arch"]


def reference_model() -> tuple[TRM, dict]:
    """The fixture's step_0 loaded directly (prefix strip) into the model its config builds, plus the
    recorded outputs (states at the positions `state_positions` only: the vendored copy is trimmed)."""
    sd = torch.load(REF / "step_0", map_location="cpu", weights_only=True)
    sd = {k.removeprefix(PREFIX): v for k, v in sd.items()}
    cfg = TRMConfig.from_reference(reference_arch(), seq_len=900, vocab_size=12, num_puzzle_identifiers=1000)
    model = instantiate(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval(), dict(np.load(REF / "reference_io.npz"))


def fixture_batch(ref: dict) -> dict:
    return {k: torch.from_numpy(ref[k]) for k in ("inputs", "labels", "puzzle_identifiers")}


def test_reference_config_is_hrm():
    cfg = TRMConfig.from_reference(reference_arch(), seq_len=900, vocab_size=12, num_puzzle_identifiers=1000)
    assert (cfg.kind, cfg.H_layers, cfg.L_layers, cfg.prefix_len, cfg.no_ACT_continue) == ("hrm", 2, 2, 1, False)
    assert isinstance(instantiate(cfg), HRM)


def test_evaluation_steps_reproduce_the_fixture():
    """Every step: logits, both q logits and both states within 1e-5 (float32); the loss head's total."""
    model, ref = reference_model()
    batch = fixture_batch(ref)
    pos = torch.from_numpy(ref["state_positions"])
    carry = model.initial_carry(batch)
    steps = ref["logits"].shape[0]
    assert steps == model.config.halt_max_steps == 4
    with torch.no_grad():
        for k in range(steps):
            carry, out = model(carry, batch)
            for key in ("logits", "q_halt_logits", "q_continue_logits"):
                np.testing.assert_allclose(out[key].numpy(), ref[key][k], rtol=0, atol=1e-5, err_msg=f"{key} {k}")
            np.testing.assert_allclose(carry.z_H[:, pos].numpy(), ref[f"z_H_step{k}"], rtol=0, atol=1e-5)
            np.testing.assert_allclose(carry.z_L[:, pos].numpy(), ref[f"z_L_step{k}"], rtol=0, atol=1e-5)
            loss, _ = act_loss(carry, out)
            assert "target_q_continue" not in out  # evaluation: no Q-learning term
            assert abs(loss.item() / ref["loss"][k] - 1) < 1e-6
    assert carry.halted.all()


def test_predict_equals_the_act_loop():
    model, ref = reference_model()
    got = model.predict(fixture_batch(ref), return_logits=True)
    np.testing.assert_allclose(got["logits"].numpy(), ref["logits"][-1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["q_halt"].numpy(), ref["q_halt_logits"][-1], rtol=0, atol=1e-5)


def _rel(got: torch.Tensor, want: np.ndarray) -> float:
    return float(np.abs(got.detach().numpy() - want).max() / max(np.abs(want).max(), 1e-30))


def test_training_step_reproduces_loss_halting_target_and_gradients():
    """One training step from a fresh carry (exploration 0 in the fixture): the Q-learning target comes from a
    second no-grad step; loss, halted flags, steps, target and the recorded gradients within 1e-4 relative."""
    model, ref = reference_model()
    model.train()
    carry = model.initial_carry(fixture_batch(ref))
    carry, out = model(carry, fixture_batch(ref))
    loss, metrics = act_loss(carry, out)
    loss.backward()
    assert abs(loss.item() / float(ref["train_loss"]) - 1) < 1e-4
    assert "q_continue_loss" in metrics
    assert carry.halted.tolist() == ref["train_halted"].tolist()
    assert carry.steps.tolist() == ref["train_steps"].tolist()
    assert _rel(out["target_q_continue"], ref["train_target_q_continue"]) < 1e-4
    params = dict(model.named_parameters())
    grads = [k for k in ref if k.startswith("grad__model.inner.")]
    assert len(grads) == 5 and any(".H_level." in k for k in grads) and any(".L_level." in k for k in grads)
    for key in grads:
        grad = params[key.removeprefix("grad__model.inner.")].grad
        assert grad is not None and _rel(grad, ref[key]) < 1e-4, key
    local = model.puzzle_emb.local_weights
    assert local is not None and local.grad is not None
    assert _rel(local.grad, ref["grad__puzzle_emb_local_weights"]) < 1e-4


def test_gradient_reaches_only_the_last_updates():
    """The carry leaves the step detached, and both stacks learn (from the last L and H updates: which updates
    carry gradient is pinned by the recorded gradients above)."""
    model, ref = reference_model()
    model.train()
    carry = model.initial_carry(fixture_batch(ref))
    carry, out = model(carry, fixture_batch(ref))
    assert not carry.z_H.requires_grad and not carry.z_L.requires_grad  # the carry is detached
    act_loss(carry, out)[0].backward()
    for name, p in model.named_parameters():
        if name.startswith(("H_level.", "L_level.")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_arc_size_layout_and_parameter_count():
    """The ARC-size HRM has the reference's keys and shapes (27,276,290 parameters besides the table)."""
    cfg = TRMConfig.from_reference(ARC_ARCH, num_puzzle_identifiers=1000)
    with torch.device("meta"):
        model = instantiate(cfg)
    spec = json.loads((REF / "arc_full_size_state_dict_shapes.json").read_text())
    assert {PREFIX + k: list(v.shape) for k, v in model.state_dict().items()} == spec
    assert model.num_params() == 27_276_290


def test_seeded_initialisation_builds_levels_in_the_reference_order():
    cfg = TRMConfig(kind="hrm", hidden_size=32, num_heads=2, L_layers=1, H_layers=2, seq_len=16, puzzle_emb_ndim=32)
    torch.manual_seed(3)
    a = instantiate(cfg)
    assert len(a.H_level.layers) == 2 and len(a.L_level.layers) == 1
    names = [n for n, _ in a.named_parameters()]
    assert names.index("H_level.layers.0.self_attn.qkv_proj.weight") < names.index(
        "L_level.layers.0.self_attn.qkv_proj.weight"
    )
    torch.manual_seed(3)
    b = instantiate(cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert torch.equal(a.q_head.weight, torch.zeros_like(a.q_head.weight))  # q starts at "don't halt"


def test_kind_config():
    trm = TRMConfig()
    assert (trm.kind, trm.H_layers, trm.no_ACT_continue) == ("trm", 0, True)
    assert type(instantiate(dataclasses.replace(trm, hidden_size=32, num_heads=2, seq_len=16))) is TRM
    # a config (or checkpoint config.yaml) written before the field existed still means TRM
    old = {"hidden_size": 32, "num_heads": 2, "seq_len": 16, "no_ACT_continue": True}
    assert from_dict(TRMConfig, old).kind == "trm"
    hrm = TRMConfig(kind="hrm", L_layers=3)
    assert (hrm.no_ACT_continue, hrm.H_stack_layers) == (False, 3)  # reference halting; H stack as deep as L
    assert TRMConfig(kind="hrm", no_ACT_continue=True).no_ACT_continue is True  # a kit variant, on request
    with pytest.raises(ArcKitError, match="kind"):
        TRMConfig(kind="gpt")
    with pytest.raises(ArcKitError, match="H_layers"):
        TRMConfig(H_layers=2)  # TRM has no H-level stack
    with pytest.raises(ArcKitError, match="H_layers"):
        TRMConfig(kind="hrm", H_layers=-1)
    # the TRM reference's all_config has H_layers too: it is dropped for TRM
    ref_trm = TRMConfig.from_reference(
        {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1", "H_layers": 0}
    )
    assert ref_trm.kind == "trm"


def test_describe_names_the_kind_and_both_stacks():
    hrm = TRMConfig(kind="hrm", H_layers=1, L_layers=2, H_cycles=2, L_cycles=3, halt_max_steps=4)
    assert hrm.describe().startswith("HRM, hidden 512, 8 heads, H-level 1 + L-level 2 blocks, H_cycles 2 x L_cycles 3")
    assert "4 supervision step(s)" in hrm.describe()
    assert TRMConfig().describe().startswith("TRM, hidden 512, 8 heads, 2 blocks, H_cycles 3 x L_cycles 4")
