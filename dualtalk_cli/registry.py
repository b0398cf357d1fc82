"""Lazy registries: names mapped to classes imported only when used.

Adding an engine or a head is one module and one line in ``IMPLEMENTATIONS``.
"""

from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any, Protocol

from dualtalk_cli.errors import DualtalkError

# Per kind, the implementations in order of preference: "auto" takes the first
# one that can run here.
IMPLEMENTATIONS = {
    "engine": {
        "dualtalk": "dualtalk_cli.engines.dualtalk:DualTalkEngine",
        "procedural": "dualtalk_cli.engines.procedural:ProceduralEngine",
    },
    "head": {
        "flame": "dualtalk_cli.heads.flame:FlameHead",
        "builtin": "dualtalk_cli.heads.builtin:BuiltinHead",
    },
}


class Choice(Protocol):
    """An options object naming an implementation and its settings."""

    @property
    def chosen(self) -> str: ...

    def settings(self) -> dict[str, object]: ...


class Registry:
    """Named implementations in order of preference; "auto" takes the first usable.

    Settings go to the implementation's constructor by name; one it does not take
    is refused, never dropped. A module may define ``unavailable_reason(**settings)
    -> str | None`` to say why its implementation cannot run here (missing
    weights, missing model file).
    """

    def __init__(self, kind: str, error: type[DualtalkError]) -> None:
        self.kind = kind
        self.entries = IMPLEMENTATIONS[kind]  # name -> "module:Class"
        self.error = error

    def implementation(self, name: str) -> type:
        """The class registered as ``name`` (its module is imported now)."""
        if name not in self.entries:
            known = ", ".join(self.entries)
            raise self.error(f"unknown {self.kind} '{name}' (available: {known})")
        module_name, class_name = self.entries[name].split(":")
        return getattr(import_module(module_name), class_name)

    def refused_settings(self, name: str, settings: dict[str, Any]) -> list[str]:
        """The names in ``settings`` that the implementation ``name`` does not take."""
        parameters = inspect.signature(self.implementation(name)).parameters
        return [key for key in settings if key not in parameters]

    def unavailable_reason(self, name: str, **settings: Any) -> str | None:
        """None when ``name`` can run here with ``settings``, else why not."""
        refused = self.refused_settings(name, settings)
        if refused:
            return f"takes no option {', '.join(map(repr, refused))}"
        module = import_module(self.entries[name].split(":")[0])
        check = getattr(module, "unavailable_reason", None)
        return check(**settings) if check else None

    def available(self, **settings: Any) -> dict[str, str | None]:
        """Each name, mapped to None when usable or to the reason it is not."""
        return {
            name: self.unavailable_reason(name, **settings) for name in self.entries
        }

    def resolve(self, name: str = "auto", **settings: Any) -> str:
        """The concrete name "auto" stands for, or ``name`` checked."""
        self._check_known(settings)
        if name == "auto":
            reasons = self.available(**settings)
            usable = [candidate for candidate, why in reasons.items() if why is None]
            if usable:
                return usable[0]
            # Settings that only some implementations take point at those.
            takers = [c for c in self.entries if not self.refused_settings(c, settings)]
            if settings and takers:
                given = ", ".join(map(repr, settings))
                said = "; ".join(f"{taker}: {reasons[taker]}" for taker in takers)
                raise self.error(
                    f"{given} needs the {' or '.join(takers)} {self.kind}, which "
                    f"cannot be used here ({said})"
                )
            said = "; ".join(f"{other}: {why}" for other, why in reasons.items())
            raise self.error(f"no {self.kind} can run here ({said})")
        self.implementation(name)  # an unknown name fails here
        reason = self.unavailable_reason(name, **settings)
        if reason:
            raise self.error(f"{self.kind} '{name}' cannot be used: {reason}")
        return name

    def load(self, name: str | Choice = "auto", **settings: Any) -> Any:
        """An instance of the implementation called ``name`` with ``settings``, or
        of the one an options object chooses, with its settings."""
        if not isinstance(name, str):
            settings = {**name.settings(), **settings}
            name = name.chosen
        return self.implementation(self.resolve(name, **settings))(**settings)

    def passed_over(self, chosen: str, **settings: Any) -> list[tuple[str, str]]:
        """The preferred names "auto" skipped before ``chosen``, with their reasons."""
        skipped = []
        for name in self.entries:
            if name == chosen:
                break
            reason = self.unavailable_reason(name, **settings)
            if reason:
                skipped.append((name, reason))
        return skipped

    def _check_known(self, settings: dict[str, Any]) -> None:
        """A setting that no implementation takes is a misspelling: say so."""
        for key in settings:
            if all(
                key in self.refused_settings(name, {key: 0}) for name in self.entries
            ):
                raise self.error(f"no {self.kind} takes an option {key!r}")
