"""Raw model outputs (`arc-kit forward`): the npz batch and its checks, N supervision steps of recursion, the npz out.

Shapes: B sequences, L = seq_len tokens, V vocabulary, N steps, T = P + L positions, D = hidden_size.
"""

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_bytes, open_read
from arc_kit.encoding import IGNORE_LABEL_ID
from arc_kit.model.checkpoint import load_checkpoint, read_checkpoint_info
from arc_kit.model.loss import compute_loss

HEADS = ("logits", "q_halt_logits", "q_continue_logits")


@dataclass
class ForwardBatch:
    """A checked batch of an npz file: integer arrays that fit the checkpoint they were checked against."""

    path: Path
    inputs: np.ndarray  # [B, L] token ids
    puzzle_identifiers: np.ndarray  # [B] stored table rows
    labels: np.ndarray | None  # [B, L] token ids or IGNORE_LABEL_ID


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with open_read(path, "npz file") as f:  # no pickles: object arrays are refused
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ArcKitError(f"{path}: a single .npy array, expected an npz archive of named arrays")
            return dict(loaded)
    except ValueError:  # numpy's words here advise allow_pickle: the kit never loads pickles
        raise ArcKitError(f"{path}: not an npz archive of numeric arrays (pickled data is never loaded)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ArcKitError(f"{path}: cannot read npz ({' '.join(str(e).split())})") from None


def read_forward_inputs(path: str | Path, model_dir: str | Path) -> ForwardBatch:
    """inputs [B, L], puzzle_identifiers [B] and optional labels [B, L] of an npz, checked against the checkpoint
    in `model_dir` (its config and row names only: nothing is loaded before the batch is known to fit)."""
    path = Path(path)
    data = _read_npz(path)
    for key in ("inputs", "puzzle_identifiers"):
        if key not in data:
            raise ArcKitError(f"{path}: missing array '{key}'")
    inputs, ids = data["inputs"], data["puzzle_identifiers"].reshape(-1)
    for key in ("inputs", "puzzle_identifiers", "labels"):
        if key in data and data[key].dtype.kind not in "iu":
            raise ArcKitError(f"{path}: array '{key}' holds {data[key].dtype}, expected integers")
    if inputs.ndim != 2 or ids.shape[0] != inputs.shape[0]:
        raise ArcKitError(
            f"{path}: expected inputs [B, L] and puzzle_identifiers [B], got {inputs.shape} and {ids.shape}"
        )
    if inputs.shape[0] == 0:
        raise ArcKitError(f"{path}: no sequences (inputs has 0 rows)")
    labels = data.get("labels")
    if labels is not None and labels.shape != inputs.shape:
        raise ArcKitError(f"{path}: labels have shape {labels.shape}, inputs {inputs.shape}")
    info = read_checkpoint_info(model_dir)
    cfg = info.config
    if inputs.shape[1] != cfg.seq_len:
        raise ArcKitError(f"{path}: inputs have {inputs.shape[1]} tokens but the model's seq_len is {cfg.seq_len}")
    V = cfg.vocab_size
    if inputs.min() < 0 or inputs.max() >= V:
        bad = int(inputs.min()) if inputs.min() < 0 else int(inputs.max())
        raise ArcKitError(f"{path}: token id {bad} in 'inputs' is outside the model's vocabulary 0..{V - 1}")
    if labels is not None:
        outside = (labels != IGNORE_LABEL_ID) & ((labels < 0) | (labels >= V))
        if outside.any():
            raise ArcKitError(
                f"{path}: label {int(labels[outside][0])} in 'labels' is outside 0..{V - 1} "
                f"(and not the ignore id {IGNORE_LABEL_ID})"
            )
    n_rows = len(info.puzzle_names)
    if cfg.puzzle_emb_ndim > 0 and (ids.min() < 0 or ids.max() >= n_rows):
        bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
        raise ArcKitError(f"{path}: puzzle identifier {bad} out of range (table has {n_rows} rows)")
    return ForwardBatch(path, inputs, ids, labels)


def forward_steps(
    model_dir: str | Path,
    batch: ForwardBatch,
    steps: int | None,
    device: torch.device | str = "cpu",
    dtype: str | None = None,
    states: bool = False,
) -> tuple[dict[str, np.ndarray], int]:
    """`steps` supervision steps (None: the model's halt_max_steps) in evaluation mode from the initial state,
    continuous recursion (the same as the ACT loop for the first halt_max_steps steps). Loads only the table rows
    the batch uses. Returns ({logits [N, B, L, V], q_halt_logits, q_continue_logits [N, B], loss [N] with labels,
    z_H_step{k} / z_L_step{k} [B, T, D] with `states`}, N)."""
    rows, local_ids = np.unique(batch.puzzle_identifiers, return_inverse=True)  # local id i <-> stored row rows[i]
    model, _ = load_checkpoint(model_dir, device=device, puzzle_rows=rows.tolist(), forward_dtype=dtype)
    inputs = torch.from_numpy(batch.inputs.astype(np.int64)).to(device)
    ids = torch.from_numpy(local_ids.astype(np.int64)).to(device)
    labels = torch.from_numpy(batch.labels.astype(np.int64)).to(device) if batch.labels is not None else None
    n = steps or model.config.halt_max_steps
    res: dict[str, list[np.ndarray]] = {k: [] for k in HEADS}  # one array per step
    losses: list[float] = []
    saved: dict[str, np.ndarray] = {}  # states: z_H / z_L after every step
    with torch.no_grad():
        x = model.embed(inputs, ids)
        z_H, z_L = model.initial_state(inputs.shape[0])
        for k in range(n):
            z_H, z_L = model.recurse(z_H, z_L, x)
            logits, q_halt, q_cont = model.heads(z_H)
            outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_cont}
            for key in HEADS:
                res[key].append(outputs[key].float().cpu().numpy())
            if labels is not None:
                losses.append(compute_loss(outputs, labels)[0].item())
            if states:
                saved[f"z_H_step{k}"] = z_H.float().cpu().numpy()
                saved[f"z_L_step{k}"] = z_L.float().cpu().numpy()
    # the archive's order: the heads, the loss (with labels only), then the states
    arrays = {k: np.stack(v) for k, v in res.items()}
    if losses:
        arrays["loss"] = np.asarray(losses, dtype=np.float64)
    arrays.update(saved)
    return arrays, n


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Numeric arrays to an npz file, atomically; no pickle is ever written."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    atomic_write_bytes(path, buf.getvalue())
