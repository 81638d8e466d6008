"""Two single-threaded streams instead of one two-threaded forward pass: does it win?

With 2 CPU threads, PyTorch splits every layer of one forward pass between the threads,
which meet at a barrier after each layer. The alternative measured here splits a batch
instead: two worker threads, each limited to one intra-op thread (PyTorch keeps that
count per thread), each run half the batch through the whole network. A lever of the
"set thread counts sensibly" kind (issue #9), measured three ways, each round-robin so
that the machine's drift favours neither side:

* ``forward``: the default network alone on 256x256 and 240x208 (an MNI slice's tile),
  against the ceiling convolution. The ceiling of each round is the faster of the
  two-thread convolution and the same convolution as two one-thread streams, so a
  ratio cannot rise by lowering its denominator.
* ``volume``: the MNI152 2009c head through ``Predictor.predict_volume`` (batch 4 and
  6), the shipped path against the same path with its forward pass split into streams.
* ``mirror``: the click model's mirrored pair (mirror averaging, a batch of 2) at the
  first click on each lesion slice of the sample brain.

::

    python benchmarks/stream_lever.py --threads 2 --json docs/stream_lever.json

Not kept in the package (session 29, docs/performance.md): it won on the network alone
and lost or tied end to end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait

LABELS = {1: "one 2-thread stream", 2: "two 1-thread streams"}


def make_streamed(function, threads: int, streams: int = 2):
    """``function`` with a batch split into ``streams`` parts on one-thread workers."""
    import torch

    pool = ThreadPoolExecutor(
        max_workers=streams,
        initializer=torch.set_num_threads,
        initargs=(max(1, threads // streams),),
    )

    def job(part):
        with torch.inference_mode():
            return function(part)

    def streamed(batch):
        if len(batch) < 2:
            return function(batch)
        futures = [pool.submit(job, part) for part in batch.tensor_split(streams)]
        wait(futures)
        return torch.cat([future.result() for future in futures])

    return streamed


def _time(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def bench_forward(predictor, flops_of, threads: int, rounds: int) -> list[dict]:
    """Network-alone throughput, one stream of 2 threads against two streams of 1."""
    import torch

    from napari_unet.core.benchmark import _ceiling_conv

    ceiling_run, ceiling_flops = _ceiling_conv(predictor)
    # the same convolution (64->64 3x3, a batch of 4 at 128x128) as two streams
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    conv = conv.to(predictor.dtype, memory_format=predictor.memory_format)
    conv_x = torch.randn(4, 64, 128, 128).to(predictor.dtype)
    conv_x = conv_x.contiguous(memory_format=predictor.memory_format)
    streamed_conv = make_streamed(conv, threads)

    def ceiling_streams():
        return streamed_conv(conv_x)

    streamed_model = make_streamed(predictor.model, threads)
    cases = []
    for height, width in ((256, 256), (240, 208)):
        per_slice = flops_of(height, width)
        for streams, batch in ((1, 1), (1, 4), (2, 2), (2, 4), (2, 6)):
            x = torch.randn(batch, predictor.config.in_channels, height, width)
            x = x.to(predictor.dtype).contiguous(memory_format=predictor.memory_format)
            run = predictor.model if streams == 1 else streamed_model
            passes = max(1, 12 // batch)

            def forward(run=run, x=x, passes=passes):
                for _ in range(passes):
                    run(x)

            name = f"{height}x{width}, {LABELS[streams]}"
            cases.append((name, batch, passes * batch, per_slice, forward))
    samples = {(name, batch): [] for name, batch, *_ in cases}
    with torch.inference_mode():
        for *_, forward in cases:
            forward()
        ceiling_run(), ceiling_streams()
        for _ in range(rounds):
            for name, batch, slices, per_slice, forward in cases:
                ceiling = ceiling_flops / min(_time(ceiling_run), _time(ceiling_streams)) / 1e9
                seconds = _time(forward)
                achieved = slices * per_slice / seconds / 1e9
                samples[(name, batch)].append(
                    (batch, seconds / slices * 1e3, achieved, ceiling, achieved / ceiling * 100)
                )
    rows = []
    for name, batch, *_ in cases:
        mine = samples[(name, batch)]
        rows.append(
            {
                "case": f"{name}, batch {batch}",
                "ms_per_slice": statistics.median(s[1] for s in mine),
                "achieved_gflops": statistics.median(s[2] for s in mine),
                "ceiling_gflops": statistics.median(s[3] for s in mine),
                "ratio_percent": statistics.median(s[4] for s in mine),
            }
        )
    return rows


def bench_volume(bundle, threads: int, rounds: int) -> list[dict]:
    """The MNI head end to end, shipped forward against streamed, alternating."""
    from napari_unet.core.benchmark_volume import mni_head_volume
    from napari_unet.core.inference import Predictor

    volume = mni_head_volume()
    cases = {}
    for batch in (4, 6):
        for streams in (1, 2):
            predictor = Predictor(bundle, device="cpu", batch_size=batch)
            if streams == 2:
                predictor._run_model = make_streamed(predictor.model, threads)
            name = f"batch {batch}, {LABELS[streams]}"
            predictor.predict_volume(volume[80:96])  # warm-up
            cases[name] = predictor
    seconds = {name: [] for name in cases}
    for _ in range(rounds):
        for name, predictor in cases.items():
            seconds[name].append(_time(lambda p=predictor: p.predict_volume(volume)))
    return [
        {"case": f"MNI head 193x229x193, {name}", "seconds": statistics.median(values)}
        for name, values in seconds.items()
    ]


def bench_mirror(threads: int, repeats: int) -> list[dict]:
    """The click model's mirrored pair at the first click of each sample lesion slice."""
    import numpy as np

    from napari_unet.core.click_eval import lesion_slices
    from napari_unet.core.click_maps import first_click
    from napari_unet.core.clicks import Click
    from napari_unet.core.guided import GuidedClickEngine
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.models import get_model
    from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1

    bundle = get_model("lesion-t1-clicks")
    image = read_image(SAMPLE_T1).data.astype(np.float32)
    truth = read_image(SAMPLE_LESION).data > 0
    engines = {}
    for streams in (1, 2):
        predictor = Predictor(bundle, device="cpu")  # the GUI's batch: the pair in one pass
        if streams == 2:
            predictor._run_model = make_streamed(predictor.model, threads)
        engines[streams] = GuidedClickEngine(predictor, image, flip_average=True)
    samples = {1: [], 2: []}
    for task in lesion_slices(truth):
        point = first_click(truth[task.index])
        if point is None:
            continue
        click = Click(0, task.index, *point)
        for engine in engines.values():
            engine.clear(0, task.index)
            engine.clicks[(0, task.index)] = [click]
            engine.object_probability(click)  # warm-up for this patch size
        for _ in range(repeats):
            for streams, engine in engines.items():
                seconds = _time(lambda e=engine, c=click: e.object_probability(c))
                samples[streams].append(seconds * 1e3)
    return [
        {
            "case": f"click model, mirrored pair, {LABELS[s]}",
            "samples": len(values),
            "median_ms": statistics.median(values),
        }
        for s, values in samples.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30, help="round-robin rounds (forward)")
    parser.add_argument("--volume-rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="timings per lesion slice")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from napari_unet.core.benchmark import conv_flops, machine_info
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model

    torch.set_num_threads(args.threads)
    bundle = get_model(None)
    predictor = Predictor(bundle, device="cpu")

    def flops_of(height: int, width: int) -> float:
        return conv_flops(bundle.model, (1, bundle.config.in_channels, height, width))

    result = {
        "machine": machine_info(),
        "model": bundle.version_id,
        "path": f"{predictor.precision}, fused={predictor.fused}",
        "threads": args.threads,
        "forward": bench_forward(predictor, flops_of, args.threads, args.rounds),
        "volume": bench_volume(bundle, args.threads, args.volume_rounds),
        "mirror": bench_mirror(args.threads, args.repeats),
    }
    out = sys.stdout
    header = f"{'network alone':58s} {'ms/slice':>9s} {'GFLOP/s':>8s} {'ceiling':>8s}"
    out.write(f"{header} {'ratio':>7s}\n")
    for row in result["forward"]:
        out.write(
            f"{row['case']:58s} {row['ms_per_slice']:9.2f} {row['achieved_gflops']:8.0f} "
            f"{row['ceiling_gflops']:8.0f} {row['ratio_percent']:6.1f}%\n"
        )
    out.write(f"\n{'end to end':58s} {'median':>9s}\n")
    for row in result["volume"]:
        out.write(f"{row['case']:58s} {row['seconds']:8.3f}s\n")
    for row in result["mirror"]:
        out.write(f"{row['case']:58s} {row['median_ms']:6.1f} ms ({row['samples']} timings)\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        out.write(f"wrote {args.json}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
