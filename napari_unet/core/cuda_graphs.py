"""CUDA-graph replay of a model's forward pass, one graph per input shape.

A 256x256 slice through the default network is ~60 short kernels: on a GPU the
launches, not the arithmetic, set its latency. A captured graph launches them all at
once. Graphs need static shapes and buffers, so each new input shape is captured once
(after a warm-up on a side stream) and later calls copy their input into that shape's
buffer and replay. Shapes past ``max_graphs`` run eagerly, so memory stays bounded.
The graphs share one memory pool, which is safe because a caller reads each output
before the next call (the predictor does so under its lock). If a capture fails the
failure is logged and kept in ``failure``, and every later call runs eagerly.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


class GraphedForward:
    """Call like the model; replays a captured CUDA graph for shapes it has seen."""

    def __init__(self, model: nn.Module, max_graphs: int = 8, warmup: int = 2) -> None:
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a model on a CUDA device, not {device}")
        self.model = model
        self.max_graphs = int(max_graphs)
        self.warmup = int(warmup)
        self._pool = torch.cuda.graph_pool_handle()  # graphs share one memory pool
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.failure: str | None = None  # why capture failed, if it did: then all is eager

    @property
    def captured_shapes(self) -> list[tuple]:
        return [key[0] for key in self._graphs]

    def _key(self, x: torch.Tensor) -> tuple:
        return (tuple(x.shape), x.dtype, x.stride())

    def _capture(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_input = x.clone(memory_format=torch.preserve_format)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # cuDNN picks its algorithms outside the capture
            for _ in range(self.warmup):
                self.model(static_input)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            static_output = self.model(static_input)
        return graph, static_input, static_output

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output for ``x``. The returned tensor is the graph's own buffer:
        read or copy it before the next call."""
        key = self._key(x)
        entry = self._graphs.get(key)
        if entry is None:
            if self.failure is not None or len(self._graphs) >= self.max_graphs:
                return self.model(x)
            try:
                entry = self._graphs[key] = self._capture(x)
            except RuntimeError as error:  # an optimisation only: the eager answer is the same
                self.failure = f"{type(error).__name__}: {error}"
                log.warning("CUDA graph capture failed; running eagerly from now on (%s)", error)
                return self.model(x)
        graph, static_input, static_output = entry
        static_input.copy_(x)
        graph.replay()
        return static_output
