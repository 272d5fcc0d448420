"""Average the metrics JSONs of one dataset over seeds and write the results table as CSV, Markdown and LaTeX."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # facemtl without installing it, e.g. in conda envs

import logging

from facemtl.logs import log_to_file
from facemtl.tables import build_results_table, write_results_table

log_to_file(snakemake.log[0])

table = build_results_table(list(snakemake.input.metrics), level="frame")
write_results_table(table, snakemake.output.csv, snakemake.output.markdown, snakemake.output.latex)
logging.getLogger("results_table").info(
    "wrote the %s results table: %d configurations from %d metrics files",
    snakemake.params.dataset,
    len(table),
    len(snakemake.input.metrics),
)
