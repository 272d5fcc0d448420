"""Training of one multitask model on a packed image set, with early stopping and resume.

``train_run`` is the entry point of the workflow's training jobs. It trains on
the pack's ``train`` split, stops early on the ``validation`` split's total
loss, restores the best epoch's weights and writes a checkpoint, a per-epoch
history and a metrics summary. Rows of any other split (``test``) are never
read beyond their ``split`` value.

A run killed mid-way resumes from its last completed epoch when it is started
again with the same settings. After every epoch a resume file next to the
checkpoint (see resume_path) stores the model, optimizer, history and
early-stopping state, and it is deleted once the outputs are written. Each epoch's shuffle
and flips come from a generator seeded with (seed, epoch), so a resumed run
gives the same history and weights as an uninterrupted one on the same device.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facemtl.models import CrossStitchNet, load_baseline_weights, model_from_settings, tasks_from_settings
from facemtl.models.blocks import to_model_input
from facemtl.packed import read_pack
from facemtl.tasks import Task

log = logging.getLogger(__name__)

SPLIT_COLUMN = "split"
TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"

# Training keys that change how a job is scheduled but not what it computes,
# so changing them does not invalidate a resume file.
SCHEDULING_KEYS = ("threads", "mem_mb")

# The default epsilon of tf.keras's Adam, which the thesis trained with. PyTorch's default is 1e-8.
ADAM_EPSILON = 1e-7

LOSS_WEIGHTINGS = ("sum", "uncertainty")
DEVICES = ("auto", "cpu", "cuda")
# fp32 trains in float32. bf16 runs the forward pass under CPU autocast to bfloat16
# (convolutions, matrix products and pooling in bfloat16, losses and weights in float32).
# auto takes bf16 on CPUs with native bfloat16 (AVX512-BF16 or AMX) and fp32 elsewhere,
# because emulated bfloat16 is slower than float32.
CPU_PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_CPU_PRECISION = "auto"


@dataclass
class SplitData:
    """Images and targets of one split, on the training device.

    ``images`` is uint8 (N, H, W, 3). ``targets`` maps a task name to float32
    (N,) values (standardized for regression when standardization is on,
    0/1 for binary) or int64 (N,) class indices for multiclass tasks.
    """

    images: Tensor
    targets: dict[str, Tensor]

    def __len__(self) -> int:
        return len(self.images)


class LossWeighting(nn.Module):
    """Combination of the per-task losses into the total loss.

    ``sum`` adds the raw losses, as the thesis did, so the age MSE (about 100
    in years squared) dominates the classification losses. ``uncertainty`` is
    the homoscedastic uncertainty weighting of Kendall et al. (CVPR 2018) with
    one learned log-variance s_t per task, initialised to 0:
    total = sum_t exp(-s_t) * L_t + s_t, the same form for every task kind.
    Kendall et al. put a factor 1/2 on both terms of regression tasks and on
    s_t of classification tasks. At the optimum over s_t every task's
    effective weight exp(-s_t) is then 1 / (2 L_t) instead of 1 / L_t here, so
    both forms give the tasks the same relative weights.
    """

    def __init__(self, tasks: list[Task], mode: str) -> None:
        super().__init__()
        if mode not in LOSS_WEIGHTINGS:
            raise ValueError(f"invalid loss_weighting {mode!r}; allowed values: {', '.join(LOSS_WEIGHTINGS)}")
        self.mode = mode
        self.names = [task.name for task in tasks]
        if mode == "uncertainty":
            self.log_variance = nn.Parameter(torch.zeros(len(tasks)))

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        stacked = torch.stack([losses[name] for name in self.names])
        if self.mode == "sum":
            return stacked.sum()
        return (torch.exp(-self.log_variance) * stacked + self.log_variance).sum()


def task_loss(task: Task, output: Tensor, target: Tensor) -> Tensor:
    """Return the task's loss, a mean over the batch, for model ``output`` and ``target``."""
    if task.loss == "mse":
        return F.mse_loss(output, target)
    if task.loss == "bce":
        return F.binary_cross_entropy_with_logits(output, target)
    if task.loss == "cross_entropy":
        return F.cross_entropy(output, target)
    raise ValueError(f"task {task.name!r}: invalid loss {task.loss!r}; allowed values: mse, bce, cross_entropy")


