"""Performance benchmark: every figure is a median over repetitions after a warm-up.

Run with ``napari-unet benchmark``; it prints a table and writes JSON. Each
measurement that needs a clean peak-RSS figure runs in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import ModelBundle
from .inference import Predictor
from .models import get_model, resolve_model_path
from .precision import cpu_has_native_bf16
from .unet import UNet, UNetConfig


@dataclass
class Row:
    name: str
    value: float
    unit: str
    detail: str = ""
    target: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    machine: dict = field(default_factory=dict)

    def add(self, *args, **kwargs) -> None:
        self.rows.append(Row(*args, **kwargs))

    def table(self) -> str:
        lines = [f"{'measure':44s} {'value':>10s} {'unit':8s} {'target':>12s}  detail"]
        for row in self.rows:
            lines.append(
                f"{row.name:44s} {row.value:10.3f} {row.unit:8s} {row.target:>12s}  {row.detail}"
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {"machine": self.machine, "rows": [row.__dict__ for row in self.rows]}, indent=2
        )


def machine_info() -> dict:
    flags = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    flags = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": flags or platform.processor(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "native_bf16": cpu_has_native_bf16(),
    }


def synchronizer(device: str | torch.device) -> Callable[[], None]:
    """Waits for queued GPU work, so a timer measures the work and not its launch."""
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def timed(
    function: Callable[[], object],
    repeats: int,
    warmup: int = 2,
    sync: Callable[[], None] = lambda: None,
) -> list[float]:
    for _ in range(warmup):
        function()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return times


def conv_flops(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """Multiply-adds x2 of every convolution in one forward pass (FLOPs)."""
    total = 0.0

    def hook(module, _inputs, output):
        nonlocal total
        kernel = module.weight.shape[2] * module.weight.shape[3]
        if isinstance(module, torch.nn.ConvTranspose2d):
            in_ch = module.in_channels
            total += 2.0 * _inputs[0].numel() * kernel * module.out_channels
        else:
            in_ch = module.in_channels // module.groups
            total += 2.0 * output.numel() * kernel * in_ch

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    first = next(model.parameters())
    with torch.inference_mode():
        model(torch.zeros(shape, dtype=first.dtype, device=first.device))
    for handle in handles:
        handle.remove()
    return total


def ceiling_batch(device: torch.device) -> int:
    """Images in the ceiling convolution: 4 keep a CPU busy; a GPU needs 64 (about 77
    GFLOP) before launch costs stop mattering."""
    return 64 if device.type == "cuda" else 4


def _ceiling_conv(predictor: Predictor) -> tuple[Callable[[], object], float]:
    """A large 3x3 convolution in the predictor's precision and layout, and its FLOPs."""
    fmt, dtype, device = predictor.memory_format, predictor.dtype, predictor.device
    batch = ceiling_batch(device)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    conv = conv.to(device, dtype, memory_format=fmt)
    x = torch.randn(batch, 64, 128, 128, device=device).to(dtype).contiguous(memory_format=fmt)
    return (lambda: conv(x)), 2.0 * batch * 64 * 128 * 128 * 9 * 64


def conv_ceiling_gflops(predictor: Predictor, repeats: int = 5) -> float:
    """This machine's practical ceiling: a large 3x3 convolution through the same backend,
    in the same precision and memory layout as the predictor's forward pass."""
    run, flops = _ceiling_conv(predictor)
    with torch.inference_mode():
        times = timed(run, repeats, sync=synchronizer(predictor.device))
    return flops / statistics.median(times) / 1e9


