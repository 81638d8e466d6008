"""Choosing where the network runs: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """Device names usable on this machine, best first."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def select_device(requested: str | torch.device = "auto") -> torch.device:
    """Resolve ``auto`` to the best available device, or validate an explicit choice."""
    if isinstance(requested, torch.device):
        return requested
    requested = (requested or "auto").lower()
    if requested == "auto":
        return torch.device(available_devices()[0])
    kind = requested.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps")
    if kind != "cpu" and kind not in available_devices():
        raise ValueError(
            f"Device {requested!r} is not available on this machine; "
            f"available: {', '.join(available_devices())} (or use 'auto')"
        )
    return torch.device(requested)
