"""Many conversations in one run: find them, animate each, resume, report.

``clips`` finds the conversations (a folder, a manifest CSV); ``work`` is the
one code path for a clip; ``runners`` decide where clips run (this process, or
worker processes each loading the engine and head once, or actors on a Ray
cluster: ``cluster``); ``report`` turns what
happened into events, a final table and an exit code; ``run`` ties them
together. A clip whose outputs all exist is skipped, so running the same batch
again finishes only what is missing.
"""

from dualtalk_cli.batch.clips import Clip, ManifestError, find_clips, read_manifest
from dualtalk_cli.batch.report import BatchSummary, ClipEvent, format_summary
from dualtalk_cli.batch.run import run_batch
from dualtalk_cli.batch.work import (
    BatchOptions,
    ClipWorker,
    ClusterOptions,
    clip_plan,
    partner_motion_files,
)

__all__ = [
    "BatchOptions",
    "BatchSummary",
    "Clip",
    "ClipEvent",
    "ClipWorker",
    "ClusterOptions",
    "ManifestError",
    "clip_plan",
    "find_clips",
    "format_summary",
    "partner_motion_files",
    "read_manifest",
    "run_batch",
]
