"""Join the per-recording dyadic packs and QC rows into one pack and one QC table."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

from facemtl.dyadic import merge_recordings
from facemtl.logs import log_to_file

log_to_file(snakemake.log[0])

merge_recordings(
    images_paths=list(snakemake.input.images),
    labels_paths=list(snakemake.input.labels),
    qc_paths=list(snakemake.input.qc),
    out_images=snakemake.output.images,
    out_labels=snakemake.output.labels,
    out_qc=snakemake.output.qc,
)