def metric_name(task: Task) -> str:
    """Return the name of the task's epoch metric: ``mae`` (years for age) or ``accuracy``."""
    return "mae" if task.kind == "regression" else "accuracy"


def resume_path(checkpoint: str | Path) -> Path:
    """Return the resume file of a checkpoint: ``<checkpoint name>.resume`` in the same folder.

    It is no workflow output on purpose, so Snakemake keeps it when a killed job is rerun.
    """
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + ".resume")


def resolve_device(name: str) -> torch.device:
    """Return the torch device for the ``device`` setting: auto, cpu or cuda."""
    if name not in DEVICES:
        raise ValueError(f"invalid training device {name!r}; allowed values: {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("training device 'cuda' was requested but torch finds no CUDA device; set device to auto or cpu")
    return torch.device(name)


def check_cpu_precision(name: str) -> str:
    """Return ``name`` when it is a valid ``cpu_precision`` setting (auto, fp32 or bf16); raise ValueError otherwise."""
    if name not in CPU_PRECISIONS:
        raise ValueError(f"invalid training cpu_precision {name!r}; allowed values: {', '.join(CPU_PRECISIONS)}")
    return name


def resolve_cpu_precision(name: str) -> str:
    """Return fp32 or bf16 for a ``cpu_precision`` setting, deciding ``auto`` by this CPU's bfloat16 support."""
    if check_cpu_precision(name) == "auto":
        return "bf16" if _cpu_has_native_bf16() else "fp32"
    return name


def _cpu_has_native_bf16() -> bool:
    # torch.cpu's feature checks are private (torch 2.14), so a torch without them counts as unsupported.
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_deterministic_kernels() -> None:
    """Make torch choose deterministic kernels, so the same seed and device give the same weights.

    Deterministic mode also fills every new uninitialized tensor with NaN, to
    expose reads of uninitialized memory. That fill took up to a fifth of a
    float32 CPU training step at 200x200 (torch 2.14 profiler), and every kernel
    overwrites its output, so it is turned off. Results stay the same.
    """
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def seed_for_epoch(seed: int, epoch: int) -> int:
    """Return the seed of an epoch's shuffle and flip generator, derived from the run seed and the epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])


def train_run(
    images: Path,
    labels: Path,
    checkpoint: Path,
    history: Path,
    metrics: Path,
    settings: dict,
    baseline: Path | None = None,
    threads: int = 1,
) -> None:
    """Train the model that ``settings`` describes and write checkpoint, history CSV and metrics JSON.

    ``images`` and ``labels`` are a pack (see facemtl.packed) whose labels have
    a ``split`` column. ``settings`` contains ``grouping``, ``architecture``,
    ``placement``, ``depth``, ``seed``, ``tasks``, ``model`` (channels,
    hidden), ``training`` and, for cross-stitch models, ``cross_stitch`` (init,
    diagonal, lr_multiplier). A cross-stitch model starts from the columns
    and heads of the ``baseline`` checkpoint. ``threads`` sets torch's CPU
    threads.
    """
    images, labels, checkpoint = Path(images), Path(labels), Path(checkpoint)
    history, metrics = Path(history), Path(metrics)
    settings = copy.deepcopy(settings)
    training = settings["training"]
    tasks = tasks_from_settings(settings)
    seed = int(settings["seed"])

    torch.set_num_threads(threads)
    device = resolve_device(training.get("device", "auto"))
    requested_precision = training.get("cpu_precision", DEFAULT_CPU_PRECISION)
    precision = resolve_cpu_precision(requested_precision)
    # The checkpoint and the resume hash record the precision the run really used.
    training["cpu_precision"] = precision
    if device.type == "cpu" and requested_precision == "bf16" and not _cpu_has_native_bf16():
        log.warning(
            "training.cpu_precision is bf16 but this CPU has neither AVX512-BF16 nor AMX, so bfloat16 is emulated "
            "and can be slower than float32; set training.cpu_precision to fp32"
        )
    if device.type == "cuda":
        # cuBLAS needs a fixed workspace for deterministic results, and the variable only counts before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    use_deterministic_kernels()

    image_array, label_table = read_pack(images, labels)
    image_size = int(image_array.shape[1])
    if image_array.shape[2] != image_size:
        raise ValueError(f"{images}: images must be square, got {image_array.shape[1]}x{image_array.shape[2]}")
    train_rows, validation_rows = _split_rows(label_table, labels)

    enabled = bool(training.get("standardize_age", False))
    train_targets = _read_targets(label_table, train_rows, tasks, labels, TRAIN_SPLIT)
    validation_targets = _read_targets(label_table, validation_rows, tasks, labels, VALIDATION_SPLIT)
    standardization = _standardization(train_targets, tasks, enabled, labels)
    train_data = _to_split_data(image_array, train_rows, train_targets, tasks, standardization, device)
    validation_data = _to_split_data(image_array, validation_rows, validation_targets, tasks, standardization, device)

    settings["image_size"] = image_size
    if standardization:
        settings["target_standardization"] = {
            name: {"mean": mean, "std": std} for name, (mean, std) in standardization.items()
        }

    if settings["architecture"] == "cross_stitch" and not baseline:
        raise ValueError(
            f"cross-stitch run {settings.get('grouping')!r} needs the checkpoint of the trained baseline "
            "of the same grouping, but none was given"
        )
    settings_hash = _settings_hash(settings, images, labels, baseline)

    model = model_from_settings(settings, seed=seed)
    if isinstance(model, CrossStitchNet):
        load_baseline_weights(model, baseline)
    model.to(device, memory_format=torch.channels_last)
    weighting = LossWeighting(tasks, training.get("loss_weighting", "sum")).to(device)
    optimizer = _make_optimizer(model, weighting, settings)

    log.info(
        "training %s %s placement=%s depth=%s seed=%d on %s: %d train and %d validation images of %dx%d",
        settings.get("grouping"),
        settings["architecture"],
        settings.get("placement"),
        settings.get("depth"),
        seed,
        device,
        len(train_data),
        len(validation_data),
        image_size,
        image_size,
    )

    state = _TrainingState(_clone_state(model), _clone_state(weighting))
    resume_file = resume_path(checkpoint)
    _maybe_resume(resume_file, settings_hash, model, weighting, optimizer, state)

    _fit(
        model,
        weighting,
        optimizer,
        tasks,
        train_data,
        validation_data,
        standardization,
        settings,
        device,
        state,
        resume_file,
        settings_hash,
    )

    model.load_state_dict(state.best_state)
    weighting.load_state_dict(state.best_weighting)
    _write_outputs(checkpoint, history, metrics, model, weighting, settings, state, device)
    resume_file.unlink(missing_ok=True)


@dataclass
class _TrainingState:
    """Progress of a run after its last completed epoch; the resume file stores it."""

    best_state: dict[str, Tensor]
    best_weighting: dict[str, Tensor]
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.inf
    bad_epochs: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_images: int = 0
    seconds: float = 0.0


def _clone_state(module: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _split_rows(label_table: pd.DataFrame, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return the row indices of the train and validation splits, logging how many rows are ignored."""
    if SPLIT_COLUMN not in label_table.columns:
        raise ValueError(
            f"{labels} has no {SPLIT_COLUMN!r} column; training needs the pack written by the split step, "
            f"whose labels mark each row {TRAIN_SPLIT}, {VALIDATION_SPLIT} or test"
        )

    split = label_table[SPLIT_COLUMN].astype(str).to_numpy()
    train_rows = np.flatnonzero(split == TRAIN_SPLIT)
    validation_rows = np.flatnonzero(split == VALIDATION_SPLIT)
    for name, rows in ((TRAIN_SPLIT, train_rows), (VALIDATION_SPLIT, validation_rows)):
        if len(rows) == 0:
            raise ValueError(f"{labels} has no rows with {SPLIT_COLUMN} == {name!r}; training needs both train and validation rows")

    other = pd.Series(split[(split != TRAIN_SPLIT) & (split != VALIDATION_SPLIT)]).value_counts()
    if len(other):
        log.info("ignoring %d rows of other splits: %s", int(other.sum()), {str(k): int(v) for k, v in other.items()})
    return train_rows, validation_rows


def _read_targets(
    label_table: pd.DataFrame, rows: np.ndarray, tasks: list[Task], labels: Path, split: str
) -> dict[str, np.ndarray]:
    """Return each task's raw label values for ``rows``, raising ValueError on missing or out-of-range labels."""
    targets = {}
    for task in tasks:
        if task.column not in label_table.columns:
            raise ValueError(
                f"{labels} has no column {task.column!r} for task {task.name!r}; "
                f"columns: {', '.join(label_table.columns)}"
            )

        values = pd.to_numeric(label_table[task.column].iloc[rows], errors="coerce").to_numpy(dtype=np.float64)
        if task.kind == "binary":
            invalid = ~np.isin(values, (0.0, 1.0))
            expected = "0 or 1"
        elif task.kind == "multiclass":
            invalid = ~np.isin(values, np.arange(task.classes, dtype=np.float64))
            expected = f"an integer class in 0..{task.classes - 1}"
        else:
            invalid = ~np.isfinite(values)
            expected = "a finite number"

        if invalid.any():
            bad_rows = rows[invalid]
            count = int(invalid.sum())
            amount = "1 value is" if count == 1 else f"{count} values are"
            raise ValueError(
                f"{labels}: in the {split} split, {amount} not {expected} in column {task.column!r} of task "
                f"{task.name!r} (rows {bad_rows[:5].tolist()}, values "
                f"{label_table[task.column].iloc[bad_rows[:5]].tolist()}); fix the labels and rebuild the pack"
            )
        targets[task.name] = values
    return targets


def _standardization(
    train_targets: dict[str, np.ndarray], tasks: list[Task], enabled: bool, labels: Path
) -> dict[str, tuple[float, float]]:
    """Return (mean, std) of each regression task's train targets when standardization is on, else {}."""
    if not enabled:
        return {}

    result = {}
    for task in tasks:
        if task.kind != "regression":
            continue
        values = train_targets[task.name]
        std = float(values.std())
        if not std > 0:
            raise ValueError(
                f"{labels}: task {task.name!r} has the same value in every train row, so it cannot be "
                "standardized; turn standardize_age off or use more varied data"
            )
        result[task.name] = (float(values.mean()), std)
    return result


def _to_split_data(
    image_array: np.ndarray,
    rows: np.ndarray,
    targets: dict[str, np.ndarray],
    tasks: list[Task],
    standardization: dict[str, tuple[float, float]],
    device: torch.device,
) -> SplitData:
    """Copy a split's images and targets to ``device``; images stay uint8 until a batch is drawn."""
    images = torch.from_numpy(np.ascontiguousarray(image_array[rows])).to(device)
    tensors = {}
    for task in tasks:
        values = targets[task.name]
        if task.kind == "multiclass":
            tensors[task.name] = torch.from_numpy(values.astype(np.int64)).to(device)
            continue
        if task.name in standardization:
            mean, std = standardization[task.name]
            values = (values - mean) / std
        tensors[task.name] = torch.from_numpy(values.astype(np.float32)).to(device)
    return SplitData(images, tensors)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _settings_hash(settings: dict[str, Any], images: Path, labels: Path, baseline: Path | None) -> str:
    """Return a hash of everything that determines a run's results, to match a resume file to its run.

    It covers the settings (without SCHEDULING_KEYS), the contents of the
    labels file and the baseline checkpoint, and the size and modification
    time of the images file. Hashing the images' gigabytes would slow every
    job's start, and a rebuilt pack gets a new modification time, so a resume
    file from before the rebuild is discarded.
    """
    relevant = copy.deepcopy(settings)
    for key in SCHEDULING_KEYS:
        relevant["training"].pop(key, None)

    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode())
    status = images.stat()
    digest.update(f"{status.st_size}:{status.st_mtime_ns}".encode())
    digest.update(_file_digest(labels).encode())
    if baseline:
        digest.update(_file_digest(Path(baseline)).encode())
    return digest.hexdigest()


