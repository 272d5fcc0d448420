"""Decode the split's faces into the UTKFace pack (images.npy + labels.csv)."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

import pandas as pd

from facemtl.logs import log_to_file
from facemtl.utkface import pack_faces

log_to_file(snakemake.log[0])

split = pd.read_csv(snakemake.input.split, dtype={"timestamp": str})
pack_faces(snakemake.input.source, split, snakemake.params.image_size, snakemake.output.images, snakemake.threads)
split.to_csv(snakemake.output.labels, index=False)
