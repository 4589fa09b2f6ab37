"""The one Engine protocol every inference backend implements.

Its states mirror the detector's lifecycle so that power behaviour is a
property of the type, not of caller discipline::

    UNLOADED --load--> LOADED --wake--> AWAKE --sleep--> LOADED --unload--> UNLOADED

``residency()`` reports exactly what the backend holds, so tests (and the
diagnostics node) can check that a sleeping backend holds nothing expensive.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


class EngineState(enum.Enum):
    UNLOADED = "unloaded"
    LOADED = "loaded"
    AWAKE = "awake"


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a dynamic axis) and dtype of one model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class Residency:
    """What a backend holds right now.

    ``held`` names each resource (``"session"``, ``"context"``, ``"stream"``,
    ``"device_buffer:features"`` ...). ``device_bytes`` counts accelerator
    memory we allocated; ``host_bytes`` the host memory for the model itself.
    A sleeping backend must report ``awake_resources() == ()``.
    """

    backend: str
    state: EngineState
    held: tuple[str, ...] = ()
    device_bytes: int = 0
    host_bytes: int = 0
    details: dict[str, str] = field(default_factory=dict)

    @property
    def asleep(self) -> bool:
        """True when nothing that costs power while idle is held."""
        return self.state is not EngineState.AWAKE and self.device_bytes == 0 and not self.awake_resources()

    def awake_resources(self) -> tuple[str, ...]:
        """Resources that only an awake engine may hold (sessions, contexts, streams, buffers)."""
        return tuple(h for h in self.held if not h.startswith("model"))


@runtime_checkable
class Engine(Protocol):
    """An inference backend with explicit load / wake / infer / sleep / unload."""

    name: str

    @property
    def state(self) -> EngineState: ...

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    def load(self, model_path: Path) -> None:
        """Read and validate the model; allocate nothing that draws power while idle."""

    def wake(self) -> None:
        """Create what inference needs (session / context, buffers, stream)."""

    def infer(self, features: np.ndarray) -> np.ndarray:
        """Run one batch synchronously; return the model's first output."""

    def sleep(self) -> None:
        """Synchronize and free everything wake created. Idempotent."""

    def unload(self) -> None:
        """Drop the model. Idempotent; sleeps first if needed."""

    def residency(self) -> Residency: ...
