"""TRM training loss (the reference ACTLossHead): stablemax cross-entropy in float64 + 0.5 x halting BCE."""

import torch
import torch.nn.functional as F

from arc_kit.encoding import IGNORE_LABEL_ID
from arc_kit.model.trm import Carry


def _stablemax_s(x: torch.Tensor) -> torch.Tensor:
    # s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0: positive, grows linearly (no exp overflow)
    return torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    s = _stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL_ID
) -> torch.Tensor:
    """logits [B, L, V], labels [B, L] -> per-token loss [B, L] in float64 (0 where ignored)."""
    dtype = torch.float32 if logits.device.type == "mps" else torch.float64  # MPS has no float64
    logp = log_stablemax(logits.to(dtype), dim=-1)
    valid = labels != ignore_index
    picked = logp.gather(-1, torch.where(valid, labels, 0).long().unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, 0)


def softmax_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_LABEL_ID
) -> torch.Tensor:
    """Plain cross-entropy in float32, same shape contract as stablemax_cross_entropy."""
    V = logits.shape[-1]
    return F.cross_entropy(
        logits.float().reshape(-1, V), labels.long().reshape(-1), ignore_index=ignore_index, reduction="none"
    ).view(labels.shape)


LOSS_FUNCTIONS = {"stablemax_cross_entropy": stablemax_cross_entropy, "softmax_cross_entropy": softmax_cross_entropy}


def compute_loss(
    outputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    halted: torch.Tensor | None = None,
    steps: torch.Tensor | None = None,
    loss_type: str = "stablemax_cross_entropy",
    rows: dict[str, torch.Tensor] | None = None,
):
    """Loss of one supervision step, summed over the batch (divide by the global batch size outside).

    outputs: the model's (logits [B, L, V], q_halt_logits [B], q_continue_logits [B], target_q_continue [B] opt.)
    labels [B, L] (-100 = ignored): pass `carry.current_data["labels"]` (the data each sequence worked on,
    which differs from the batch just given for sequences that were not reset), halted/steps from the new carry.
    loss = sum_b mean_{valid t} CE(b, t)  +  0.5 * (BCE(q_halt, seq exactly right) [+ BCE(q_continue, target)]).
    Metrics (sums over the halted sequences that have labels): count, accuracy (per-sequence token accuracy),
    exact_accuracy, q_halt_accuracy, steps; plus lm_loss, q_halt_loss (, q_continue_loss) of the whole batch.
    `rows`: a dict that gets the per-sequence "counted" [B] (halted, with labels) and "exact" [B] flags."""
    logits = outputs["logits"]
    with torch.no_grad():
        mask = labels != IGNORE_LABEL_ID
        counts = mask.sum(-1)  # [B] labelled tokens (EOS included, PAD not)
        divisor = counts.clamp_min(1).unsqueeze(-1)
        correct = mask & (logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == counts  # [B]
        valid = (halted if halted is not None else torch.ones_like(mask[:, 0])) & (counts > 0)
        metrics = {
            "count": valid.sum(),
            "accuracy": torch.where(valid, (correct.float() / divisor).sum(-1), 0).sum(),
            "exact_accuracy": (valid & seq_correct).sum(),
            "q_halt_accuracy": (valid & ((outputs["q_halt_logits"] >= 0) == seq_correct)).sum(),
        }
        if steps is not None:
            metrics["steps"] = torch.where(valid, steps, 0).sum()
        if rows is not None:
            rows["counted"], rows["exact"] = valid, seq_correct

    lm_loss = (LOSS_FUNCTIONS[loss_type](logits, labels) / divisor).sum()
    q_halt = outputs["q_halt_logits"]
    q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, seq_correct.to(q_halt.dtype), reduction="sum")
    metrics["lm_loss"], metrics["q_halt_loss"] = lm_loss.detach(), q_halt_loss.detach()
    q_continue_loss: torch.Tensor | int = 0
    if "target_q_continue" in outputs:
        q_continue_loss = F.binary_cross_entropy_with_logits(
            outputs["q_continue_logits"], outputs["target_q_continue"], reduction="sum"
        )
        metrics["q_continue_loss"] = q_continue_loss.detach()
    return lm_loss + 0.5 * (q_halt_loss + q_continue_loss), metrics


def act_loss(carry: Carry, outputs: dict[str, torch.Tensor], loss_type: str = "stablemax_cross_entropy"):
    """compute_loss with labels/halted/steps taken from the carry that `model(carry, batch)` returned."""
    return compute_loss(outputs, carry.current_data["labels"], carry.halted, carry.steps, loss_type)
