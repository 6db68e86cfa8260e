"""The Hierarchical Reasoning Model (HRM): the reference HierarchicalReasoningModel_ACTV1, built on TRM's parts.

HRM is TRM's predecessor. It shares TRM's embeddings, heads, ACT carry, halting and inference loop (so it
subclasses `TRM`) and differs in two places:
  - two block stacks instead of one shared network: `H_level` (H_layers blocks) updates z_H, `L_level`
    (L_layers blocks) updates z_L; parameter names equal the reference's (`_orig_mod.model.inner.H_level...`);
  - the recursion of one supervision step, z_H, z_L, x [B, T, D]:
        repeat H_cycles times:  z_L <- L_level(z_L, z_H + x)  L_cycles times;  z_H <- H_level(z_H, z_L)
    with gradient through the very last L update and the last H update only (TRM: the whole last H-cycle).
Its reference config (TRMConfig.from_reference of an hrm arch) halts on q_halt > q_continue in training and
learns q_continue from the bootstrapped target (a second no-grad step from the new state, in TRM.forward);
its prefix is ceil(puzzle_emb_ndim / hidden_size) slots.
"""

import torch

from arc_kit.model.config import TRMConfig
from arc_kit.model.trm import TRM, ReasoningModule


class HRM(TRM):
    """HRM with TRM's interface (`initial_carry`, `forward(carry, batch)`, `predict`, `compile_inference`)."""

    def build_levels(self, cfg: TRMConfig) -> None:
        # the reference builds H_level first: keep its order so a seed gives the same initial weights
        self.H_level = ReasoningModule(cfg, cfg.H_stack_layers)
        self.L_level = ReasoningModule(cfg, cfg.L_layers)

    def recurse(self, z_H, z_L, x, cos_sin=None):
        """One supervision step of hierarchical recursion. z_H, z_L, x [B, T, D] -> new z_H, z_L, with grad from
        the last L and H updates only. cos_sin: from rope(batch) (canvas positions when omitted)."""
        cfg = self.config
        if cos_sin is None:
            cos_sin = self.rope()
        with torch.no_grad():  # every update but the last L and the last H one
            for h in range(cfg.H_cycles):
                last_cycle = h == cfg.H_cycles - 1
                injection = z_H + x  # z_H is fixed during the L updates: add once (same values as per update)
                for _ in range(cfg.L_cycles - 1 if last_cycle else cfg.L_cycles):
                    z_L = self.L_level(z_L, injection, cos_sin)
                if not last_cycle:
                    z_H = self.H_level(z_H, z_L, cos_sin)
        z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.H_level(z_H, z_L, cos_sin)
        return z_H, z_L