def forward_vs_ceiling(
    cases: list[tuple[Predictor, int]], flops_per_slice: float, rounds: int = 25
) -> list[tuple[float, float, float]]:
    """Median achieved GFLOP/s, ceiling GFLOP/s and ratio (%) of each (predictor, batch).

    A shared machine's speed drifts by tens of percent over seconds, so the cases are
    measured round-robin: each round times, for every case, the ceiling convolution in
    that case's precision and layout and then its forward pass. A ratio is the median of
    the rounds' ratios, so both sides of it, and every case, ran under the same conditions.
    """
    setups = []
    for predictor, batch in cases:
        ceiling_run, ceiling_flops = _ceiling_conv(predictor)
        x = torch.randn(batch, predictor.config.in_channels, 256, 256, device=predictor.device)
        x = x.to(predictor.dtype).contiguous(memory_format=predictor.memory_format)
        # about as long as the ceiling convolution
        passes = max(1, 2 * ceiling_batch(predictor.device) // batch)

        def forward(run=predictor.run_model, x=x, passes=passes):
            for _ in range(passes):
                run(x)

        sync = synchronizer(predictor.device)
        setups.append((ceiling_run, ceiling_flops, forward, passes, batch, sync))
    samples: list[list[tuple[float, float, float]]] = [[] for _ in cases]
    with torch.inference_mode():
        for ceiling_run, _, forward, _, _, sync in setups:
            timed(ceiling_run, 0, warmup=2, sync=sync)
            timed(forward, 0, warmup=2, sync=sync)
        for _ in range(rounds):
            for index, setup in enumerate(setups):
                ceiling_run, ceiling_flops, forward, passes, batch, sync = setup
                ceiling = ceiling_flops / timed(ceiling_run, 1, warmup=0, sync=sync)[0] / 1e9
                forward_s = timed(forward, 1, warmup=0, sync=sync)[0] / passes
                achieved = batch * flops_per_slice / forward_s / 1e9
                samples[index].append((achieved, ceiling, achieved / ceiling * 100))
    return [
        tuple(statistics.median(sample[k] for sample in case_samples) for k in range(3))
        for case_samples in samples
    ]


def _path_name(predictor: Predictor) -> str:
    layout = "channels-last" if predictor.memory_format == torch.channels_last else "NCHW"
    fused = ", fused" if predictor.fused else ""
    graphs = ", CUDA graphs" if predictor.cuda_graphs else ""
    if predictor.graph_failure:
        graphs = ", CUDA graphs FAILED (eager)"
    device = "" if predictor.device.type == "cpu" else f"{predictor.device.type}, "
    return f"{device}{predictor.precision}, {layout}{fused}{graphs}"


def plain_predictor(bundle: ModelBundle, device: str | torch.device) -> Predictor:
    """The plain path: fp32, NCHW, no fusion, no CUDA graphs."""
    return Predictor(
        bundle,
        device=device,
        precision="fp32",
        channels_last=False,
        fused=False,
        cuda_graphs=False,
    )


def inference_paths(bundle: ModelBundle, device: torch.device) -> list[Predictor]:
    """The shipped path, the shipped path less its last lever, and the plain fp32 path."""
    last_lever_off = {"cuda_graphs": False} if device.type == "cuda" else {"fused": False}
    return [
        Predictor(bundle, device=device),
        Predictor(bundle, device=device, **last_lever_off),
        plain_predictor(bundle, device),
    ]


def forward_batches(predictor: Predictor) -> list[int]:
    """Batch 1 is the interactive slice; the predictor's batch is how volumes run; a GPU
    also gets 64, to show what it does when it is kept full."""
    batches = {1, predictor.batch_size}
    if predictor.device.type == "cuda":
        batches.add(64)
    return sorted(batches)


def bench_slice(
    report: Report, bundle: ModelBundle, repeats: int, device: str | torch.device = "cpu"
) -> None:
    """Slice latency and forward/ceiling of the shipped path, the shipped path less its
    last lever (fusion on a CPU, CUDA graphs on a GPU) and the plain path.

    The paths are measured round-robin (see :func:`forward_vs_ceiling`), so a drift of
    the machine's speed cannot favour one of them.
    """
    device = torch.device(device)
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (256, 256)).astype(np.float32)
    flops = conv_flops(bundle.model.eval(), (1, bundle.config.in_channels, 256, 256))
    predictors = inference_paths(bundle, device)
    stats = [p.fit_stats(image, 2) for p in predictors]
    first, latency = [], [[] for _ in predictors]
    for predictor, st in zip(predictors, stats, strict=True):
        first.append(timed(lambda p=predictor, st=st: p.predict_slice(image, st), 1, 0)[0])
    for predictor, st in zip(predictors, stats, strict=True):
        timed(lambda p=predictor, st=st: p.predict_slice(image, st), 0, warmup=2)
    for _ in range(2 * repeats):
        for index, (predictor, st) in enumerate(zip(predictors, stats, strict=True)):
            latency[index] += timed(
                lambda p=predictor, st=st: p.predict_slice(image, st) >= bundle.threshold, 1, 0
            )
    cases = [(p, batch) for p in predictors for batch in forward_batches(p)]
    ratios = dict(zip(cases, forward_vs_ceiling(cases, flops), strict=True))
    for index, predictor in enumerate(predictors):
        path = _path_name(predictor)
        shipped = index == 0
        times = latency[index]
        report.add(
            f"slice 256x256 end to end, median [{path}]",
            statistics.median(times) * 1e3,
            "ms",
            "normalize+tile+forward+threshold",
            "<= 50" if shipped and device.type == "cpu" else "",
        )
        report.add(f"slice 256x256, p95 [{path}]", float(np.percentile(times, 95)) * 1e3, "ms")
        report.add(f"slice 256x256, first call after load [{path}]", first[index] * 1e3, "ms")
        for batch in forward_batches(predictor):
            achieved, ceiling, ratio = ratios[(predictor, batch)]
            if batch == 1:
                report.add(
                    f"conv ceiling 64->64 3x3, {ceiling_batch(device)}x128x128 [{path}]",
                    ceiling,
                    "GFLOP/s",
                    "median of the round-robin rounds",
                )
            report.add(
                f"forward pass achieved, batch {batch} [{path}]",
                achieved,
                "GFLOP/s",
                f"{flops / 1e9:.2f} GFLOP per slice",
            )
            report.add(
                f"forward / ceiling, batch {batch} [{path}]",
                ratio,
                "%",
                "median of per-round ratios",
                ">= 70" if shipped and device.type == "cpu" else "",
            )


