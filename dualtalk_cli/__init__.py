"""dualtalk: two talking, listening 3D heads from a recorded dialogue.

Public names are imported on first use, so ``import dualtalk_cli`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from dualtalk_cli.version import __version__

_EXPORTS = {
    "animate": "dualtalk_cli.animation",
    "compute_motion": "dualtalk_cli.animation",
    "animate_with_partner": "dualtalk_cli.animation",
    "render_video": "dualtalk_cli.animation",
    "export_motion": "dualtalk_cli.animation",
    "MotionFiles": "dualtalk_cli.animation",
    "Animator": "dualtalk_cli.animation",
    "ComputeOptions": "dualtalk_cli.options",
    "OutputOptions": "dualtalk_cli.options",
    "EngineOptions": "dualtalk_cli.options",
    "HeadOptions": "dualtalk_cli.options",
    "find_clips": "dualtalk_cli.batch",
    "run_batch": "dualtalk_cli.batch",
    "BatchOptions": "dualtalk_cli.batch",
    "evaluate": "dualtalk_cli.evaluate",
    "load_engine": "dualtalk_cli.engines",
    "available_engines": "dualtalk_cli.engines",
    "load_head": "dualtalk_cli.heads",
    "available_heads": "dualtalk_cli.heads",
    "Motion": "dualtalk_cli.motion",
    "Conversation": "dualtalk_cli.motion",
    "load_motion": "dualtalk_cli.motion",
    "load_audio": "dualtalk_cli.audio",
    "load_conversation": "dualtalk_cli.audio",
    "Diarization": "dualtalk_cli.diarize",
    "read_rttm": "dualtalk_cli.rttm",
    "format_rttm": "dualtalk_cli.rttm",
    "DualtalkError": "dualtalk_cli.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dualtalk_cli' has no attribute {name!r}")
