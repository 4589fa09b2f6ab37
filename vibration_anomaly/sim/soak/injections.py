"""The fault actions: each begins or ends a fault on one robot when its schedule says (``schedule._plan``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vibration_anomaly.sim.soak.faults import OUTAGE_FAULTS
from vibration_anomaly.sim.soak.options import HUNG_CALL_BOUND_S
from vibration_anomaly.sim.soak.robot import _Robot


class _InjectedRobot(_Robot):
    """A soak robot with its fault actions: ``_Robot._do`` calls ``_act_<kind>`` for each scheduled action."""

    def _act_end(self, kind: str) -> None:
        if kind == "hung_engine_call" and self.inline_worker is not None:
            rt = self.rt
            if rt is not None and rt.worker is not None and rt.worker.busy:
                self._schedule(
                    self.true_now() + self.fleet.period_s, "end", kind=kind
                )  # still inside the call
                return
            if (
                rt is self.hang_rt
                and rt.worker is not None
                and rt.worker is not self.inline_worker
                and rt.bundle is not None
            ):
                rt.worker.stop()
                rt.worker = self.inline_worker
            self.inline_worker = None
        for f in [f for f in self.active_faults if f.kind == kind]:
            self.active_faults.remove(f)
            f.t1 = self.true_now()

    def _act_window_fault(self, kind: str, duration: float) -> None:
        t0 = self.true_now()
        self.window_faults.setdefault(kind, []).append((t0, t0 + duration))
        self._fault(kind, t0 + duration)
        self._schedule(t0 + duration + self.fleet.period_s, "end", kind=kind)
        if kind in OUTAGE_FAULTS:
            self.outages.append((t0, t0 + duration + self.fleet.period_s))

    def _defer(self, action: str, want: str, delay: float, **args: Any) -> bool:
        """Re-schedule an action meant for a phase (``sampling`` / ``asleep``) the robot is not in now."""
        drv = self.rt.driver if self.rt is not None else None
        if drv is None or self.due is None:
            return False
        state = drv.state.value
        if (want == "sampling") == (state == "sampling"):
            return False
        self._schedule(self.due - self.offset + delay, action, **args)
        return True

    def _act_clock_jump(self, kind: str, delta: float) -> None:
        want = "sampling" if kind.endswith("sampling") else "asleep"
        if self._defer("clock_jump", want, 2.0 if want == "sampling" else 20.0, kind=kind, delta=delta):
            return
        f = self._fault(kind, self.true_now() + 3600.0, delta_s=round(delta, 3))
        f.details["state_at_jump"] = (
            self.rt.driver.state.value if self.rt is not None and self.rt.driver else "down"
        )
        t = self.true_now()
        self.offset += delta
        self.clock.now = t + self.offset
        self.jump_generation += 1
        if self.rt is not None and self.rt.driver is not None and self.due is not None:
            # The node's steady-time clock watch steps the driver within a second of a jump.
            self.clock.now += 1.0
            was_sampling = self.rt.driver.state.value == "sampling"
            self.due = self.rt.driver.step()
            self._after_step(was_sampling)
        self._schedule(f.t1, "end", kind=kind)

    def _act_wake_without_sleep(self) -> None:
        self.skip_deactivate = True
        self._fault("wake_without_sleep", self.true_now() + 2 * self.fleet.period_s)
        self._schedule(self.true_now() + 3 * self.fleet.period_s, "end", kind="wake_without_sleep")

    def _act_hang(self, duration: float) -> None:
        """One inference hangs for ``duration`` simulated seconds, on a real engine thread with a real bound.

        The fleet runs its engine calls inline (one thread, no hand-offs: fast); for the hang this robot's
        runtime gets a threaded ``EngineWorker`` bounded at ``HUNG_CALL_BOUND_S`` wall seconds, so the
        runtime's own timeout, busy-engine and queued-sleep paths run for real. The hung call returns when
        the robot's simulated clock reaches the hang's end; the inline worker is put back afterwards.
        """
        from vibration_anomaly.runtime.worker import EngineWorker

        if self.rt is None or self.rt.worker is None or self.due is None:
            self._fault("hung_engine_call", self.true_now(), skipped="robot down at the time")
            return
        self.inline_worker, self.hang_rt = self.rt.worker, self.rt
        self.rt.worker = EngineWorker(self.rt.name, HUNG_CALL_BOUND_S, threaded=True)
        self.hang_armed = True
        self.hang_gate.clear()
        f = self._fault("hung_engine_call", self.true_now() + duration, hang_s=duration)

        def before_infer() -> None:
            if self.hang_armed:
                self.hang_armed = False
                self.hang_until = self.true_now() + duration
                if not self.hang_gate.wait(timeout=120.0):
                    f.details["released_by_safety_timeout"] = True

        engine = self.rt.pipeline.engine if self.rt is not None and self.rt.pipeline is not None else None
        if engine is not None:
            engine.soak_before_infer = before_infer
        self.outages.append((self.true_now(), self.true_now() + duration + 2 * self.fleet.period_s))
        self._schedule(self.true_now() + duration + 3 * self.fleet.period_s, "end", kind="hung_engine_call")

    def _act_reconfigure(self, kind: str, bundle: str) -> None:
        """A new bundle arrives during sleep: the supervisor deactivates, cleans up and configures with it."""
        if self._defer("reconfigure", "asleep", 20.0, kind=kind, bundle=bundle):
            return
        if self.rt is None or self.due is None:
            self._fault(kind, self.true_now(), skipped="robot down at the time")
            return
        f = self._fault(kind, self.true_now() + 2 * self.fleet.period_s, bundle=Path(bundle).name)
        self.rt.teardown()
        self.params_base["bundle"] = bundle
        if kind == "bundle_unusable_after_good":
            # Its firmware statement ships with it (they agree), so the bundle passes every check of the loader
            # and fails later, in configure: the case that must not raise the rollback floor.
            self.firmware.write_text(self.fleet.firmware_unusable)
        ok = self.configure(kind)
        f.details["new_bundle_accepted"] = ok
        f.details["refused_as"] = dict(self.refusals)
        if not ok:
            self.sample_health(f)
            # The supervisor goes back to the last good bundle (and its firmware statement).
            self.firmware.write_text(self.fleet.firmware_ok)
            self.params_base["bundle"] = str(self.fleet.good)
            back = self.configure(f"{kind}: back to the good bundle")
            f.details["back_on_good_bundle"] = back
            if not back:
                f.details["robot_blind_from_h"] = round(self.true_now() / 3600, 3)
        self._schedule(f.t1, "end", kind=kind)

    def _act_restart_fault(self, kind: str, duration: float) -> None:
        """Restart into a broken condition (firmware update, corrupt model, full disk) fixed ``duration`` later."""
        if self._defer("restart_fault", "sampling", 2.0, kind=kind, duration=duration):
            return
        f = self._fault(kind, self.true_now() + duration)
        if kind == "firmware_update_disagreement":
            self.firmware.write_text(self.fleet.firmware_bad)
        elif kind == "corrupt_model":
            self.params_base["model"] = str(self.fleet.corrupt_model)
        elif kind == "full_disk":
            blocker = self.dir / "full"
            blocker.write_text("a regular file where the log folder should be: every write fails\n")
            self.params_base["event_log"] = str(blocker / "events.jsonl")
        now = self.true_now()
        self.crash()
        ok = self.configure(f"restart into {kind}")
        f.details["configured"] = ok
        if kind != "full_disk":
            self.outages.append((now, now + duration + self.fleet.period_s))
        else:
            self.outages.append((now, now + self.fleet.period_s))
        self._schedule(now + duration, "fix", kind=kind)

    def _act_fix(self, kind: str) -> None:
        if kind in ("firmware_update_disagreement", "boot_disagreement"):
            self.firmware.write_text(self.fleet.firmware_ok)
        elif kind == "corrupt_model":
            self.params_base["model"] = ""
        elif kind == "full_disk":
            blocker = self.dir / "full"
            blocker.unlink()
            blocker.mkdir()  # space again: the log's next write reopens it
        for f in self.faults:
            if f.kind == kind:
                f.details["fixed_at_h"] = round(self.true_now() / 3600, 3)
        self._schedule(self.true_now() + 2 * self.fleet.period_s, "end", kind=kind)
