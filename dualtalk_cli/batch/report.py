"""Reporting a batch: one event per clip, the summary, the final table, exit codes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from dualtalk_cli.errors import valid_utf8

# Exit codes of a batch, for scripts (2, the batch could not start, is any
# DualtalkError's).
EXIT_OK = 0
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class ClipEvent:
    """Something that happened to one clip: start, done, skipped or failed."""

    event: str
    clip: str
    index: int  # 1-based position in the batch
    total: int
    seconds: float | None = None  # wall time of the clip's work
    outputs: tuple[str, ...] = ()
    message: str | None = None  # why it was skipped or failed
    notes: tuple[str, ...] = ()

    def to_json(self) -> str:
        """One JSON line of valid UTF-8; empty fields are left out."""
        fields = {k: v for k, v in asdict(self).items() if v is not None and v != ()}
        for key, value in fields.items():
            if isinstance(value, str):
                fields[key] = valid_utf8(value)
            elif isinstance(value, tuple):  # a list in JSON
                fields[key] = [valid_utf8(item) for item in value]
        return json.dumps(fields, ensure_ascii=False)


@dataclass
class BatchSummary:
    """How a batch ended."""

    total: int
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip, why)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def finished(self) -> int:
        """Clips done, skipped or failed so far."""
        return len(self.done) + len(self.skipped) + len(self.failed)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def record(self, event: ClipEvent) -> None:
        if event.event == "done":
            self.done.append(event.clip)
        elif event.event == "skipped":
            self.skipped.append(event.clip)
        elif event.event == "failed":
            self.failed.append((event.clip, event.message or "failed"))

    def to_json(self) -> str:
        return json.dumps(
            {
                "event": "summary",
                "total": self.total,
                "done": len(self.done),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
                "interrupted": self.interrupted,
                "seconds": round(self.seconds, 3),
                "exit_code": self.exit_code,
            }
        )


def format_summary(summary: BatchSummary) -> list[str]:
    """The final table: counts, then each failed clip with its reason."""
    lines = [
        f"{summary.total} conversations in {summary.seconds:.1f} s"
        + (
            " (interrupted: run the same command again to finish)"
            if summary.interrupted
            else ""
        ),
        f"  done     {len(summary.done):>5}",
        f"  skipped  {len(summary.skipped):>5}",
        f"  failed   {len(summary.failed):>5}",
    ]
    if summary.interrupted:
        lines.append(f"  not run  {summary.total - summary.finished:>5}")
    lines += [f"  failed: {clip}: {why}" for clip, why in summary.failed]
    return lines
