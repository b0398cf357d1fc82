"""Head registry: adding a head is one module and one line in ``HEADS``."""

from __future__ import annotations

from dualtalk_cli.errors import HeadUnavailable
from dualtalk_cli.heads.base import Head
from dualtalk_cli.registry import Registry

# In order of preference: "auto" takes the first one that can be used here.
HEADS = Registry(
    "head",
    {
        "flame": "dualtalk_cli.heads.flame:FlameHead",
        "builtin": "dualtalk_cli.heads.builtin:BuiltinHead",
    },
    HeadUnavailable,
)


def available_heads() -> dict[str, str | None]:
    """Each head's name, mapped to None when usable or to why it is not."""
    return HEADS.available()


def load_head(name: str = "auto", **options: object) -> Head:
    """The head called ``name``; "auto" picks the best one usable here."""
    return HEADS.load(name, **options)


__all__ = ["Head", "HEADS", "available_heads", "load_head"]
