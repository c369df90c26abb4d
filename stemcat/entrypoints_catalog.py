"""Deployment entry points of the catalog's flows (analysis, export), filled from the worker's environment.

Apart from stemcat/entrypoints.py so that loading a separation flow run does not import these
flows' audio and dataset stacks (about a second per flow run).
"""

from __future__ import annotations

from stemcat.entrypoints import from_environment
from stemcat.flows import analyze, export

analyze_catalog = from_environment(analyze.analyze_catalog)
export_dataset = from_environment(export.export_dataset)