def _make_optimizer(model: nn.Module, weighting: LossWeighting, settings: dict[str, Any]) -> torch.optim.Optimizer:
    """Return Adam with the cross-stitch units in their own parameter group (learning rate times lr_multiplier)."""
    training = settings["training"]
    if training.get("optimizer", "adam") != "adam":
        raise ValueError(f"invalid optimizer {training.get('optimizer')!r}; allowed values: adam")
    learning_rate = float(training.get("learning_rate", 1e-3))

    unit_parameters = model.unit_parameters() if isinstance(model, CrossStitchNet) else []
    unit_ids = {id(parameter) for parameter in unit_parameters}
    groups = [{"params": [p for p in model.parameters() if id(p) not in unit_ids], "lr": learning_rate}]
    if unit_parameters:
        multiplier = float((settings.get("cross_stitch") or {}).get("lr_multiplier", 1.0))
        groups.append({"params": unit_parameters, "lr": learning_rate * multiplier})
    if any(True for _ in weighting.parameters()):
        groups.append({"params": list(weighting.parameters()), "lr": learning_rate})
    return torch.optim.Adam(groups, lr=learning_rate, eps=ADAM_EPSILON)


def _maybe_resume(
    resume_file: Path,
    settings_hash: str,
    model: nn.Module,
    weighting: LossWeighting,
    optimizer: torch.optim.Optimizer,
    state: _TrainingState,
) -> None:
    """Load the resume file into model, optimizer and ``state`` when it belongs to this run; delete it otherwise."""
    if not resume_file.exists():
        return

    saved = torch.load(resume_file, map_location="cpu", weights_only=False)
    if saved.get("settings_hash") != settings_hash:
        log.warning("ignoring and deleting resume file %s: it was written with other settings or data", resume_file)
        resume_file.unlink()
        return

    model.load_state_dict(saved["model"])
    weighting.load_state_dict(saved["weighting"])
    optimizer.load_state_dict(saved["optimizer"])
    for name, value in saved["state"].items():
        setattr(state, name, value)
    log.info("resuming from %s after epoch %d", resume_file, state.epoch)


