"""Memory traffic of PyTorch code, counted op by op with a TorchDispatchMode (`TrafficCounter`).

Why count instead of profile: the box step and the MaxBoxAccV2 sweep are judged by how many
bytes they move per batch (an H100 moves ~3.35 TB/s, so bytes set a floor on their time), and
that figure should be the same on every machine, a CPU included. Every ATen op (and every
``torch.library.custom_op``, such as the ``cam_cli::`` Triton launches) passes through the
dispatcher, where this mode sees its tensors without reading their values, so counting never
waits for a device.

The rule, one op at a time:
- bytes = ``numel * itemsize`` of every tensor argument (lists, tuples and keyword arguments
  flattened) + of every tensor output + of every mutated argument (``Tensor(a!)`` in the
  schema) that is not also returned. A tensor both read and written (in-place, ``out=``, a
  custom op's mutated argument) therefore counts twice, read + write; for ``copy_``, ``fill_``
  and ``out=`` destinations, which are only written, that is an upper bound by one pass.
- A second figure, ``write_once``, counts destinations that are only written once: ``out=``
  arguments (keyword-only mutated arguments) and the ``self`` of ``copy_``, ``fill_``, ``zero_``.
  A custom op's mutated arguments count read + write in both (whether its kernel reads them is
  not in the schema).
- A view counts its own ``numel * itemsize``, not its base's storage.
- Ops that move no data (views: every output aliases an input without writing it; and
  allocations: ``empty``, ``empty_like``, ...) are counted as ops but their bytes are kept
  apart (`TrafficCounter.free_bytes`), so that the total is traffic, not bookkeeping.
- A custom op is opaque: its figure is its interface (each argument read once, each output or
  mutated argument written once), a lower bound of what its kernel moves if it re-reads memory.

Host syncs: on CUDA `count_cuda_syncs` counts them for real (``torch.cuda.set_sync_debug_mode``).
On the CPU nothing syncs, so `sync_reason` names the ops that *would* wait for the device on
CUDA (data-dependent output sizes, Python scalars, device-to-host copies): an inference from op
names, not a CUDA count.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

GB = 1e9
# Ops (aten packet names) that write nothing: allocations. Views are found from the schema.
ALLOCATIONS = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
                         "resize_", "resize_as_"})  # fmt: skip
# Ops that write their ``self`` without reading it (aten packet names).
WRITE_ONLY = frozenset({"copy_", "fill_", "zero_"})
# Ops that wait for the device on CUDA, and why (aten packet names).
SYNC_OPS = {
    "nonzero": "output size depends on the data",
    "_unique": "output size depends on the data",
    "_unique2": "output size depends on the data",
    "unique_dim": "output size depends on the data",
    "unique_consecutive": "output size depends on the data",
    "masked_select": "output size depends on the data",
    "equal": "returns a Python bool",
    "is_nonzero": "bool(tensor) reads the value on the host",
    "_local_scalar_dense": ".item() / int() / float() / .tolist() read a value on the host",
    # CUDA's bincount reads the input's min and max on the host, with or without minlength.
    "bincount": "reads the input's min and max on the host",
    "histc": "reads min and max on the host when they are not given",
}


def nbytes(tensor: torch.Tensor) -> int:
    """A tensor's own bytes (a view's numel, not its base storage's)."""
    return tensor.numel() * tensor.element_size()


