"""Train one multitask model (the logic is facemtl.train.train_run)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

from pathlib import Path

from facemtl.logs import log_to_file
from facemtl.train import train_run

log_to_file(snakemake.log[0])

baseline = snakemake.input.get("baseline")
train_run(
    images=Path(snakemake.input.images),
    labels=Path(snakemake.input.labels),
    checkpoint=Path(snakemake.output.checkpoint),
    history=Path(snakemake.output.history),
    metrics=Path(snakemake.output.metrics),
    settings=dict(snakemake.params.settings),
    baseline=Path(baseline) if baseline else None,
    threads=snakemake.threads,
)
