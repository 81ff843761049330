"""The one place that knows about compute devices: which device, which precision, how big a batch.

Everything else asks this module instead of calling ``.cuda()``: a module is placed once with
:func:`place`, a batch goes to its model with :func:`to_model` and results come back with
:func:`to_numpy` (always a CPU array), the forward pass runs under :func:`autocast`, and batch sizes
come from :func:`batch_size_for`. On a CPU-only machine every helper is the identity of the old
path: fp32, no autocast, the same batch sizes, so CPU results do not change.

Device specs: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` (the current CUDA
device), ``cuda:N``. Precisions: ``fp32``, ``bf16``, ``fp16`` (autocast; parameters stay fp32);
``None`` or ``auto`` means fp32 on CPU and bf16 on CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal, TypeVar, cast

import numpy.typing as npt
import torch
from torch import nn

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"
_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")

# The precision a command asked for (``--precision``), for code that runs models without taking a
# precision argument of its own (the evaluation reports): see :func:`precision_scope`.
_PRECISION: ContextVar[str | None] = ContextVar("cardiosynth_precision", default=None)

M = TypeVar("M", bound=nn.Module)


def check_device_spec(spec: str) -> str:
    """``spec`` normalised (lower case, stripped) when it names a device form we accept."""
    text = str(spec).strip().lower()
    match = _SPEC.match(text)
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise ValueError(f"unknown device {spec!r}; expected {DEVICE_HELP}")
    return text


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The :class:`torch.device` for ``spec`` (``None`` = ``auto``).

    ``ValueError`` for a spec that is not one of the accepted forms, for ``cuda`` on a machine where
    torch sees no CUDA device (a CPU build of torch, no driver, or ``CUDA_VISIBLE_DEVICES`` empty),
    and for ``cuda:N`` beyond the visible devices. Never falls back silently: a worker configured for
    a GPU that runs on the CPU instead would be 20 x slower without saying why.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = check_device_spec("auto" if spec is None else spec)
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none (a CPU-only build)"
        raise ValueError(
            f"device {spec!r} requested but CUDA is not available (torch {torch.__version__}, CUDA "
            f"{build}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
            "use --device cpu or auto"
        )
    device = torch.device(text)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"device {spec!r} requested but only {count} CUDA device(s) are visible")
    return device


def check_precision(precision: str) -> Precision:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    return cast(Precision, precision)


def default_precision(device: torch.device) -> Precision:
    """fp32 on CPU (bf16 autocast on CPU is slower than fp32 there), bf16 on CUDA."""
    return "bf16" if device.type == "cuda" else "fp32"


def resolve_precision(precision: str | None, device: torch.device) -> Precision:
    """The precision to run at on ``device``: ``precision`` when given, else the one a surrounding
    :func:`precision_scope` set, else :func:`default_precision`. ``ValueError`` for an unknown name
    and for fp16 on CPU (no fp16 autocast kernels worth having there)."""
    chosen = precision if precision not in (None, "auto") else _PRECISION.get()
    result = default_precision(device) if chosen in (None, "auto") else check_precision(str(chosen))
    if result == "fp16" and device.type == "cpu":
        raise ValueError("precision 'fp16' is not supported on the CPU; use fp32 or bf16 there")
    return result


@contextlib.contextmanager
def precision_scope(precision: str | None) -> Iterator[None]:
    """Within the block, models run without an explicit precision use ``precision`` (``None`` or
    ``auto``: the device's default). The CLI wraps a command in this for ``--precision``."""
    if precision not in (None, "auto"):
        check_precision(str(precision))
    token = _PRECISION.set(precision)
    try:
        yield
    finally:
        _PRECISION.reset(token)


def autocast(device: torch.device, precision: str | None = None) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``precision`` on ``device`` (resolved as in :func:`resolve_precision`);
    fp32 is no context at all, so the fp32 path is exactly the code that ran before autocast."""
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[resolved])


def model_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); CPU for a module with neither."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def place(module: M, device: str | torch.device | None = "auto") -> M:
    """Move ``module`` to ``device`` (a spec or a device; resolved) once; returns the module."""
    target = device if isinstance(device, torch.device) else resolve_device(device)
    if model_device(module) != target:
        module.to(target)
        log.info("%s on %s", type(module).__name__, target)
    return module


def to_model(tensor: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``tensor`` on ``module``'s device (no copy when it is there already)."""
    device = model_device(module)
    if tensor.device == device:
        return tensor
    # Pinned host memory lets the copy overlap with work already queued on the GPU.
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def to_numpy(tensor: torch.Tensor) -> npt.NDArray[Any]:
    """A CPU numpy array of ``tensor`` (detached); bf16/fp16 results come back as float32."""
    out = tensor.detach()
    if out.dtype in (torch.bfloat16, torch.float16):
        out = out.float()
    array: npt.NDArray[Any] = out.cpu().numpy()
    return array


# Per-process memory limits set with :func:`limit_memory`, by CUDA device index.
_LIMITS: dict[int, int] = {}


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def limit_memory(device: torch.device | str, limit_bytes: int) -> None:
    """Let this process use at most ``limit_bytes`` of a CUDA device (a GPU shared with other
    processes, or a smaller card simulated on a larger one): the caching allocator refuses beyond it
    (``torch.cuda.set_per_process_memory_fraction``) and :func:`free_memory`, hence every batch size
    chosen from memory, counts only what is left of it."""
    target = resolve_device(device) if isinstance(device, str) else device
    if target.type != "cuda":
        raise ValueError(f"a memory limit needs a CUDA device, got {str(target)!r}")
    index = _index(target)  # torch's memory calls want an index, not a bare "cuda"
    _, total = torch.cuda.mem_get_info(index)
    if not 0 < limit_bytes <= total:
        raise ValueError(f"memory limit {limit_bytes} bytes is not within (0, {total}] (the device's memory)")
    torch.cuda.set_per_process_memory_fraction(limit_bytes / total, index)
    _LIMITS[index] = int(limit_bytes)


def free_memory(device: torch.device) -> tuple[int, int] | None:
    """``(free, total)`` bytes of a CUDA device (``torch.cuda.mem_get_info``, within this process's
    :func:`limit_memory` if one is set); ``None`` on CPU."""
    if device.type != "cuda":
        return None
    index = _index(device)
    free, total = torch.cuda.mem_get_info(index)
    limit = _LIMITS.get(index)
    if limit is not None:
        # What the allocator holds already counts against the limit; the rest of it may be free.
        free, total = min(free, max(0, limit - torch.cuda.memory_reserved(index))), limit
    return int(free), int(total)


def batch_size_for(
    device: torch.device,
    item_bytes: int,
    *,
    setting: int | None = None,
    cpu_default: int,
    budget: float = 0.6,
    cap: int = 2048,
) -> int:
    """Batch size for a forward pass of ``item_bytes`` (peak memory per batch item).

    ``setting`` (a positive int: the operator's ``CARDIOSYNTH_BATCH_SIZE``) wins everywhere. On CPU,
    ``cpu_default`` (the sizes the CPU path always used, so its results and speed do not change).
    On CUDA, ``budget`` of the free memory divided by ``item_bytes``, between 1 and ``cap``: about
    2000 slices fit an 80 GB card at paper size, a few hundred a 24 GB one.
    """
    if setting is not None:
        if setting < 1:
            raise ValueError(f"batch size setting must be positive, got {setting}")
        return setting
    if cpu_default < 1 or item_bytes < 1:
        raise ValueError(f"need cpu_default >= 1 and item_bytes >= 1, got {cpu_default}, {item_bytes}")
    memory = free_memory(device)
    if memory is None:
        return cpu_default
    free, _ = memory
    return int(max(1, min(cap, budget * free // item_bytes)))


def activation_bytes(module: nn.Module, example: tuple[torch.Tensor, ...], forward: str = "forward") -> int:
    """Peak memory per batch item of ``module.<forward>(*example)`` on its device, measured.

    On CUDA: the rise of the allocator's peak over one no-grad pass of the example batch, divided by
    its size. On CPU (where nothing is chosen by memory) an estimate from the output size, so callers
    need no branch: ``4 x`` the elements of the output per item, in bytes.
    """
    device = model_device(module)
    batch = max(1, int(example[0].shape[0]))
    args = tuple(to_model(t, module) for t in example)
    call = getattr(module, forward)
    with torch.no_grad():
        if device.type != "cuda":
            out = call(*args)
            first = out if isinstance(out, torch.Tensor) else out[0]
            return int(max(1, 4 * first.numel() * first.element_size() // batch))
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        call(*args)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    return int(max(1, (peak - base) // batch))


def describe(device: torch.device | str | None = None) -> dict[str, Any]:
    """What an operator wants to know about where a process computes: ``device`` (``cpu``,
    ``cuda:0``), ``name`` (the GPU's, or the processor's), ``memory_total_mib`` and, on CUDA,
    ``memory_free_mib``; plus the torch and CUDA build versions."""
    target = device if isinstance(device, torch.device) else resolve_device(device)
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if target.type == "cuda":
        index = target.index if target.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        info.update(
            device=f"cuda:{index}",
            name=props.name,
            memory_total_mib=total // 2**20,
            memory_free_mib=free // 2**20,
        )
    else:
        total_bytes = _host_memory()
        info.update(
            device="cpu",
            name=_cpu_name(),
            memory_total_mib=total_bytes // 2**20 if total_bytes else None,
            threads=torch.get_num_threads(),
        )
    return info


def _cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine() or "cpu"


def _host_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not every platform names these
        return None


def configure_training(device: torch.device) -> None:
    """Kernel settings for training on ``device``. On CUDA: cuDNN autotuning (``benchmark``) and no
    deterministic-algorithm enforcement (it would force slow kernels and warn on every nearest
    upsampling backward); a GPU run is seeded but not bitwise reproducible. On CPU: nothing changes
    (deterministic kernels, as :func:`cardiosynth.models.training.seed_everything` set them)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.use_deterministic_algorithms(False)
    # TF32 for the fp32 parts autocast leaves (losses, optimiser): about 2x on Ampere and later.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def loader_options(device: torch.device) -> dict[str, Any]:
    """DataLoader arguments for ``device``: on CUDA, worker processes and pinned memory so the next
    batch is ready and copied while the GPU works; on CPU, none (the caller indexes tensors itself)."""
    if device.type != "cuda":
        return {"num_workers": 0, "pin_memory": False}
    workers = min(4, max(1, (os.cpu_count() or 2) // 2))
    return {"num_workers": workers, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 4}
