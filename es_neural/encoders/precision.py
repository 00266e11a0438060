"""Numeric precision and batching of document encoders.

``precision`` is a setting of each encoder (``ES_NEURAL_DENSE__PRECISION``,
``ES_NEURAL_SPARSE__PRECISION``):

* ``fp32``: the checkpoint's float32 weights;
* ``bf16`` / ``fp16``: the weights cast with ``model.to(dtype)``; meant for CUDA (a CPU without
  native bf16/fp16 arithmetic runs them, slowly);
* ``int8``: CPU only (dynamic int8 quantisation of the linear layers);
* ``auto``: ``bf16`` on CUDA, ``fp32`` elsewhere.

Batches are planned over texts sorted by token length (so a batch carries little padding) and
sized by a token budget: on CUDA the budget comes from the free GPU memory, on CPU from
``batch_size x max_seq_length``. Each batch's inputs are packed into one contiguous array per
input name, pinned once per chunk on CUDA and copied to the device with ``non_blocking``.

Nothing here imports torch at module import; the helpers that need it import it lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from es_neural.errors import ConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRECISIONS",
    "Batch",
    "Precision",
    "PrecisionSetting",
    "gpu_token_budget",
    "pack_batches",
    "plan_batches",
    "resolve_precision",
    "torch_dtype",
]

Precision = Literal["fp32", "int8", "bf16", "fp16"]
PrecisionSetting = Literal["auto", "fp32", "int8", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

#: Most tokens in one CUDA batch, whatever the free memory says (larger batches gain nothing
#: measurable for small encoders and make the first result wait longer).
MAX_GPU_BATCH_TOKENS = 131_072
#: Most texts in one CUDA batch.
MAX_GPU_BATCH_TEXTS = 4096
#: Share of the free GPU memory one encoder's batch may use.
_GPU_MEMORY_SHARE = 0.25


def resolve_precision(precision: str | None, device: str) -> Precision:
    """The concrete precision for ``device``; :class:`ConfigurationError` when unsupported."""
    value = (precision or "auto").lower()
    if value == "auto":
        return "bf16" if device.startswith("cuda") else "fp32"
    if value not in PRECISIONS:
        raise ConfigurationError(
            f"precision must be one of auto, {', '.join(PRECISIONS)}; got {precision!r}"
        )
    if value == "int8" and not device.startswith("cpu"):
        raise ConfigurationError(
            f"precision int8 runs on the CPU only (device {device!r}); use bf16 or fp16 on a GPU"
        )
    return value  # type: ignore[return-value]


def torch_dtype(precision: Precision) -> torch.dtype:
    """The weight dtype of ``precision`` (``int8`` keeps float32 activations)."""
    import torch

    return {"fp32": torch.float32, "int8": torch.float32, "bf16": torch.bfloat16}.get(
        precision, torch.float16
    )


def gpu_token_budget(device: str, bytes_per_token: int) -> int:
    """Tokens per batch on ``device`` (CUDA) from its free memory; at least 512."""
    import torch

    where = torch.device(device)
    free, _total = torch.cuda.mem_get_info(where)
    # memory this process's allocator holds but does not use is free for our batches too
    free += torch.cuda.memory_reserved(where) - torch.cuda.memory_allocated(where)
    budget = int(free * _GPU_MEMORY_SHARE) // max(1, bytes_per_token)
    return max(512, min(MAX_GPU_BATCH_TOKENS, budget))


def activation_bytes_per_token(config: Any, *, element_bytes: int, extra: int = 0) -> int:
    """A generous estimate of the activation memory one token needs in a BERT-like forward pass
    (attention scores over ``max_position_embeddings``, the feed-forward block) plus ``extra``."""
    hidden = int(getattr(config, "hidden_size", 768) or 768)
    intermediate = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
    heads = int(getattr(config, "num_attention_heads", 12) or 12)
    positions = min(512, int(getattr(config, "max_position_embeddings", 512) or 512))
    per_token = (8 * hidden + 3 * intermediate + 2 * heads * positions) * element_bytes
    return 2 * per_token + extra


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows ``start:stop`` of the length-sorted order, padded to ``width`` tokens."""

    start: int
    stop: int
    width: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def plan_batches(
    sorted_lengths: Sequence[int] | npt.NDArray[Any], *, token_budget: int, max_texts: int
) -> list[Batch]:
    """Consecutive batches over lengths sorted ascending, each at most ``max_texts`` texts and
    ``token_budget`` padded tokens (a single text longer than the budget gets a batch alone)."""
    batches: list[Batch] = []
    count = len(sorted_lengths)
    start = 0
    while start < count:
        stop = start + 1
        width = max(1, int(sorted_lengths[start]))
        while stop < count and stop - start < max_texts:
            widest = max(width, int(sorted_lengths[stop]))
            if widest * (stop + 1 - start) > token_budget:
                break
            width = widest
            stop += 1
        batches.append(Batch(start, stop, width))
        start = stop
    return batches


def pack_batches(
    padded: Mapping[str, npt.NDArray[np.int64]],
    order: npt.NDArray[np.intp],
    batches: Sequence[Batch],
) -> tuple[dict[str, npt.NDArray[np.int64]], list[int]]:
    """One flat array per input name holding every batch contiguously, and each batch's offset.

    ``padded[name]`` is ``[n, longest]`` in the caller's order; ``order`` the length-sorted
    permutation. Batch ``b`` of ``name`` is ``flat[name][offset[b]: offset[b] + size * width]``.
    """
    offsets: list[int] = []
    total = 0
    for batch in batches:
        offsets.append(total)
        total += batch.size * batch.width
    flat: dict[str, npt.NDArray[np.int64]] = {}
    for name, array in padded.items():
        out = np.empty(total, dtype=np.int64)
        for batch, offset in zip(batches, offsets, strict=True):
            rows = order[batch.start : batch.stop]
            block = array[rows, : batch.width]
            out[offset : offset + block.size] = block.ravel()
        flat[name] = out
    return flat, offsets


def to_device(
    flat: Mapping[str, Any], batch: Batch, offset: int, device: str
) -> dict[str, torch.Tensor]:
    """Batch ``batch`` of the packed (and, on CUDA, pinned) tensors in ``flat`` on ``device``."""
    size = batch.size * batch.width
    return {
        name: tensor[offset : offset + size]
        .view(batch.size, batch.width)
        .to(device, non_blocking=True)
        for name, tensor in flat.items()
    }


def host_tensors(flat: Mapping[str, npt.NDArray[np.int64]], device: str) -> dict[str, Any]:
    """``flat`` as torch tensors, pinned when ``device`` is CUDA (one pin per chunk)."""
    import torch

    tensors = {name: torch.from_numpy(array) for name, array in flat.items()}
    if device.startswith("cuda"):
        tensors = {name: tensor.pin_memory() for name, tensor in tensors.items()}
    return tensors


def host_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    """An output buffer on the host, pinned when ``device`` is CUDA (so copies overlap)."""
    import torch

    return torch.empty(shape, dtype=dtype, pin_memory=device.startswith("cuda"))


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch.device(device))
