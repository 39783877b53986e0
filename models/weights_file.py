"""A model's large tensors moved from anonymous memory into a file mapped read/write, for the conversion child.

Why: a conversion holds the torch weights (4 bytes a parameter in fp32) until the flatbuffer is written, because
litert-torch's lightweight lowering points the MLIR constants at the torch tensors' memory instead of copying them.
In anonymous memory those 4 bytes a parameter stay resident; pages of a shared file mapping can be written back and
dropped by the kernel when the serializer needs room. That is what lets a 2.7 B-parameter model (11 GB of fp32
weights) convert on a 24 GiB machine (figures in README.md, "Conversion memory").

The values are unchanged (the file holds the same bytes, or, for random weights, they are written into the
mapped pages afterwards), so the converted artifact is byte for byte what it was. The file is unlinked as soon as
it is mapped: it lives exactly as long as the mapping, and a killed child leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

_MIN_BYTES = 1 << 20  # smaller tensors stay where they are: litert-torch inlines them (dense constants) anyway
_ALIGN = 64


# torch.nn.init's random initializers, which the layers' reset_parameters call while a model is built.
_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                 "xavier_normal_", "orthogonal_")


@contextlib.contextmanager
def skip_random_init(skip: bool = True) -> Iterator[None]:
    """While a model is built, torch.nn.init's random initializers do nothing (the tensors stay as allocated).
    Only for weights that are all set afterwards: tests/test_models.py checks that every family's seeded model
    is the same built either way."""
    saved = {name: getattr(torch.nn.init, name) for name in _RANDOM_INITS} if skip else {}
    try:
        for name in saved:
            setattr(torch.nn.init, name, _leave_as_allocated)
        yield
    finally:
        for name, init in saved.items():
            setattr(torch.nn.init, name, init)


def _leave_as_allocated(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return tensor


def move_weights_to_file(model: torch.nn.Module, folder: Path, keep_values: bool = True,
                         min_bytes: int = _MIN_BYTES) -> int:
    """Back every parameter and buffer of at least 1 MiB (float32, one copy for tied ones) by a mapped file in
    `folder`; return the bytes moved. Without `keep_values` the matrices among the parameters start as zeros
    (sparse: nothing is written), for weights that init_random draws next; everything else keeps its values."""
    tensors: dict[int, list[torch.Tensor]] = {}  # storage address → the tensors sharing it (tied weights)
    drawn: set[int] = set()  # matrices init_random draws next: their values need not be copied
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dtype == torch.float32 and tensor.is_contiguous() and tensor.nbytes >= min_bytes:
            address = tensor.untyped_storage().data_ptr()
            tensors.setdefault(address, []).append(tensor)
            if isinstance(tensor, torch.nn.Parameter) and tensor.dim() >= 2:
                drawn.add(address)
    if not tensors:
        return 0

    path = folder / f"weights-{os.getpid()}.bin"
    offsets: dict[int, int] = {}
    end = 0
    with open(path, "wb") as out:
        for address, group in tensors.items():
            end = -(-end // _ALIGN) * _ALIGN
            if keep_values or address not in drawn:  # buffers (a mask, a rope table) keep what __init__ computed
                out.seek(end)
                out.write(group[0].detach().numpy().data)  # no copy
            offsets[address] = end
            end += group[0].nbytes
        out.truncate(end)
    try:
        mapped = np.memmap(path, dtype=np.uint8, mode="r+", shape=(end,))  # shared: writes go to the file
    finally:
        path.unlink()
    with torch.no_grad():
        for address, group in tensors.items():
            start = offsets[address]
            view = torch.from_numpy(mapped[start:start + group[0].nbytes]).view(torch.float32)
            for tensor in group:
                tensor.data = view.view(tensor.shape)  # the anonymous storage is freed with its last reference
    return end
