"""Measure each inference lever on its own, so only the ones that win are kept.

Times the default model's forward pass on a batch of MNI-sized axial slices
(16 x 240 x 208, the padded 233 x 197 slice) for every combination tried::

    python benchmarks/levers.py --json docs/levers.json

Levers: memory format (NCHW vs channels-last), precision (fp32 vs bf16 autocast, where the
CPU has native bf16), the fused graph of core/fusion.py against the unfused one at several
batch sizes, the fused graph with its weights pre-packed once into oneDNN's blocked layout
(as inductor's freezing does), TorchScript trace + freeze (oneDNN fusion), torch.compile
(inductor). Each
lever is timed in its own block, so on a machine whose speed drifts the table is a guide;
the fused-vs-unfused comparison that counts is the round-robin one of ``napari-unet
benchmark``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time


def prepack_weights(model, batch: int, height: int, width: int) -> None:
    """Replace each fused convolution's weights with oneDNN's blocked layout for one input
    shape, so no call reorders them (what inductor's freezing does)."""
    import torch

    from napari_unet.core.fusion import ConvReLU, SplitSkipConvReLU

    shapes = {}

    def record(module, inputs):
        shapes.setdefault(module, [list(t.shape) for t in inputs])

    fused = [m for m in model.modules() if isinstance(m, (ConvReLU, SplitSkipConvReLU))]
    hooks = [m.register_forward_pre_hook(record) for m in fused]
    x = torch.zeros(batch, model.config.in_channels, height, width)
    with torch.inference_mode():
        model(x.contiguous(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    reorder = torch.ops.mkldnn._reorder_convolution_weight

    def packed(weight, module, shape):
        geometry = (module.padding, module.stride, module.dilation, getattr(module, "groups", 1))
        return torch.nn.Parameter(reorder(weight.detach(), *geometry, shape), requires_grad=False)

    for module, inputs in shapes.items():
        if isinstance(module, ConvReLU):
            module.weight = packed(module.weight, module, inputs[0])
        else:
            module.skip_weight = packed(module.skip_weight, module, inputs[0])
            module.up_weight = packed(module.up_weight, module, inputs[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the table here")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()

    import torch

    from napari_unet.core.fusion import fold_batchnorm
    from napari_unet.core.models import get_model

    torch.set_num_threads(args.threads)
    bundle = get_model(None)
    base = fold_batchnorm(bundle.model).eval()

    def measure(model, batch: int, channels_last: bool, bf16: bool) -> float:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.randn(batch, 1, 240, 208).contiguous(memory_format=fmt)
        times = []
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            for i in range(args.repeats + 2):
                start = time.perf_counter()
                model(x)
                if i >= 2:
                    times.append(time.perf_counter() - start)
        return statistics.median(times) / batch * 1e3  # ms per slice

    rows = []

    def add(name: str, ms: float, note: str = "") -> None:
        rows.append({"lever": name, "ms_per_slice": ms, "note": note})
        sys.stdout.write(f"{name:46s} {ms:8.2f} ms/slice  {note}\n")

    import copy

    from napari_unet.core.inference import Predictor
    from napari_unet.core.precision import cpu_has_native_bf16

    native_bf16 = cpu_has_native_bf16()
    precisions = (False, True) if native_bf16 else (False,)
    for channels_last in (False, True):
        for bf16 in precisions:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model = copy.deepcopy(base).to(memory_format=fmt)
            layout = "channels-last" if channels_last else "NCHW"
            name = f"eager, {'bf16' if bf16 else 'fp32'}, {layout}"
            add(name, measure(model, 16, channels_last, bf16))
    if not native_bf16:
        add("eager, bf16", float("nan"), "not measured: no native bf16 on this CPU")
    best = "bf16" if native_bf16 else "fp32"

    def measure_predictor(predictor: Predictor, batch: int) -> float:
        """The shipped graph as Predictor builds it (weights already in its dtype)."""
        x = torch.randn(batch, 1, 240, 208).to(predictor.dtype)
        x = x.contiguous(memory_format=predictor.memory_format)
        times = []
        with torch.inference_mode():
            for i in range(args.repeats + 2):
                start = time.perf_counter()
                predictor.model(x)
                if i >= 2:
                    times.append(time.perf_counter() - start)
        return statistics.median(times) / batch * 1e3

    for fused in (False, True):
        predictor = Predictor(bundle, device="cpu", precision=best, fused=fused)
        label = "fused (conv+ReLU, no skip concat)" if predictor.fused else "unfused"
        for batch in (1, 2, 4, 8, 16):
            add(
                f"{label}, {best}, channels-last, batch {batch}",
                measure_predictor(predictor, batch),
            )
    for batch in (1, 4):
        predictor = Predictor(bundle, device="cpu", precision=best)
        if predictor.fused:
            name = f"fused, weights pre-packed, {best}, channels-last, batch {batch}"
            try:
                prepack_weights(predictor.model, batch, 240, 208)
                ms = measure_predictor(predictor, batch)
            except RuntimeError as exc:  # oneDNN may have no primitive for packed bf16 weights
                add(name, float("nan"), f"failed: {str(exc).split('.')[0]}")
            else:
                add(name, ms, "packed for this input shape")
    model = copy.deepcopy(base).to(memory_format=torch.channels_last)
    bf16 = native_bf16
    x = torch.randn(16, 1, 240, 208).contiguous(memory_format=torch.channels_last)
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        traced = torch.jit.freeze(torch.jit.trace(copy.deepcopy(model), x))
    build = time.perf_counter() - start
    add(
        f"TorchScript trace+freeze, {best}, channels-last",
        measure(traced, 16, True, bf16),
        f"build {build:.1f} s",
    )
    if not args.no_compile:
        if shutil.which("gcc") or shutil.which("cc"):
            compiled = torch.compile(copy.deepcopy(model))
            start = time.perf_counter()
            try:
                ms = measure(compiled, 16, True, bf16)
                add(
                    f"torch.compile (inductor), {best}, channels-last",
                    ms,
                    f"compile+first runs {time.perf_counter() - start:.0f} s",
                )
            except Exception as exc:  # noqa: BLE001 - report why the lever is unavailable
                add("torch.compile (inductor)", float("nan"), f"failed: {type(exc).__name__}")
        else:
            add("torch.compile (inductor)", float("nan"), "no C compiler on this machine")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"threads": args.threads, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