def bench_load(report: Report, model_source: str | None, repeats: int) -> None:
    from .checkpoint import load_checkpoint

    path = resolve_model_path(model_source)
    times = timed(lambda: load_checkpoint(path), repeats, warmup=1)
    report.add("model load (safetensors + sha256 + build)", statistics.median(times) * 1e3, "ms")


def bench_train_step(
    report: Report, bundle: ModelBundle, repeats: int, device: str | torch.device = "cpu"
) -> None:
    """One fine-tuning step in fp32 and, where it differs, the trainer's ``auto`` precision."""
    from .precision import autocast, resolve_training_precision
    from .training.trainer import dice_ce_loss

    device = torch.device(device)
    # fp32, and the other precision: bf16 where the hardware has it natively
    other = "bf16" if device.type == "cuda" else resolve_training_precision("auto", device)
    precisions = sorted({"fp32", other})
    batch = 8
    x = torch.randn(batch, bundle.config.in_channels, 160, 160, device=device)
    y = (torch.rand(batch, 160, 160, device=device) > 0.9).float()
    for precision in precisions:
        model = UNet(bundle.config)
        model.load_state_dict(bundle.model.state_dict())
        model.to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer, precision=precision):
            with autocast(precision, device):
                logits = model(x)
            loss = dice_ce_loss(logits.float(), y, bundle.config.num_classes)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        seconds = statistics.median(timed(step, repeats, warmup=1, sync=synchronizer(device)))
        where = f" [{device.type}, {precision}]"
        report.add(f"fine-tune step (batch 8 x 160x160){where}", seconds * 1e3, "ms")
        report.add(f"fine-tune throughput{where}", batch / seconds, "samples/s")


def bench_paper(report: Report, repeats: int, device: str | torch.device = "cpu") -> None:
    device = torch.device(device)
    torch.manual_seed(0)
    model = UNet(UNetConfig.paper()).eval().to(device)
    x = torch.randn(1, 1, 572, 572, device=device)
    dtypes = [torch.float32, torch.bfloat16] if device.type == "cuda" else [torch.float32]
    for dtype in dtypes:
        model, x = model.to(dtype), x.to(dtype)
        with torch.inference_mode():
            times = timed(lambda m=model, x=x: m(x), repeats, warmup=1, sync=synchronizer(device))
        where = "" if device.type == "cpu" else f" [{device.type}, {str(dtype)[6:]}]"
        name = f"paper U-Net 572x572 tile (31.0 M params){where}"
        report.add(name, statistics.median(times), "s", "388x388 output")


def run(
    model_source: str | None = None,
    repeats: int = 10,
    output: Path | None = None,
    skip: tuple[str, ...] = (),
    device: str = "cpu",
) -> Report:
    """Every row of the table on ``device`` (``cpu``, or ``cuda``/``cuda:N`` for the GPU
    table); the CPU's thread count is the caller's."""
    from .benchmark_volume import bench_monai, bench_volume
    from .device import select_device

    device = str(select_device(device))
    report = Report(machine=machine_info())
    report.machine["device"] = device
    bundle = get_model(model_source)
    bench_load(report, model_source, repeats=5)
    bench_slice(report, bundle, repeats, device)
    if "volume" not in skip:
        bench_volume(report, model_source, 3, device)
    if "train" not in skip:
        bench_train_step(report, bundle, 5, device)
    if "paper" not in skip:
        bench_paper(report, 3, device)
    if "monai" not in skip:
        bench_monai(report, model_source, 3, device)
    if output is not None:
        Path(output).write_text(report.to_json())
    return report
