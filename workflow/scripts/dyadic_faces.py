"""Snakemake script: crop and label the faces of one dyadic recording, and write its pack, QC row and montages."""

import logging
from pathlib import Path

import pandas as pd

from facemtl.dyadic import QC_COLUMNS, process_recording
from facemtl.packed import write_pack

logging.basicConfig(
    filename=snakemake.log[0],  # noqa: F821 (Snakemake injects the object)
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)

try:
    images, labels, qc = process_recording(
        video=Path(snakemake.input.video),  # noqa: F821
        recording=dict(snakemake.params.recording),  # noqa: F821
        participants=dict(snakemake.params.participants),  # noqa: F821
        settings=dict(snakemake.params.settings),  # noqa: F821
        image_size=int(snakemake.params.image_size),  # noqa: F821
        detector_dir=snakemake.params.detector_dir or None,  # noqa: F821
        montage_dir=Path(snakemake.output.montages),  # noqa: F821
    )
    write_pack(snakemake.output.images, snakemake.output.labels, images, labels)  # noqa: F821
    pd.DataFrame([qc], columns=list(QC_COLUMNS)).to_csv(snakemake.output.qc, index=False)  # noqa: F821
except Exception:
    logging.exception("processing %s failed", snakemake.input.video)  # noqa: F821
    raise
