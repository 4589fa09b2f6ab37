"""What one wake of a TensorRTEngine holds, and its teardown in dependency order."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vibration_anomaly.engine.tensorrt.cuda import CudaApi

log = logging.getLogger(__name__)


@dataclass
class _Awake:
    ctx: Any
    runtime: Any = None
    engine: Any = None
    exec_ctx: Any = None
    stream: Any = None
    dev_bufs: dict[str, Any] | None = None
    host_bufs: dict[str, np.ndarray] | None = None
    dev_bytes: int = 0
    scratch_bytes: int = 0

    def held(self) -> list[str]:
        """What is still held, as ``residency().held`` names it."""
        names: list[str] = []
        if self.ctx is not None:
            names.append("context")
        if self.runtime is not None:
            names.append("runtime")
        if self.engine is not None:
            names.append("engine")
        if self.exec_ctx is not None:
            names.append("execution_context")
        names += [f"device_buffer:{n}" for n in self.dev_bufs or {}]
        names += [f"pinned_buffer:{n}" for n in self.host_bufs or {}]
        if self.stream is not None:
            names.append("stream")
        return names


def teardown(aw: _Awake, cuda: CudaApi, engine_name: str, current: bool) -> list[str]:
    """Free in dependency order, then destroy ``aw.ctx`` while it is current on the calling thread.

    ``sleep`` can run on another thread than ``wake`` (the watchdog's, or
    the main thread at exit). pycuda frees buffers only in a context it can
    make current, and its ``Context.detach`` on a context that is not
    current here and was made by another thread silently leaks it. So the
    context is pushed on this thread (unless ``current``: wake's own failure
    path), everything is freed inside it, and it is detached while still
    current, which destroys it and pops it. A failing step does not stop the
    later ones; the failures are returned.
    """
    errors: list[str] = []

    def step(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # keep freeing; report at the end
            errors.append(f"{what}: {exc}")
            log.error("%s: teardown %s failed: %s", engine_name, what, exc)

    if not current:
        step("push context", functools.partial(cuda.push, aw.ctx))
    if aw.stream is not None:
        step("synchronize", functools.partial(cuda.synchronize, aw.stream))

    def free_each(kind: str, bufs: dict[str, Any] | None, free: Callable[[Any], None]) -> None:
        # In its own scope so no loop variable keeps a buffer alive past its context.
        for name, obj in (bufs or {}).items():
            step(f"free {kind} {name}", functools.partial(free, obj))

    aw.exec_ctx = None
    free_each("device buffer", aw.dev_bufs, cuda.free)
    aw.dev_bufs = {}
    free_each("pinned buffer", aw.host_bufs, cuda.free_pinned)
    aw.host_bufs = {}
    aw.engine = None
    aw.runtime = None
    if aw.stream is not None:
        # No closure or local may outlive this block: pycuda destroys the
        # stream when its last reference goes, which must happen while the
        # context is still alive and current.
        stream, aw.stream = aw.stream, None
        try:
            cuda.destroy_stream(stream)
        except Exception as exc:
            errors.append(f"destroy stream: {exc}")
            log.error("%s: teardown destroy stream failed: %s", engine_name, exc)
        finally:
            del stream
    ctx, aw.ctx = aw.ctx, None
    step("destroy context", functools.partial(cuda.destroy_context, ctx))
    del ctx
    return errors
