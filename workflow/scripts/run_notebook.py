"""Execute a notebook with papermill and save it with an HTML copy."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

from facemtl.logs import log_to_file
from facemtl.notebooks import run_notebook

log_to_file(snakemake.log[0])

run_notebook(
    snakemake.input.notebook,
    snakemake.output.notebook,
    snakemake.output.html,
    snakemake.params.parameters,
)
