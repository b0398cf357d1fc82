"""The engines: each turns two audio tracks into two speakers' motion.

Adding one is a module here and a line in ``registry.IMPLEMENTATIONS``.
"""

from dualtalk_cli.engines.base import Engine
from dualtalk_cli.errors import EngineUnavailable
from dualtalk_cli.registry import Registry

ENGINES = Registry("engine", EngineUnavailable)
# load_engine("procedural"), load_engine("dualtalk", weights=...) or with an
# EngineOptions; "auto" picks the best one usable here.
load_engine = ENGINES.load
available_engines = ENGINES.available  # name -> None, or why it cannot run

__all__ = ["Engine", "ENGINES", "available_engines", "load_engine"]
