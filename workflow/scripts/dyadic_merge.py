"""Snakemake script: join the per-recording dyadic packs and QC rows into one pack and one QC table."""

import logging

from facemtl.dyadic import merge_recordings

logging.basicConfig(
    filename=snakemake.log[0],  # noqa: F821 (Snakemake injects the object)
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)

try:
    merge_recordings(
        images_paths=list(snakemake.input.images),  # noqa: F821
        labels_paths=list(snakemake.input.labels),  # noqa: F821
        qc_paths=list(snakemake.input.qc),  # noqa: F821
        out_images=snakemake.output.images,  # noqa: F821
        out_labels=snakemake.output.labels,  # noqa: F821
        out_qc=snakemake.output.qc,  # noqa: F821
    )
except Exception:
    logging.exception("merging dyadic packs failed")
    raise
