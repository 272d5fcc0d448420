"""Split the UTKFace labels into train, validation and test."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

import pandas as pd

from facemtl.logs import log_to_file
from facemtl.utkface import split_faces

log_to_file(snakemake.log[0])

settings = snakemake.params.split
labels = pd.read_csv(snakemake.input[0], dtype={"timestamp": str})
split = split_faces(
    labels,
    validation=settings["validation"],
    test=settings["test"],
    seed=settings["seed"],
    stratify=settings["stratify"],
    age_bins=settings["age_bins"],
    subset=settings["subset"],
)
split.to_csv(snakemake.output[0], index=False)
