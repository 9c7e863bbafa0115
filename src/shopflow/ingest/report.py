"""What one ingest run did, for the command line and the orchestrator."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class IngestReport:
    """Counters of one ingest run: records read from the source, written to the lake, dead-lettered."""

    source: str
    read: int = 0
    written: int = 0
    deadlettered: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    retries: int = 0
    watermark: str | None = None

    def summary(self) -> str:
        """One line for humans."""
        parts = [
            f"{self.source}: read {self.read:,}",
            f"wrote {self.written:,} in {len(self.files)} file(s)",
            f"dead-lettered {self.deadlettered:,}",
        ]
        if self.retries:
            parts.append(f"retried {self.retries:,} request(s)")
        if self.watermark:
            parts.append(f"watermark {self.watermark}")
        parts.append(f"{self.seconds:.1f} s")
        return ", ".join(parts)
