"""The heads: each turns a speaker's motion into mesh vertices.

Adding one is a module here and a line in ``registry.IMPLEMENTATIONS``.
"""

from dualtalk_cli.errors import HeadUnavailable
from dualtalk_cli.heads.base import Head
from dualtalk_cli.registry import Registry

HEADS = Registry("head", HeadUnavailable)
load_head = HEADS.load  # load_head("builtin"), or with a HeadOptions
available_heads = HEADS.available  # name -> None, or why it cannot be used

__all__ = ["Head", "HEADS", "available_heads", "load_head"]
