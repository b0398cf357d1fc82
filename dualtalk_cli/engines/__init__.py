"""Engine registry: adding an engine is one module and one line in ``ENGINES``."""

from __future__ import annotations

from dualtalk_cli.engines.base import Engine
from dualtalk_cli.errors import EngineUnavailable
from dualtalk_cli.registry import Registry

# In order of preference: "auto" takes the first one that can run here.
ENGINES = Registry(
    "engine",
    {
        "dualtalk": "dualtalk_cli.engines.dualtalk:DualTalkEngine",
        "procedural": "dualtalk_cli.engines.procedural:ProceduralEngine",
    },
    EngineUnavailable,
)


def available_engines() -> dict[str, str | None]:
    """Each engine's name, mapped to None when usable or to why it is not."""
    return ENGINES.available()


def load_engine(name: str = "auto", **options: object) -> Engine:
    """The engine called ``name``; "auto" picks the best one usable here."""
    return ENGINES.load(name, **options)


__all__ = ["Engine", "ENGINES", "available_engines", "load_engine"]
