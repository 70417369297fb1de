"""The code location: everything under ``defs/`` is loaded, as Dagster's ``dg`` tooling expects."""

from pathlib import Path

import dagster as dg

import trace_summaries.defs

_PROJECT_ROOT = Path(__file__).parent.parent

if (_PROJECT_ROOT / "pyproject.toml").exists():
    defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
else:
    # Installed from a wheel (a container image): there is no pyproject.toml to find the project by, so
    # load the same folder by module.
    defs = dg.load_defs(trace_summaries.defs)
