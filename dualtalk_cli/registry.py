"""A small lazy registry: names mapped to classes imported only when used."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from dualtalk_cli.errors import DualtalkError


class Registry:
    """Named implementations in order of preference; "auto" takes the first usable.

    A module may define ``unavailable_reason(**options) -> str | None`` to say why
    its implementation cannot run here (missing weights, missing model file).
    """

    def __init__(self, kind: str, entries: dict[str, str], error: type[DualtalkError]):
        self.kind = kind
        self.entries = entries  # name -> "module:Class"
        self.error = error

    def unavailable_reason(self, name: str, **options: Any) -> str | None:
        module = import_module(self.entries[name].split(":")[0])
        check = getattr(module, "unavailable_reason", None)
        return check(**options) if check else None

    def available(self, **options: Any) -> dict[str, str | None]:
        """Each name, mapped to None when usable or to the reason it is not."""
        return {name: self.unavailable_reason(name, **options) for name in self.entries}

    def resolve(self, name: str = "auto", **options: Any) -> str:
        """The concrete name "auto" stands for, or ``name`` checked."""
        if name == "auto":
            for candidate in self.entries:
                if self.unavailable_reason(candidate, **options) is None:
                    return candidate
            raise self.error(f"no {self.kind} can run here")
        if name not in self.entries:
            known = ", ".join(self.entries)
            raise self.error(f"unknown {self.kind} '{name}' (available: {known})")
        reason = self.unavailable_reason(name, **options)
        if reason:
            raise self.error(f"{self.kind} '{name}' cannot be used: {reason}")
        return name

    def load(self, name: str = "auto", **options: Any) -> Any:
        """An instance of the implementation called ``name``."""
        module_name, class_name = self.entries[self.resolve(name, **options)].split(":")
        return getattr(import_module(module_name), class_name)(**options)

    def passed_over(self, chosen: str, **options: Any) -> list[tuple[str, str]]:
        """The preferred names "auto" skipped before ``chosen``, with their reasons."""
        skipped = []
        for name in self.entries:
            if name == chosen:
                break
            reason = self.unavailable_reason(name, **options)
            if reason:
                skipped.append((name, reason))
        return skipped
