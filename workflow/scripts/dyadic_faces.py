"""Crop and label the faces of one dyadic recording, and write its pack, QC row and montages."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

from pathlib import Path

import pandas as pd

from facemtl.dyadic import QC_COLUMNS, process_recording
from facemtl.logs import log_to_file
from facemtl.packed import write_pack

log_to_file(snakemake.log[0])

images, labels, qc = process_recording(
    video=Path(snakemake.input.video),
    recording=dict(snakemake.params.recording),
    participants=dict(snakemake.params.participants),
    settings=dict(snakemake.params.settings),
    image_size=int(snakemake.params.image_size),
    detector_dir=snakemake.params.detector_dir or None,
    montage_dir=Path(snakemake.output.montages),
)
write_pack(snakemake.output.images, snakemake.output.labels, images, labels)
pd.DataFrame([qc], columns=list(QC_COLUMNS)).to_csv(snakemake.output.qc, index=False)
