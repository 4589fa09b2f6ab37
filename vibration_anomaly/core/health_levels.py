"""Health levels and the one result type of every check (``diagnostic_msgs/DiagnosticStatus`` numbering).

The core speaks ``int`` levels; ``nodes/diagnostics.fill_status`` turns them into the message's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK = 0
WARN = 1
ERROR = 2
STALE = 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


@dataclass(frozen=True)
class Health:
    level: int
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]
