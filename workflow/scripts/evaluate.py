"""Evaluate one checkpoint on one pack and write its predictions CSV and metrics JSON."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

from pathlib import Path

from facemtl.evaluate import evaluate_run
from facemtl.logs import log_to_file

log_to_file(snakemake.log[0])

evaluate_run(
    checkpoint=Path(snakemake.input.checkpoint),
    images=Path(snakemake.input.images),
    labels=Path(snakemake.input.labels),
    predictions_path=Path(snakemake.output.predictions),
    metrics_path=Path(snakemake.output.metrics),
    dataset=snakemake.params.dataset,
    split=snakemake.params.split,
    batch_size=int(snakemake.params.batch_size),
    device=snakemake.params.device,
    threads=snakemake.threads,
)