def _tensors(value) -> list[torch.Tensor]:
    return [leaf for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a is b:
        return True
    try:
        return (a.data_ptr(), a.shape, a.stride(), a.dtype) == (
            b.data_ptr(),
            b.shape,
            b.stride(),
            b.dtype,
        )
    except RuntimeError:  # tensors without storage (meta, fake): only identity
        return False


def mutated_arguments(
    func, args: tuple, kwargs: dict, only_written: bool = False
) -> list[torch.Tensor]:
    """The tensors an op writes through its arguments (``Tensor(a!)`` in its schema); with
    ``only_written``, those it does not read: aten ``out=`` arguments, `WRITE_ONLY` ops' self."""
    write_only_self = func.namespace == "aten" and func.overloadpacket.__name__ in WRITE_ONLY
    mutated = []
    positional = 0
    for number, argument in enumerate(func._schema.arguments):  # noqa: SLF001 - an op's schema has no public name
        if argument.kwarg_only:
            value = kwargs.get(argument.name)
        else:
            value = args[positional] if positional < len(args) else kwargs.get(argument.name)
            positional += 1
        if argument.alias_info is None or not argument.alias_info.is_write:
            continue
        if only_written and not (
            (func.namespace == "aten" and argument.kwarg_only) or (write_only_self and number == 0)
        ):
            continue
        mutated.extend(_tensors(value))
    return mutated


def moves_no_data(func) -> bool:
    """Views (every output aliases an input, none written) and allocations."""
    if func.namespace == "aten" and func.overloadpacket.__name__ in ALLOCATIONS:
        return True
    returns = func._schema.returns  # noqa: SLF001
    return bool(returns) and all(
        r.alias_info is not None and not r.alias_info.is_write for r in returns
    )


def op_bytes(func, args: tuple, kwargs: dict, out) -> tuple[int, int]:
    """The bytes one call moves by the module's rule (arguments + outputs + mutated arguments
    that are not also returned), and the same with only-written destinations counted once."""
    outputs = _tensors(out)
    written = outputs + [
        t for t in mutated_arguments(func, args, kwargs) if not any(_same(t, o) for o in outputs)
    ]
    arguments = _tensors((args, kwargs))
    total = sum(map(nbytes, arguments)) + sum(map(nbytes, written))
    unread = mutated_arguments(func, args, kwargs, only_written=True)
    once = total - sum(nbytes(t) for t in arguments if any(_same(t, u) for u in unread))
    return total, once


def sync_reason(func, args: tuple, kwargs: dict, out) -> str | None:
    """Why this call would wait for the device on CUDA, or None (inferred from the op)."""
    name = func.overloadpacket.__name__ if func.namespace == "aten" else None
    if name in SYNC_OPS:
        if name == "histc" and (args[3:4] or [kwargs.get("max", 0)])[0] != 0:
            return None
        return SYNC_OPS[name]
    if name in ("index", "index_put", "index_put_") and any(
        t.dtype == torch.bool for t in _tensors(args[1:2])
    ):
        return "a boolean index is turned into positions (nonzero)"
    if name == "repeat_interleave" and kwargs.get("output_size") is None and len(args) < 4:
        return "output size depends on the data (no output_size)"
    if name in ("_to_copy", "copy_"):
        # A blocking copy between host and device waits for the stream (both directions).
        sources = _tensors(args[1:2] if name == "copy_" else args[:1])
        targets = _tensors(args[:1] if name == "copy_" else out)
        blocking = not (
            args[2] if name == "copy_" and len(args) > 2 else kwargs.get("non_blocking")
        )
        devices = {t.device.type == "cpu" for t in sources + targets}
        if blocking and devices == {True, False}:
            return "a blocking copy between the host and the device"
    return None


@dataclass
class OpTally:
    count: int = 0
    bytes: int = 0
    write_once: int = 0  # only-written destinations counted once


class TrafficCounter(TorchDispatchMode):
    """Counts every op run inside ``with TrafficCounter() as counter:`` (see the module's rule).

    ``ops``: name (``aten.minimum.out``, ``cam_cli.label.default``) -> calls and bytes, for ops
    that move data; ``free``: the same for views and allocations; ``syncs``: name -> calls that
    would sync on CUDA (`sync_reason`)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, OpTally] = {}
        self.free: dict[str, OpTally] = {}
        self.syncs: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func)
        tally = (self.free if moves_no_data(func) else self.ops).setdefault(name, OpTally())
        tally.count += 1
        moved, once = op_bytes(func, args, kwargs, out)
        tally.bytes += moved
        tally.write_once += once
        if sync_reason(func, args, kwargs, out) is not None:
            self.syncs[name] = self.syncs.get(name, 0) + 1
        return out

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.ops.values())

    @property
    def write_once_bytes(self) -> int:
        return sum(t.write_once for t in self.ops.values())

    @property
    def free_bytes(self) -> int:
        return sum(t.bytes for t in self.free.values())

    @property
    def op_count(self) -> int:
        """Calls of ops that move data (views and allocations not included)."""
        return sum(t.count for t in self.ops.values())

    def custom(self, namespace: str = "cam_cli") -> dict[str, OpTally]:
        """The ops of a custom namespace (``cam_cli``: the Triton launches)."""
        return {n: t for n, t in self.ops.items() if n.startswith(f"{namespace}.")}

    def top(self, count: int = 10) -> list[tuple[str, OpTally]]:
        return sorted(self.ops.items(), key=lambda item: -item[1].bytes)[:count]

    def summary(self, top: int = 10) -> dict:
        """Every figure, JSON-ready."""
        return {
            "bytes": self.total_bytes,
            "gb": self.total_bytes / GB,
            "write_once_bytes": self.write_once_bytes,
            "write_once_gb": self.write_once_bytes / GB,
            "ops": self.op_count,
            "distinct_ops": len(self.ops),
            "free_ops": sum(t.count for t in self.free.values()),
            "free_gb": self.free_bytes / GB,
            "top": [{"op": n, "count": t.count, "gb": t.bytes / GB} for n, t in self.top(top)],
            "by_op": {n: asdict(t) for n, t in self.ops.items()},
            "custom_ops": {n: t.count for n, t in self.custom().items()},
            "sync_ops": dict(self.syncs),
            "sync_ops_total": sum(self.syncs.values()),
        }


@contextlib.contextmanager
def count_cuda_syncs() -> Iterator[list[str]]:
    """The host syncs of the code inside, on CUDA (one message each, in a list that fills as it
    runs): `torch.cuda.set_sync_debug_mode` warns at every sync, and the warnings are caught."""
    found: list[str] = []
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(previous)
            found.extend(str(w.message) for w in caught if "synchroniz" in str(w.message))
