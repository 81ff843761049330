"""What every training loop here shares: seeding, batching, checkpoints, history, sample grids."""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from cardiosynth.device import Precision, loader_options, resolve_precision

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.jsonl"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries that still draw from the global state
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[npt.NDArray[np.int64]]:
    """Shuffled index batches for one epoch; the order depends only on ``(seed, epoch)``, so a resumed
    run sees exactly the batches an uninterrupted one would. The last, short batch is dropped when it
    would hold a single sample (BatchNorm cannot train on one)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        if len(batch) < 2 and n > 1:
            continue
        yield batch.astype(np.int64)


class _EpochSampler(Sampler[list[int]]):
    """The batches of :func:`epoch_batches` for the epoch last set, as a DataLoader batch sampler (a
    persistent loader keeps its workers across epochs; only the order changes)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def __iter__(self) -> Iterator[list[int]]:
        for batch in epoch_batches(self.n, self.batch_size, self.seed, self.epoch):
            yield batch.tolist()

    def __len__(self) -> int:
        return sum(1 for _ in epoch_batches(self.n, self.batch_size, self.seed, self.epoch))


class BatchFeed:
    """Training batches of ``tensors`` (equal first dimension) on ``device``, epoch by epoch, in the
    order of :func:`epoch_batches` on every device.

    On CPU the tensors are indexed in place, exactly as the loops always did (same results, same
    speed). On CUDA a DataLoader with worker processes and pinned memory prepares the next batches
    while the GPU works, and each batch is copied asynchronously.
    """

    def __init__(
        self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int, device: torch.device
    ) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError(f"need tensors of one length, got {[len(t) for t in tensors]}")
        self.tensors, self.batch_size, self.seed, self.device = tensors, batch_size, seed, device
        self.n = len(tensors[0])
        self._sampler: _EpochSampler | None = None
        self._loader: DataLoader[Any] | None = None
        if device.type == "cuda":
            self._sampler = _EpochSampler(self.n, batch_size, seed)
            self._loader = DataLoader(
                TensorDataset(*tensors), batch_sampler=self._sampler, **loader_options(device)
            )

    def epoch(self, epoch: int) -> tuple[int, Iterator[tuple[torch.Tensor, ...]]]:
        """``(number of batches, batches)`` of ``epoch``."""
        batches = list(epoch_batches(self.n, self.batch_size, self.seed, epoch))
        if self._loader is None or self._sampler is None:
            return len(batches), (tuple(t[idx] for t in self.tensors) for idx in batches)
        self._sampler.epoch = epoch
        loader = self._loader
        return len(batches), (tuple(t.to(self.device, non_blocking=True) for t in batch) for batch in loader)


def training_precision(precision: str | None, device: torch.device) -> Precision:
    """Mixed precision of a training run: fp32 on CPU, bf16 (AMP) on CUDA by default. fp16 is refused:
    it needs loss scaling, which these loops do not do, and bf16 trains as fast on the GPUs we use."""
    resolved = resolve_precision(precision, device)
    if resolved == "fp16":
        raise ValueError("precision 'fp16' is not supported for training (no loss scaling); use bf16")
    return resolved


def rng_state(device: torch.device) -> dict[str, Any]:
    """The random state a checkpoint keeps: torch's CPU generator, and CUDA's when training there
    (style and latent draws come from the generator of the model's device)."""
    state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``run_dir/checkpoint.pt`` atomically (a crash never leaves half a file)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CHECKPOINT
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint in ``run_dir``, or ``None`` when there is none."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def append_history(run_dir: Path, record: dict[str, Any]) -> None:
    with (run_dir / HISTORY).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_history(run_dir: Path, epochs: int) -> None:
    """Keep the first ``epochs`` records (a resumed run rewrites what came after its checkpoint)."""
    path = run_dir / HISTORY
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()[:epochs]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix a new run into an old one unless asked to resume or overwrite."""
    if (run_dir / CHECKPOINT).exists() and not (resume or overwrite):
        raise FileExistsError(f"{run_dir} holds a training run; pass --resume to continue or --overwrite")
    if overwrite and not resume:
        for name in (CHECKPOINT, HISTORY):
            (run_dir / name).unlink(missing_ok=True)


def check_resumable(run_dir: Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """A run may be resumed with more epochs, but not with other hyper-parameters."""
    differ = {k for k in set(saved) | set(wanted) if k != "epochs" and saved.get(k) != wanted.get(k)}
    if differ:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in sorted(differ))
        raise ValueError(f"{run_dir}: cannot resume with changed settings ({detail})")


def label_colours(labels: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
    """RGB rendering of label maps ``(..., H, W)`` -> ``(..., H, W, 3)`` (RV blue, MYO green, LV red)."""
    palette = np.array([[0, 0, 0], [0.2, 0.4, 1.0], [0.2, 0.8, 0.2], [1.0, 0.25, 0.2]], dtype=np.float32)
    out: npt.NDArray[np.float32] = palette[np.clip(labels, 0, 3)]
    return out


def save_grid(rows: list[npt.NDArray[np.floating[Any]]], titles: list[str], path: Path) -> None:
    """Write rows of panels ``(K, H, W)`` (grey in [-1, 1]) or ``(K, H, W, 3)`` (RGB) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(rows) != len(titles) or not rows:
        raise ValueError(f"{len(rows)} rows but {len(titles)} titles")
    cols = rows[0].shape[0]
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.7 * len(rows)), squeeze=False)
    for r, (row, title) in enumerate(zip(rows, titles, strict=True)):
        for c in range(cols):
            ax = axes[r][c]
            panel = row[c]
            if panel.ndim == 2:
                ax.imshow(panel, cmap="gray", vmin=-1, vmax=1)
            else:
                ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)


def export_model(
    model: torch.nn.Module,
    run_dir: Path,
    *,
    kind: str,
    version: str,
    card: dict[str, Any],
    model_root: Path | None = None,
) -> Path:
    """Write the trained model to ``run_dir/model`` and, with ``model_root``, install it there too."""
    from cardiosynth.models.registry import save_model

    path = save_model(model, run_dir / "model", kind=kind, version=version, card=card)
    if model_root is not None:
        path = save_model(model, model_root / kind / version, kind=kind, version=version, card=card)
    return path


def data_card(data: Path, train: Any, heldout: Any) -> dict[str, Any]:
    """The model-card fields that identify the training data (``train``/``heldout`` are SliceSets)."""
    return {
        "data": Path(data).name,
        "data_fingerprint": train.fingerprint(),
        "train_subjects": len(train.subject_ids),
        "heldout_subjects": list(heldout.subject_ids),
    }
