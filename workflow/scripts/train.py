"""Train one multitask model (Snakemake script; the logic is facemtl.train.train_run)."""

import logging
from pathlib import Path

from facemtl.train import train_run

logging.basicConfig(
    filename=snakemake.log[0],  # noqa: F821 (injected by Snakemake)
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)

try:
    baseline = snakemake.input.get("baseline")  # noqa: F821
    train_run(
        images=Path(snakemake.input.images),  # noqa: F821
        labels=Path(snakemake.input.labels),  # noqa: F821
        checkpoint=Path(snakemake.output.checkpoint),  # noqa: F821
        history=Path(snakemake.output.history),  # noqa: F821
        metrics=Path(snakemake.output.metrics),  # noqa: F821
        settings=dict(snakemake.params.settings),  # noqa: F821
        baseline=Path(baseline) if baseline else None,
        threads=snakemake.threads,  # noqa: F821
    )
except Exception:
    logging.exception("training failed")
    raise
