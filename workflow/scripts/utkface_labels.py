"""Parse UTKFace file names into a labels table and a rejects table."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

from facemtl.logs import log_to_file
from facemtl.utkface import read_labels

log_to_file(snakemake.log[0])

labels, rejects = read_labels(snakemake.input[0])
labels.to_csv(snakemake.output.labels, index=False)
rejects.to_csv(snakemake.output.rejects, index=False)
