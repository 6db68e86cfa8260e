"""The Tiny Recursive Model (TRM) with its ACT carry: the function of the reference TinyRecursiveReasoningModel_ACTV1.

Shapes: B batch, L = seq_len canvas tokens (900 for 30x30), P = puzzle_emb_len prefix slots, T = P + L,
D = hidden_size, V = vocab_size. Parameter and buffer names equal the reference's inner module
(`_orig_mod.model.inner.<name>` in a reference checkpoint), so importing is a prefix strip.

One call `model(carry, batch)` is one supervision step:
    z_L <- L_level(z_L, z_H + x)  L_cycles times, then z_H <- L_level(z_H, z_L);  repeated H_cycles times,
    all but the last H-cycle without gradient; logits = lm_head(z_H) on the canvas, q = q_head(z_H[:, 0]).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arc_kit.base.errors import ArcKitError
from arc_kit.data import GRID_SIDE
from arc_kit.model.config import GRID_CELLS, TRMConfig
from arc_kit.model.layers import (
    Attention,
    CastedEmbedding,
    CastedLinear,
    RotaryEmbedding,
    SwiGLU,
    rms_norm,
    trunc_normal_,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # TRMConfig.forward_dtype


def coord_positions(height: int, width: int) -> torch.Tensor:
    """Coordinate position (without the prefix P) of each token of a row-major `height` x `width` crop:
    30 r + c, int64 [height * width]."""
    if not (1 <= height <= GRID_SIDE and 1 <= width <= GRID_SIDE):
        raise ArcKitError(f"crop {height}x{width} does not fit the {GRID_SIDE}x{GRID_SIDE} coordinate grid")
    return (torch.arange(height)[:, None] * GRID_SIDE + torch.arange(width)[None, :]).reshape(-1)


@dataclass
class Carry:
    """State carried between supervision steps (detached). A halted sequence is reset, and takes its
    data from the next batch, at the start of the next step."""

    z_H: torch.Tensor  # [B, T, D] forward dtype: the answer state "y"
    z_L: torch.Tensor  # [B, T, D] the latent reasoning state "z"
    steps: torch.Tensor  # [B] int32 supervision steps done on the current data
    halted: torch.Tensor  # [B] bool
    current_data: dict[str, torch.Tensor]  # the batch entries each sequence is working on


class PuzzleEmbedding(nn.Module):
    """Per-puzzle vector table [N, ndim]: a buffer, not a parameter (zero-initialised; trained by
    sparse sign-SGD, excluded from EMA and from the dense optimiser).

    In training mode with grad enabled, the looked-up rows become a fresh leaf `local_weights`
    [B, ndim] (requires_grad) with their row ids in `local_ids` [B]; after backward the trainer
    reads `local_weights.grad` and updates `weights[local_ids]` itself."""

    weights: torch.Tensor  # [N, ndim] buffer (registered in __init__)

    def __init__(self, num: int, dim: int, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("weights", torch.zeros(num, dim), persistent=True)
        self.dtype = dtype
        self.local_weights: torch.Tensor | None = None
        self.local_ids: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.weights[ids]  # [B, ndim]
        if self.training and torch.is_grad_enabled():
            rows = rows.detach().requires_grad_(True)
            self.local_weights, self.local_ids = rows, ids
        return rows.to(self.dtype)


class Block(nn.Module):
    """Post-norm block: x = norm(x + mix(x)); x = norm(x + mlp(x)). `mix` is attention or an MLP over positions."""

    def __init__(self, cfg: TRMConfig):
        super().__init__()
        if cfg.mlp_t:
            self.mlp_t = SwiGLU(cfg.seq_len + cfg.prefix_len, cfg.expansion)
        else:
            self.self_attn = Attention(cfg.hidden_size, cfg.num_heads)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.expansion)
        self.eps = cfg.rms_norm_eps

    def forward(self, x: torch.Tensor, cos_sin) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            xt = x.transpose(1, 2)  # [B, D, T]; note the norm then runs over positions, as in the reference
            x = rms_norm(xt + self.mlp_t(xt), self.eps).transpose(1, 2)
        else:
            x = rms_norm(x + self.self_attn(x, cos_sin), self.eps)
        return rms_norm(x + self.mlp(x), self.eps)


class ReasoningModule(nn.Module):
    """The one shared network, used for both z_L and z_H updates: add the injection, run the blocks.
    (HRM has two: its L-level of L_layers blocks and its H-level of `n_layers` = H_layers blocks.)"""

    def __init__(self, cfg: TRMConfig, n_layers: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(Block(cfg) for _ in range(n_layers or cfg.L_layers))

    def forward(self, h: torch.Tensor, injection: torch.Tensor, cos_sin) -> torch.Tensor:
        h = h + injection
        for layer in self.layers:
            h = layer(h, cos_sin)
        return h


class TRM(nn.Module):
    """TRM with the reference ACT interface (`initial_carry`, `forward(carry, batch)`) and `predict` for inference.
    Keep parameters fp32 (don't call `.to(torch.bfloat16)`): `forward_dtype` casts on the fly."""

    # buffers and optional submodules, registered in __init__ (typed here for the checker)
    H_init: torch.Tensor  # [D] forward dtype
    L_init: torch.Tensor
    puzzle_emb: PuzzleEmbedding  # only with puzzle_emb_ndim > 0
    rotary_emb: RotaryEmbedding  # only with pos_encodings "rope"
    embed_pos: CastedEmbedding  # only with pos_encodings "learned"

    def __init__(self, config: TRMConfig):
        super().__init__()
        self.config = cfg = config
        D, P, dtype = cfg.hidden_size, cfg.prefix_len, DTYPES[cfg.forward_dtype]
        self.embed_scale = math.sqrt(D)
        self.embed_tokens = CastedEmbedding(cfg.vocab_size, D, std=1 / self.embed_scale, dtype=dtype)
        self.lm_head = CastedLinear(D, cfg.vocab_size)
        self.q_head = CastedLinear(D, 2, bias=True)  # [q_halt, q_continue]
        if cfg.puzzle_emb_ndim > 0:
            self.puzzle_emb = PuzzleEmbedding(cfg.num_puzzle_identifiers, cfg.puzzle_emb_ndim, dtype)
        if cfg.pos_encodings == "rope":
            n_pos = P + (GRID_CELLS if cfg.positions == "coords" else cfg.seq_len)
            self.rotary_emb = RotaryEmbedding(D // cfg.num_heads, n_pos, cfg.rope_theta)
        elif cfg.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(cfg.seq_len + P, D, std=1 / self.embed_scale, dtype=dtype)
        self.build_levels(cfg)
        # initial states, one vector broadcast over positions; stored in the forward dtype like the reference
        self.register_buffer("H_init", trunc_normal_(torch.empty(D, dtype=dtype), std=1))
        self.register_buffer("L_init", trunc_normal_(torch.empty(D, dtype=dtype), std=1))
        q_bias = self.q_head.bias
        assert q_bias is not None  # built with bias=True
        with torch.no_grad():  # q starts at "don't halt" (sigmoid(-5) ~ 0.007)
            self.q_head.weight.zero_()
            q_bias.fill_(-5)

    def build_levels(self, cfg: TRMConfig) -> None:
        """The reasoning network(s), built between the embeddings and the initial states (the reference's
        order, so a seed gives its initial values): TRM has one, `L_level`."""
        self.L_level = ReasoningModule(cfg)

    # ---- pieces -------------------------------------------------------------------------------
    def num_params(self) -> int:
        """Trainable parameters; the puzzle table (a buffer) is not counted."""
        return sum(p.numel() for p in self.parameters())

    def embed(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        """inputs [B, L] tokens, puzzle_ids [B] -> input injection x [B, T, D] in the forward dtype."""
        cfg, B = self.config, inputs.shape[0]
        x = self.embed_tokens(inputs.to(torch.int32))  # [B, L, D]
        P, D = cfg.prefix_len, cfg.hidden_size
        if P > 0:
            if cfg.puzzle_emb_ndim > 0:
                prefix = self.puzzle_emb(puzzle_ids.reshape(-1))  # [B, ndim]
                prefix = F.pad(prefix, (0, P * D - prefix.shape[-1]))  # rest of the P slots are zeros
            else:
                prefix = x.new_zeros(B, P * D)
            x = torch.cat((prefix.view(B, P, D), x), dim=1)  # [B, T, D]
        if cfg.pos_encodings == "learned":
            x = 0.707106781 * (x + self.embed_pos.embedding_weight.to(x.dtype))  # keep the variance
        return self.embed_scale * x

    def rope(self, batch: dict[str, torch.Tensor] | None = None):
        """RoPE (cos, sin) for a batch, None without RoPE. Canvas positions: the tables [T, hd]. Coordinate
        positions: gathered per sequence [B, T, hd] from batch["positions"] ([B, L], 30 r + c of each token),
        or [T, hd] for a square crop of side sqrt(L) when the batch has no positions (L = seq_len without
        a batch)."""
        cfg = self.config
        if cfg.pos_encodings != "rope":
            return None
        cos, sin = self.rotary_emb()
        if cfg.positions == "canvas":
            return cos, sin
        P = cfg.prefix_len
        pos = None if batch is None else batch.get("positions")
        if pos is None:
            L = cfg.seq_len if batch is None else batch["inputs"].shape[1]
            side = math.isqrt(L)
            if side * side != L:
                raise ArcKitError(f"model: {L}-token sequences are not square crops: the batch needs 'positions'")
            pos = coord_positions(side, side).to(cos.device)
        prefix = torch.arange(P, device=pos.device).expand(*pos.shape[:-1], P)
        idx = torch.cat((prefix, P + pos.long()), dim=-1)
        return cos[idx], sin[idx]

    def recurse(self, z_H, z_L, x, cos_sin=None):
        """One supervision step of latent recursion. z_H, z_L, x [B, T, D] -> new z_H, z_L (with grad from the
        last H-cycle). cos_sin: from rope(batch) (canvas positions when omitted)."""
        cfg = self.config
        if cos_sin is None:
            cos_sin = self.rope()
        with torch.no_grad():
            for _ in range(cfg.H_cycles - 1):
                for _ in range(cfg.L_cycles):
                    z_L = self.L_level(z_L, z_H + x, cos_sin)
                z_H = self.L_level(z_H, z_L, cos_sin)
        for _ in range(cfg.L_cycles):
            z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.L_level(z_H, z_L, cos_sin)
        return z_H, z_L

    def heads(self, z_H):
        """z_H [B, T, D] -> logits [B, L, V] (forward dtype), q_halt [B], q_continue [B] (fp32)."""
        logits = self.lm_head(z_H)[:, self.config.prefix_len :]
        q = self.q_head(z_H[:, 0]).to(torch.float32)  # the first prefix slot reads the puzzle
        return logits, q[:, 0], q[:, 1]

    def _eval_step(self, z_H, z_L, x, cos_sin):
        """One inference supervision step: recursion then heads (what compile_inference compiles)."""
        z_H, z_L = self.recurse(z_H, z_L, x, cos_sin)
        logits, q_halt, q_cont = self.heads(z_H)
        return z_H, z_L, logits, q_halt, q_cont

    def compile_inference(self) -> None:
        """Run predict's supervision step through torch.compile (mode "default"). The first batch of each new
        shape pays the compile time; after a second shape torch marks the batch and length dynamic, so early
        halt (shrinking batches), a smaller last batch and crop buckets reuse the graph rather than recompile
        each time. Inference only: the compiled function is not part of the module's state (compile a model after
        copying it, never before: a deep copy would keep calling the original's step)."""
        self.__dict__["_compiled_step"] = torch.compile(self._eval_step)

    def initial_state(self, B: int, L: int | None = None):
        """z_H, z_L [B, T, D] at their initial values (T = P + L, L default seq_len)."""
        T = (L or self.config.seq_len) + self.config.prefix_len
        return self.H_init.expand(B, T, -1), self.L_init.expand(B, T, -1)

    # ---- ACT interface (trainer) ----------------------------------------------------------------
    def initial_carry(self, batch: dict[str, torch.Tensor]) -> Carry:
        """Every sequence starts halted, so the first step loads `batch` and resets the state."""
        B, T, D = batch["inputs"].shape[0], batch["inputs"].shape[1] + self.config.prefix_len, self.config.hidden_size
        dev = self.H_init.device
        z = torch.zeros(B, T, D, dtype=self.H_init.dtype, device=dev)
        return Carry(
            z_H=z,
            z_L=z.clone(),
            steps=torch.zeros(B, dtype=torch.int32, device=dev),
            halted=torch.ones(B, dtype=torch.bool, device=dev),
            current_data={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    def forward(self, carry: Carry, batch: dict[str, torch.Tensor]) -> tuple[Carry, dict[str, torch.Tensor]]:
        """One supervision step. batch: inputs [B, L], labels [B, L], puzzle_identifiers [B] (any extra keys
        are carried along too). Returns the new carry and outputs: logits [B, L, V], q_halt_logits [B],
        q_continue_logits [B] (+ target_q_continue [B] when training with no_ACT_continue False).
        Training: a sequence halts at halt_max_steps or when q_halt > 0 (q_halt > q_continue without
        no_ACT_continue), but with prob. halt_exploration_prob not before a random step in [2, max].
        Eval: every sequence runs exactly halt_max_steps steps."""
        cfg = self.config
        reset = carry.halted
        z_H = torch.where(reset.view(-1, 1, 1), self.H_init, carry.z_H)
        z_L = torch.where(reset.view(-1, 1, 1), self.L_init, carry.z_L)
        steps = torch.where(reset, 0, carry.steps)
        data = {
            k: torch.where(reset.view((-1,) + (1,) * (v.ndim - 1)), batch[k], v) for k, v in carry.current_data.items()
        }

        x = self.embed(data["inputs"], data["puzzle_identifiers"])
        cos_sin = self.rope(data)
        z_H, z_L = self.recurse(z_H, z_L, x, cos_sin)
        logits, q_halt, q_continue = self.heads(z_H)
        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_continue}
        z_H, z_L = z_H.detach(), z_L.detach()  # no gradient flows between supervision steps

        with torch.no_grad():
            steps = steps + 1
            last = steps >= cfg.halt_max_steps
            halted = last
            if self.training and cfg.halt_max_steps > 1:
                halted = halted | ((q_halt > 0) if cfg.no_ACT_continue else (q_halt > q_continue))
                explore = torch.rand_like(q_halt) < cfg.halt_exploration_prob
                min_steps = explore * torch.randint_like(steps, low=2, high=cfg.halt_max_steps + 1)
                halted = halted & (steps >= min_steps)
                if not cfg.no_ACT_continue:  # bootstrapped target: value of the next step (PQN-style, no replay)
                    _, nq_halt, nq_cont = self.heads(self.recurse(z_H, z_L, x, cos_sin)[0])
                    outputs["target_q_continue"] = torch.sigmoid(
                        torch.where(last, nq_halt, torch.maximum(nq_halt, nq_cont))
                    )
        return Carry(z_H, z_L, steps, halted, data), outputs

    # ---- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        batch: dict[str, torch.Tensor],
        steps: int | None = None,
        early_halt: bool = False,
        return_logits: bool = False,
        return_all_steps: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Run `steps` (default halt_max_steps) eval supervision steps from the initial state.
        early_halt: a sequence stops (and is dropped from the batch, saving its compute) after the
        first step whose q_halt logit > 0. Returns preds [B, L] (argmax), q_halt / q_continue [B] (fp32
        logits of the step the answer came from), steps_run [B] int; logits [B, L, V] if return_logits;
        all_preds [S, B, L] and all_q_halt [S, B] (every step; rows of stopped sequences repeat) if return_all_steps."""
        was_training = self.training
        self.eval()
        try:
            S = steps or self.config.halt_max_steps
            inputs, ids = batch["inputs"], batch["puzzle_identifiers"]
            (B, L), dev = inputs.shape, inputs.device
            x = self.embed(inputs, ids)
            cos_sin = self.rope(batch)
            z_H, z_L = self.initial_state(B, L)
            active = torch.arange(B, device=dev)  # rows of the batch still running
            out = {
                "preds": torch.zeros(B, L, dtype=torch.long, device=dev),
                "q_halt": torch.zeros(B, device=dev),
                "q_continue": torch.zeros(B, device=dev),
                "steps_run": torch.zeros(B, dtype=torch.long, device=dev),
            }
            if return_logits:
                out["logits"] = torch.zeros(B, L, self.config.vocab_size, device=dev)
            all_preds, all_q = [], []
            compiled = self.__dict__.get("_compiled_step")  # set by compile_inference()
            step = compiled or self._eval_step
            if compiled is not None:  # every step then sees dense states: one graph, not two per shape
                z_H, z_L = z_H.contiguous(), z_L.contiguous()
            for s in range(1, S + 1):
                z_H, z_L, logits, q_halt, q_cont = step(z_H, z_L, x, cos_sin)
                out["preds"][active] = logits.argmax(-1)
                out["q_halt"][active], out["q_continue"][active] = q_halt, q_cont
                out["steps_run"][active] = s
                if return_logits:
                    out["logits"][active] = logits.float()
                if return_all_steps:
                    all_preds.append(out["preds"].clone())
                    all_q.append(out["q_halt"].clone())
                if early_halt:
                    keep = q_halt <= 0
                    if not keep.all():
                        active, x, z_H, z_L = active[keep], x[keep], z_H[keep], z_L[keep]
                        if cos_sin is not None and cos_sin[0].ndim == 3:  # per-sequence coordinate tables
                            cos_sin = (cos_sin[0][keep], cos_sin[1][keep])
                    if active.numel() == 0:
                        break
            if return_all_steps:
                while len(all_preds) < S:  # everyone stopped early: their answers stand
                    all_preds.append(out["preds"].clone())
                    all_q.append(out["q_halt"].clone())
                out["all_preds"], out["all_q_halt"] = torch.stack(all_preds), torch.stack(all_q)
            return out
        finally:
            self.train(was_training)
