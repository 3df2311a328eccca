"""A device named by the user (``--device``), checked before a model file is read onto it."""

from __future__ import annotations

import torch

from cocoseg.core.errors import UserError


class DeviceError(UserError, ValueError):
    """A device name that is not one, or a device this machine does not have."""


def check_device(name: str, flag: str = "--device") -> torch.device:
    """``torch.device(name)`` for a device this machine has: cpu, cuda / cuda:N within the GPUs there are,
    mps on a Mac that has it. Otherwise one line that says which, instead of a load error that blames the
    model file."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"{flag} {name!r}: not a device name; expected cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise DeviceError(
                f"{flag} {name!r}: this machine has {count} CUDA device{'s' if count != 1 else ''}; "
                f"expected {'cpu' if count == 0 else f'cpu or cuda:0..{count - 1}'}"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"{flag} {name!r}: MPS is not available on this machine; expected cpu")
    elif device.type != "cpu":
        raise DeviceError(f"{flag} {name!r}: not supported here; expected cpu, cuda, cuda:N or mps")
    return device