def _save_resume(
    resume_file: Path,
    settings_hash: str,
    model: nn.Module,
    weighting: LossWeighting,
    optimizer: torch.optim.Optimizer,
    state: _TrainingState,
) -> None:
    # Written to a temporary name and renamed, so a kill during the write leaves the previous resume file intact.
    temporary = resume_file.with_name(resume_file.name + ".tmp")
    resume_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "settings_hash": settings_hash,
            "model": model.state_dict(),
            "weighting": weighting.state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": dict(state.__dict__),
        },
        temporary,
    )
    os.replace(temporary, resume_file)


def _fit(
    model: nn.Module,
    weighting: LossWeighting,
    optimizer: torch.optim.Optimizer,
    tasks: list[Task],
    train_data: SplitData,
    validation_data: SplitData,
    standardization: dict[str, tuple[float, float]],
    settings: dict[str, Any],
    device: torch.device,
    state: _TrainingState,
    resume_file: Path,
    settings_hash: str,
) -> None:
    """Run epochs until max_epochs or early stopping, saving the resume file after each epoch."""
    training = settings["training"]
    max_epochs = int(training.get("max_epochs", 20))
    patience = int(training.get("patience", 4))
    batch_size = int(training.get("batch_size", 64))
    eval_batch_size = int(training.get("eval_batch_size", 256))
    micro_batch = int(training.get("micro_batch", 0))
    hflip = bool(training.get("augment_hflip", False))
    precision = training.get("cpu_precision", DEFAULT_CPU_PRECISION)
    seed = int(settings["seed"])
    scales = {task.name: standardization.get(task.name, (0.0, 1.0))[1] for task in tasks}

    while state.epoch < max_epochs and not state.stopped_early:
        epoch = state.epoch + 1
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed_for_epoch(seed, epoch))
        train_stats = train_epoch(
            model,
            weighting,
            optimizer,
            tasks,
            train_data,
            scales,
            batch_size,
            micro_batch,
            hflip,
            generator,
            device,
            precision,
        )
        train_seconds = time.perf_counter() - started
        validation_stats = evaluate(
            model, weighting, tasks, validation_data, scales, eval_batch_size, device, precision
        )
        seconds = time.perf_counter() - started

        if not math.isfinite(train_stats["loss"]) or not math.isfinite(validation_stats["loss"]):
            raise FloatingPointError(
                f"training diverged in epoch {epoch}: train loss {train_stats['loss']}, validation loss "
                f"{validation_stats['loss']}; lower training.learning_rate or turn on training.standardize_age"
            )

        row = _history_row(epoch, train_stats, validation_stats, tasks, weighting, seconds, optimizer)
        state.history.append(row)
        state.epoch = epoch
        state.train_seconds += train_seconds
        state.train_images += len(train_data)
        state.seconds += seconds

        if validation_stats["loss"] < state.best_loss:
            state.best_loss = validation_stats["loss"]
            state.best_epoch = epoch
            state.best_state = _clone_state(model)
            state.best_weighting = _clone_state(weighting)
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= patience

        log.info("%s", _describe_epoch(row, tasks, max_epochs))
        _save_resume(resume_file, settings_hash, model, weighting, optimizer, state)

    if state.stopped_early:
        log.info("stopped early after epoch %d: no improvement for %d epochs", state.epoch, patience)
    log.info("best epoch %d with validation loss %.4f", state.best_epoch, state.best_loss)


