"""Training throughput benchmark: ``python -m facemtl.bench_train``.

Trains the baseline, HPS (1 shared block, normal placement) and cross-stitch
(5 units, normal placement) models of the 3-task grouping age+gender+ethnicity
on synthetic uint8 images with the real training step (facemtl.train.train_epoch).
It measures each model once per CPU precision (training.cpu_precision) and
reports training images per second, validation excluded. The result
replaces the ``## Training throughput`` section of docs/benchmarks.md and
leaves the file's other sections as they are.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from facemtl.models import build_model
from facemtl.tasks import task_from_config
from facemtl.train import (
    CPU_PRECISIONS,
    LossWeighting,
    SplitData,
    resolve_device,
    train_epoch,
    use_deterministic_kernels,
)

log = logging.getLogger(__name__)

SECTION_TITLE = "## Training throughput"
TASKS = {
    "age": {"kind": "regression", "loss": "mse"},
    "gender": {"kind": "binary", "loss": "bce"},
    "ethnicity": {"kind": "multiclass", "classes": 5, "loss": "cross_entropy"},
}
CONFIGURATIONS = (("baseline", 0, "none"), ("hps", 1, "normal"), ("cross_stitch", 5, "normal"))

# Full default grid: 4 groupings x 21 configurations (baseline, 9 HPS, 10 cross-stitch) x 3 seeds.
GRID_RUNS = 252
# 70 % of the 23,705 UTKFace images that the preparation step keeps.
GRID_TRAIN_IMAGES = 16_595
GRID_EPOCHS = 20
# Training images/s of the thesis's Keras code at 200x200, batch 64, on 2 CPU cores, by table label.
THESIS_IMAGES_PER_SECOND = {
    "baseline": (134, 143),
    "hps depth 1 normal": (178, 190),
    "cross_stitch depth 5 normal": (108, 115),
}


def prepare_training(
    architecture: str,
    depth: int,
    placement: str,
    image_size: int,
    batch_size: int,
    batches: int,
    micro_batch: int,
    device: torch.device,
    precision: str = "fp32",
) -> tuple[Callable[[], None], int]:
    """Build one model and return a function that trains it on ``batches`` synthetic batches, and their image count.

    One warm-up batch runs before this returns.
    """
    tasks = [task_from_config(name, entry) for name, entry in TASKS.items()]
    model = build_model(architecture, tasks, depth, placement, image_size, seed=0)
    model.to(device, memory_format=torch.channels_last)
    weighting = LossWeighting(tasks, "sum")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scales = {"age": 1.0}

    def synthetic(count: int) -> SplitData:
        generator = torch.Generator().manual_seed(count)
        images = torch.randint(0, 256, (count, image_size, image_size, 3), dtype=torch.uint8, generator=generator)
        targets = {
            "age": torch.randn(count, generator=generator),
            "gender": torch.randint(0, 2, (count,), generator=generator).float(),
            "ethnicity": torch.randint(0, 5, (count,), generator=generator),
        }
        return SplitData(images.to(device), {name: values.to(device) for name, values in targets.items()})

    def run(data: SplitData) -> None:
        generator = torch.Generator().manual_seed(0)
        train_epoch(
            model, weighting, optimizer, tasks, data, scales, batch_size, micro_batch, False, generator, device, precision
        )
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(synthetic(batch_size))
    data = synthetic(batch_size * batches)

    def train_timed_batches() -> None:
        run(data)

    return train_timed_batches, len(data)


def measure_throughputs(trainings: list[tuple[Callable[[], None], int]], repeats: int) -> list[float]:
    """Return training images per second of each prepared training, the best of ``repeats`` timings.

    Each round times every training once, so a change in the load of the
    machine slows all of them alike, and the best timing is the one least
    slowed by other processes.
    """
    best_seconds = [float("inf")] * len(trainings)
    for _ in range(repeats):
        for index, (train, _) in enumerate(trainings):
            started = time.perf_counter()
            train()
            best_seconds[index] = min(best_seconds[index], time.perf_counter() - started)
    return [count / seconds for (_, count), seconds in zip(trainings, best_seconds)]


# Operator groups of the time breakdown. A group's time is the CPU total of its
# top-level aten operators, which includes their child operators, such as the
# oneDNN convolution under aten::convolution. The groups therefore do not overlap.
BREAKDOWN_GROUPS = (
    ("convolution forward", ("aten::convolution",)),
    ("convolution backward", ("aten::convolution_backward",)),
    ("max-pooling forward", ("aten::max_pool2d_with_indices",)),
    ("max-pooling backward", ("aten::max_pool2d_with_indices_backward",)),
)


def time_breakdown(train: Callable[[], None]) -> list[tuple[str, float]]:
    """Profile one call of ``train`` and return (operator group, share of the call's wall time) pairs.

    The groups are BREAKDOWN_GROUPS, then ``everything else`` (ReLU, dense
    layers, losses, optimizer step, input conversion). Shares are measured
    under torch.profiler, whose own overhead slightly inflates the many small
    operators of ``everything else``.
    """
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        train()
    wall_us = (time.perf_counter() - started) * 1e6
    totals = {event.key: event.cpu_time_total for event in profiler.key_averages()}
    shares = [(group, sum(totals.get(name, 0.0) for name in names) / wall_us) for group, names in BREAKDOWN_GROUPS]
    shares.append(("everything else", max(0.0, 1.0 - sum(share for _, share in shares))))
    return shares


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform's processor string elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


def available_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def format_section(
    results: list[dict],
    args: argparse.Namespace,
    device: torch.device,
    threads: int,
    load: float | None,
    breakdowns: dict[str, list[tuple[str, float]]] | None = None,
) -> str:
    """Return the Markdown section with the machine, the measured table, the grid projection and the time breakdown.

    ``breakdowns`` maps a precision to the time_breakdown of the baseline at the
    first measured image size; without it the breakdown is left out.
    """
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    batches = f"{args.batches} batch" if args.batches == 1 else f"{args.batches} batches"
    lines = [
        SECTION_TITLE,
        "",
        f"Measured with `python -m facemtl.bench_train` on {time.strftime('%Y-%m-%d')}: "
        f"{cpu_model()}, {available_cores()} cores, torch {torch.__version__}, device {device} ({device_name}), "
        f"{threads} torch threads. Each model trains on the tasks age, gender and ethnicity with synthetic uint8 "
        f"images, batch {args.batch_size}, micro-batch {args.micro_batch} (0: none; CPU only), "
        f"the fastest of {args.repeats} timings of {batches} after one warm-up batch. "
        "The rows of one image size were timed in turns. "
        "Validation is not included. The precision column is training.cpu_precision: fp32 trains in float32, "
        "bf16 runs the forward pass under CPU autocast to bfloat16 (on CUDA, training always uses bf16 autocast).",
    ]
    if load is not None:
        lines.append(
            f"The 1-minute load average before the run was {load:.1f}; a load near or above the core count means "
            "other processes shared the cores, so the numbers are lower than on an idle machine."
        )
    lines += [
        "",
        "| architecture | image size | precision | images/s | Keras images/s | projected grid hours |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        keras = THESIS_IMAGES_PER_SECOND.get(result["label"]) if result["image_size"] == 200 else None
        keras_text = f"{keras[0]}-{keras[1]}" if keras else ""
        lines.append(
            f"| {result['label']} | {result['image_size']} | {result['precision']} "
            f"| {result['images_per_second']:.1f} | {keras_text} | {result['grid_hours']:.1f} |"
        )

    low, high = THESIS_IMAGES_PER_SECOND["baseline"]
    lines += [
        "",
        f"Projected grid hours are an estimate: all {GRID_RUNS} runs of the default grid at the row's speed, "
        f"one after another, {GRID_EPOCHS} epochs each (max_epochs; early stopping only shortens runs) of "
        f"{GRID_TRAIN_IMAGES:,} training images (70 % of 23,705 UTKFace images). Validation time is "
        "excluded, and 2-task groupings, which train faster, are counted at the 3-task speed.",
        "",
        "The Keras column is the training speed of the thesis's Keras code at 200x200, batch 64, on 2 CPU cores.",
    ]
    for result in results:
        if result["label"] != "baseline" or result["image_size"] != 200:
            continue
        speed = result["images_per_second"]
        lines.append(
            f"The {result['precision']} baseline at 200x200 here trains at {speed / high:.2f}-{speed / low:.2f} "
            f"times the Keras rate ({speed / (2 * high):.2f}-{speed / (2 * low):.2f} times the goal of twice "
            "that rate)."
        )
    for size in dict.fromkeys(result["image_size"] for result in results):
        for precision in dict.fromkeys(result["precision"] for result in results):
            rows = [row for row in results if row["image_size"] == size and row["precision"] == precision]
            if not rows:
                continue
            seconds_per_image = sum(1.0 / row["images_per_second"] for row in rows) / len(rows)
            hours = GRID_RUNS * GRID_EPOCHS * GRID_TRAIN_IMAGES * seconds_per_image / 3600
            lines.append(
                f"At {size}x{size} in {precision}, with the mean time per image of the three architectures, "
                f"the grid takes an estimated {hours:.0f} hours."
            )

    if breakdowns:
        size = args.sizes[0]
        precisions = list(breakdowns)
        lines += [
            "",
            "### Where the time goes",
            "",
            f"Share of the wall time of {batches} of the baseline at {size}x{size} per operator "
            "group, measured with torch.profiler on the same device and threads. A group includes its child "
            "operators, such as the zero-filled gradient buffer of max-pooling backward. Convolution and "
            "max-pooling run as separate operators, so every block writes its full-resolution convolution output "
            "to memory and max-pooling reads it back, in the forward and the backward pass.",
            "",
            "| operator group | " + " | ".join(precisions) + " |",
            "| --- | " + " | ".join("---" for _ in precisions) + " |",
        ]
        for index, (group, _) in enumerate(breakdowns[precisions[0]]):
            shares = " | ".join(f"{breakdowns[precision][index][1]:.0%}" for precision in precisions)
            lines.append(f"| {group} | {shares} |")
    return "\n".join(lines) + "\n"


def replace_section(path: Path, section: str) -> None:
    """Write ``section`` into the Markdown file ``path``, replacing its own earlier version only."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", flags=re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[200, 100], help="image sizes (side in pixels) to measure"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size in images")
    parser.add_argument("--batches", type=int, default=3, help="batches per timing, after one warm-up batch")
    parser.add_argument("--repeats", type=int, default=3, help="timings per model; the fastest is reported")
    parser.add_argument(
        "--micro-batch", type=int, default=8, help="images per micro-batch on CPU (0: whole batch at once)"
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=CPU_PRECISIONS,
        # auto resolves to one of the other two, so measuring it would repeat a row.
        default=[precision for precision in CPU_PRECISIONS if precision != "auto"],
        help="CPU training precisions to measure (training.cpu_precision); ignored on CUDA, which uses bf16",
    )
    parser.add_argument("--threads", type=int, default=available_cores(), help="torch CPU threads")
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="device to train on; auto takes CUDA when available",
    )
    parser.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="skip the profile of where the baseline's training time goes (measured on CPU only)",
    )
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"), help="Markdown file to update")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.set_num_threads(args.threads)
    # Same determinism settings as train_run, so the benchmark measures the kernels that training uses.
    use_deterministic_kernels()
    device = resolve_device(args.device)
    precisions = args.precisions if device.type == "cpu" else ["bf16"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = []
    for image_size in args.sizes:
        runs = [
            (architecture, depth, placement, precision)
            for precision in precisions
            for architecture, depth, placement in CONFIGURATIONS
        ]
        trainings = [
            prepare_training(
                architecture,
                depth,
                placement,
                image_size,
                args.batch_size,
                args.batches,
                args.micro_batch,
                device,
                precision,
            )
            for architecture, depth, placement, precision in runs
        ]
        speeds = measure_throughputs(trainings, args.repeats)
        for (architecture, depth, placement, precision), speed in zip(runs, speeds):
            label = architecture if architecture == "baseline" else f"{architecture} depth {depth} {placement}"
            grid_hours = GRID_RUNS * GRID_EPOCHS * GRID_TRAIN_IMAGES / speed / 3600
            log.info("%s at %dx%d in %s: %.1f images/s", label, image_size, image_size, precision, speed)
            results.append(
                {
                    "label": label,
                    "image_size": image_size,
                    "precision": precision,
                    "images_per_second": speed,
                    "grid_hours": grid_hours,
                }
            )

    breakdowns = {}
    # CPU only: torch.profiler's CPU times of CUDA operators measure kernel launches, not kernels.
    if args.breakdown and device.type == "cpu":
        for precision in precisions:
            train, _ = prepare_training(
                "baseline", 0, "none", args.sizes[0], args.batch_size, args.batches, args.micro_batch, device, precision
            )
            breakdowns[precision] = time_breakdown(train)
            log.info(
                "baseline at %dx%d in %s: %s",
                args.sizes[0],
                args.sizes[0],
                precision,
                ", ".join(f"{group} {share:.0%}" for group, share in breakdowns[precision]),
            )

    replace_section(args.output, format_section(results, args, device, args.threads, load, breakdowns))
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
