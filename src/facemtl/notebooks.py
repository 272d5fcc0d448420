"""Execution of the analysis notebooks with papermill."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def run_notebook(notebook: str | Path, output: str | Path, html: str | Path, parameters: dict[str, Any]) -> None:
    """Execute ``notebook`` with ``parameters`` injected after its ``parameters`` cell, then write an HTML copy.

    The kernel is the Python that runs this function (papermill's ``python3``
    kernel resolves to the current interpreter when ipykernel is installed), so the
    notebook imports the same facemtl as the workflow. A failing cell raises
    papermill's PapermillExecutionError; the partly executed notebook is still
    written to ``output`` for inspection.
    """
    import nbconvert
    import nbformat
    import papermill

    # The kernel is a new process, so it finds this copy of facemtl only through
    # PYTHONPATH when facemtl is not installed (e.g. in a conda env built from envs/).
    package_root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    log.info("executing %s into %s with %s", notebook, output, parameters)
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, kernel_name="python3", cwd=None, log_output=True
    )

    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(str(output), as_version=4))
    Path(html).write_text(body, encoding="utf-8")
    log.info("wrote %s", html)