def train_epoch(
    model: nn.Module,
    weighting: LossWeighting,
    optimizer: torch.optim.Optimizer,
    tasks: list[Task],
    data: SplitData,
    scales: dict[str, float],
    batch_size: int,
    micro_batch: int,
    hflip: bool,
    generator: torch.Generator,
    device: torch.device,
    precision: str = DEFAULT_CPU_PRECISION,
) -> dict[str, float]:
    """Train one epoch over ``data`` in the order that ``generator`` draws, and return its statistics.

    On CPU, each batch of ``batch_size`` images is split into micro-batches of
    ``micro_batch`` images (0: no split). Their scaled losses add up to the
    batch's mean loss, so the gradient equals the whole batch's up to rounding, while the
    activations stay in the CPU cache. CUDA always processes the whole batch.
    With ``hflip``, each image is mirrored with probability 1/2. ``precision``
    (see CPU_PRECISIONS) applies on CPU only, and CUDA always uses bf16 autocast.
    ``scales`` maps a regression task to the std of its targets (1 unless
    standardized), so the MAE is in the original unit. The statistics are
    ``loss`` and, per task, ``<task>_loss`` and ``<task>_<metric>``, each the
    mean over the epoch's images of the values measured while training.
    """
    model.train()
    count = len(data)
    order = torch.randperm(count, generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5 if hflip else None
    step = micro_batch if micro_batch > 0 and device.type == "cpu" else batch_size
    sums = torch.zeros(1 + 2 * len(tasks), dtype=torch.float64, device=device)

    for start in range(0, count, batch_size):
        rows = order[start : start + batch_size].to(device)
        images = data.images[rows]
        if flips is not None:
            mirrored = flips[start : start + batch_size].to(device)
            images[mirrored] = images[mirrored].flip(2)
        targets = {name: values[rows] for name, values in data.targets.items()}

        optimizer.zero_grad(set_to_none=True)
        for part in range(0, len(rows), step):
            part_targets = {name: values[part : part + step] for name, values in targets.items()}
            with _autocast(device, precision):
                outputs = model(to_model_input(images[part : part + step]))
            losses = {task.name: task_loss(task, outputs[task.name].float(), part_targets[task.name]) for task in tasks}
            total = weighting(losses)
            (total * (len(outputs[tasks[0].name]) / len(rows))).backward()
            sums += _statistic_sums(tasks, outputs, part_targets, losses, total, scales)
        optimizer.step()

    return _statistics(sums, tasks, count)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    weighting: LossWeighting,
    tasks: list[Task],
    data: SplitData,
    scales: dict[str, float],
    batch_size: int,
    device: torch.device,
    precision: str = DEFAULT_CPU_PRECISION,
) -> dict[str, float]:
    """Return the loss and metrics of ``model`` on ``data`` in eval mode (same keys as train_epoch).

    The total ``loss`` is the weighting applied to the per-task mean losses.
    ``precision`` is the training precision (see train_epoch), so validation
    measures the numerics that the model trains with.
    """
    model.eval()
    count = len(data)
    sums = torch.zeros(1 + 2 * len(tasks), dtype=torch.float64, device=device)
    for start in range(0, count, batch_size):
        targets = {name: values[start : start + batch_size] for name, values in data.targets.items()}
        with _autocast(device, precision):
            outputs = model(to_model_input(data.images[start : start + batch_size]))
        losses = {task.name: task_loss(task, outputs[task.name].float(), targets[task.name]) for task in tasks}
        sums += _statistic_sums(tasks, outputs, targets, losses, torch.zeros((), device=device), scales)

    statistics = _statistics(sums, tasks, count)
    mean_losses = {task.name: torch.tensor(statistics[f"{task.name}_loss"], device=device) for task in tasks}
    statistics["loss"] = float(weighting(mean_losses))
    return statistics


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    # NOTE: the CUDA path (bf16 autocast, data kept on the GPU) has not been run on a GPU.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if resolve_cpu_precision(precision) == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _statistic_sums(
    tasks: list[Task],
    outputs: dict[str, Tensor],
    targets: dict[str, Tensor],
    losses: dict[str, Tensor],
    total: Tensor,
    scales: dict[str, float],
) -> Tensor:
    """Return [total, loss_1, metric_1, ..., loss_T, metric_T], each summed over the batch's images."""
    count = len(targets[tasks[0].name])
    values = [total.detach() * count]
    for task in tasks:
        output = outputs[task.name].detach().float()
        target = targets[task.name]
        if task.kind == "regression":
            metric = (output - target).abs().sum() * scales[task.name]
        elif task.kind == "binary":
            metric = ((output > 0).float() == target).sum()
        else:
            metric = (output.argmax(dim=1) == target).sum()
        values += [losses[task.name].detach() * count, metric]
    return torch.stack([value.to(torch.float64) for value in values])


