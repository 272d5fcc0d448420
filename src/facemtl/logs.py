"""Logging setup shared by the workflow scripts."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_file(path: str | Path) -> None:
    """Send logging records and everything written to stderr (tracebacks, warnings) to ``path``.

    Snakemake prints the rule's log file when a job fails, so nothing a failed
    job wrote is lost.
    """
    stream = open(path, "w", buffering=1)
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format=FORMAT, force=True)
    logging.captureWarnings(True)
