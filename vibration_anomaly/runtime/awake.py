"""Wake and sleep of the runtime's engine, with every engine call bounded.

An engine call that overruns (a hung GPU kernel) must not take the node with it: the sleep is queued
behind the call and runs the moment it returns, the runtime reports it and stays recoverable (a later
activate is refused, not an error), and a teardown abandons the stuck thread so a new configure starts
on a fresh one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vibration_anomaly.core.events import ERROR, SLEEP, WAKE
from vibration_anomaly.errors import VibrationAnomalyError

if TYPE_CHECKING:
    from vibration_anomaly.runtime.runtime import DetectorRuntime

ENGINE_TIMEOUT_S = 60.0  # the longest any engine call may take (loading a model); inference: half a period


class EngineBusy(VibrationAnomalyError):
    """The engine thread is still inside a call that overran its bound; try again once it returned."""


def activate(rt: DetectorRuntime, by_supervisor: bool = False) -> float:
    """Wake the engine on its thread; returns the seconds it took.

    Refused (:class:`EngineBusy`, the node answers FAILURE and stays inactive, recoverable) while
    the engine thread is still inside an overrun call: waking behind it would hang this caller too.
    """
    assert rt.detector is not None and rt.worker is not None
    if rt.worker.busy:
        raise EngineBusy(
            f"engine still inside an overrun call ({rt.stuck or 'busy'}); "
            "it sleeps as soon as that call returns"
        )
    rt.activated_at = rt.now()
    wake_s = rt.worker.call(rt.detector.activate)
    rt.read_power("awake")
    rt.active = True
    if by_supervisor:
        rt.emit(WAKE, what="activated by the supervisor", wake_ms=round(wake_s * 1e3, 3))
    return wake_s


def deactivate(rt: DetectorRuntime, by_supervisor: bool = False) -> None:
    """Sleep: synchronize and free; raises if anything is still held.

    If the engine thread is inside a call that overran its bound (a hung kernel), the sleep is
    queued behind that call (it runs the moment the call returns) and reported; the node goes
    inactive and stays recoverable instead of ending in ERROR / finalized.
    """
    assert rt.detector is not None and rt.worker is not None
    rt.active = False
    if rt.worker.busy:
        sleep_when_free(rt, "deactivate")
    else:
        rt.worker.call(rt.detector.deactivate)
    held = () if rt.stuck else rt.detector.residency().awake_resources()
    if by_supervisor:
        awake_s = rt.now() - rt.activated_at if rt.activated_at is not None else 0.0
        rt.emit(SLEEP, awake_s=round(awake_s, 6), held=list(held), what="deactivated by the supervisor")
    rt.activated_at = None
    if held:
        raise RuntimeError(f"engine still holds {', '.join(held)} after sleep")
    rt.read_power("asleep")


def sleep_when_free(rt: DetectorRuntime, why: str) -> None:
    assert rt.detector is not None and rt.worker is not None
    if rt.stuck:
        return
    rt.stuck = f"{why}: engine call overran {rt.worker.timeout_s:g} s"
    detector = rt.detector

    def sleep_then_clear() -> None:
        detector.deactivate()
        rt.stuck = None
        rt.emit(
            SLEEP,
            what="queued sleep ran after the overrun engine call returned",
            held=list(detector.residency().awake_resources()),
        )

    rt.worker.submit(sleep_then_clear)
    rt.emit(ERROR, message=f"{rt.stuck}; sleep queued behind it, the node stays recoverable", what="engine")


def held_resources(rt: DetectorRuntime) -> tuple[str, ...]:
    if rt.detector is None or rt.stuck:
        return ()
    return rt.detector.residency().awake_resources()


def teardown(rt: DetectorRuntime) -> None:
    """Sleep and unload on the engine thread, stop that thread, forget the bundle."""
    rt.active = False
    rt.driver = None
    if rt.detector is not None and rt.worker is not None:
        if rt.worker.busy:
            # Unload when the overrun call returns; a new configure gets a fresh thread and engine.
            rt.worker.submit(rt.detector.cleanup)
            rt.emit(
                ERROR, message="teardown: engine call still running; unload queued behind it", what="engine"
            )
        else:
            rt.worker.call(rt.detector.cleanup, timeout_s=ENGINE_TIMEOUT_S)
    retire_worker(rt)
    rt.monitor = None
    rt.detector = None
    rt.pipeline = None
    rt.bundle = None
    rt.sampler = None
    rt.rejects = None


def retire_worker(rt: DetectorRuntime) -> None:
    if rt.worker is not None:
        if rt.worker.busy:
            rt.worker.abandon()
        else:
            rt.worker.stop()
        rt.worker = None
    rt.stuck = None


def force_sleep(rt: DetectorRuntime) -> None:
    """The duty cycle found the engine still awake after its period: sleep it (engine thread, bounded)."""
    if rt.detector is not None and rt.worker is not None and not rt.detector.residency().asleep:
        rt.active = False
        if rt.worker.busy:
            sleep_when_free(rt, "forced sleep")
        else:
            rt.worker.call(rt.detector.deactivate)