def _statistics(sums: Tensor, tasks: list[Task], count: int) -> dict[str, float]:
    means = (sums / count).tolist()
    statistics = {"loss": means[0]}
    for index, task in enumerate(tasks):
        statistics[f"{task.name}_loss"] = means[1 + 2 * index]
        statistics[f"{task.name}_{metric_name(task)}"] = means[2 + 2 * index]
    return statistics


def _history_row(
    epoch: int,
    train_stats: dict[str, float],
    validation_stats: dict[str, float],
    tasks: list[Task],
    weighting: LossWeighting,
    seconds: float,
    optimizer: torch.optim.Optimizer,
) -> dict[str, float]:
    row: dict[str, float] = {
        "epoch": epoch,
        "train_loss": train_stats["loss"],
        "validation_loss": validation_stats["loss"],
    }
    for task in tasks:
        for split, stats in (("train", train_stats), ("validation", validation_stats)):
            row[f"{split}_{task.name}_loss"] = stats[f"{task.name}_loss"]
            row[f"{split}_{task.name}_{metric_name(task)}"] = stats[f"{task.name}_{metric_name(task)}"]
    if weighting.mode == "uncertainty":
        for name, value in zip(weighting.names, weighting.log_variance.detach().cpu().tolist()):
            row[f"{name}_log_variance"] = value
    row["seconds"] = seconds
    row["learning_rate"] = optimizer.param_groups[0]["lr"]
    return row


def _describe_epoch(row: dict[str, float], tasks: list[Task], max_epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{max_epochs} ({row['seconds']:.1f} s)"]
    for split in ("train", "validation"):
        task_parts = [
            f"{task.name} {row[f'{split}_{task.name}_loss']:.4f} {metric_name(task)} "
            f"{row[f'{split}_{task.name}_{metric_name(task)}']:.4f}"
            for task in tasks
        ]
        parts.append(f"{split} loss {row[f'{split}_loss']:.4f} ({', '.join(task_parts)})")
    return "; ".join(parts)


def _write_outputs(
    checkpoint: Path,
    history: Path,
    metrics: Path,
    model: nn.Module,
    weighting: LossWeighting,
    settings: dict[str, Any],
    state: _TrainingState,
    device: torch.device,
) -> None:
    """Write the history CSV, the metrics JSON and the checkpoint of the best epoch."""
    tasks = tasks_from_settings(settings)
    for path in (checkpoint, history, metrics):
        path.parent.mkdir(parents=True, exist_ok=True)

    pd.DataFrame(state.history).to_csv(history, index=False)

    best = state.history[state.best_epoch - 1]
    summary = {
        "grouping": settings.get("grouping"),
        "architecture": settings["architecture"],
        "placement": settings.get("placement"),
        "depth": settings.get("depth"),
        "seed": settings["seed"],
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "validation_loss": best["validation_loss"],
        "validation": {
            task.name: {
                "loss": best[f"validation_{task.name}_loss"],
                metric_name(task): best[f"validation_{task.name}_{metric_name(task)}"],
            }
            for task in tasks
        },
        "seconds": state.seconds,
        "train_seconds": state.train_seconds,
        "device": str(device),
        "images_per_second": state.train_images / state.train_seconds if state.train_seconds > 0 else None,
    }
    with open(metrics, "w") as handle:
        json.dump(summary, handle, indent=2)

    torch.save(
        {
            "state_dict": {key: value.cpu() for key, value in model.state_dict().items()},
            "settings": settings,
            "best_epoch": state.best_epoch,
            "loss_weighting": {key: value.cpu() for key, value in weighting.state_dict().items()},
        },
        checkpoint,
    )
