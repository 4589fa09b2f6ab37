"""TensorRT backend on CPU: the real missing/no-GPU paths, and tiny fakes only at the GPU edge.

``FakeCuda`` stands in for the CUDA driver (pycuda) and records every call;
``fake_trt`` stands in for TensorRT's runtime/engine objects, which cannot be
created without a GPU. Both implement only what the backend calls.
"""

from __future__ import annotations

import sys
import threading
import time
import types
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from trt_testkit import hide_tensorrt, patch_gpu_edge

from vibration_anomaly.engine.base import Engine, EngineState, TensorSpec
from vibration_anomaly.engine.tensorrt import (
    DEFAULT_MAX_IDLE_AWAKE_S,
    CorruptEngineError,
    CudaProbe,
    EngineMismatchError,
    NoCudaGpuError,
    TensorRTEngine,
    TensorRTNotInstalledError,
    WatchdogDiagnostic,
    WatchdogForcedSleep,
    import_tensorrt,
    read_engine_file,
)
from vibration_anomaly.errors import EngineError, EngineStateError, InputError

FEATURES = TensorSpec("features", (None, 4, 3), "float32")
SCORE = TensorSpec("score", (None,), "float32")
PLAN_MAGIC = b"FAKEPLAN"


class FakeContext:
    """A CUDA context as pycuda sees it: made on one thread, current on any thread it is pushed on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner = threading.get_ident()
        self.valid = True  # pycuda's m_valid: False once detach() ran, whether or not it destroyed anything
        self.destroyed = False
        self.streams: list[weakref.ref[FakeStream]] = []

    def __repr__(self) -> str:
        return self.name


class FakeStream:
    """A pycuda Stream: no explicit free; cuStreamDestroy runs when the last reference goes."""

    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx


class FakeCuda:
    """The CUDA driver as pycuda exposes it, recording every call; device memory is numpy bytes.

    Context rules follow pycuda's ``cuda.hpp``: each thread has its own context
    stack; ``destroy_context`` is ``Context.detach()``, which destroys (and
    pops) the context when it is current on the calling thread, or when the
    calling thread created it, and otherwise only marks it invalid and leaks
    it ("leaked out-of-thread context"). Freeing memory needs its context to
    be activatable on the calling thread, else pycuda silently skips the free.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.mem: dict[int, np.ndarray] = {}
        self.mem_ctx: dict[int, FakeContext] = {}
        self._stacks: dict[int, list[FakeContext]] = {}
        self._next = 0x1000
        self.contexts: list[FakeContext] = []
        self.leaked: list[FakeContext] = []
        self.warnings: list[str] = []
        self.destroyed_on: list[str] = []  # thread names

    # ----- what tests look at
    @property
    def current(self) -> list[FakeContext]:
        """The calling thread's context stack."""
        return self._stacks.setdefault(threading.get_ident(), [])

    @property
    def live_contexts(self) -> int:
        return sum(not c.destroyed for c in self.contexts)

    def _activatable(self, ctx: FakeContext) -> bool:
        # pycuda's scoped_context_activation: current here, or pushable because this thread made it.
        return ctx.valid and (
            (bool(self.current) and self.current[-1] is ctx) or ctx.owner == threading.get_ident()
        )

    def _top(self, what: str) -> FakeContext:
        if not self.current:
            raise RuntimeError(f"{what}: no currently active context? (pycuda explicit_context_dependent)")
        return self.current[-1]

    # ----- CudaApi
    def probe(self) -> CudaProbe:
        return CudaProbe(True, "fake GPU", 1, 12040)

    def create_context(self, device: int) -> FakeContext:
        self._next += 1
        ctx = FakeContext(f"ctx{self._next}")
        self.calls.append("create_context")
        self.contexts.append(ctx)
        self.current.append(ctx)
        return ctx

    def push(self, ctx: FakeContext) -> None:
        if not ctx.valid:
            raise RuntimeError(f"cannot push invalid context {ctx}")
        self.calls.append("push")
        self.current.append(ctx)

    def pop(self) -> None:
        if not self.current:
            raise RuntimeError("context::pop: cannot pop non-current context")
        self.calls.append("pop")
        self.current.pop()

    def destroy_context(self, ctx: FakeContext) -> None:
        if not ctx.valid:
            raise RuntimeError("context::detach: cannot detach from invalid context")
        self.calls.append("destroy_context")
        stack = self.current
        if (stack and stack[-1] is ctx) or ctx.owner == threading.get_ident():
            if any(ref() is not None for ref in ctx.streams):
                self.warnings.append(
                    f"{ctx} destroyed with a live stream: its release will find a dead context"
                )
            ctx.destroyed = True
            self.destroyed_on.append(threading.current_thread().name)
            for ptr in [p for p, c in self.mem_ctx.items() if c is ctx]:  # the driver frees what was left
                del self.mem[ptr], self.mem_ctx[ptr]
        else:
            self.leaked.append(ctx)  # pycuda: "leaked out-of-thread context", silently
        ctx.valid = False
        while ctx in stack:  # pycuda drops invalid contexts off this thread's stack
            stack.remove(ctx)

    def device_name(self, device: int) -> str:
        return "Fake GPU"

    def create_stream(self) -> FakeStream:
        stream = FakeStream(self._top("Stream()"))
        stream.ctx.streams.append(weakref.ref(stream))
        self.calls.append("create_stream")
        return stream

    def stream_handle(self, stream: Any) -> int:
        return 77

    def synchronize(self, stream: Any) -> None:
        self.calls.append("synchronize")

    def destroy_stream(self, stream: Any) -> None:
        self.calls.append("destroy_stream")

    def alloc(self, nbytes: int) -> int:
        ctx = self._top("mem_alloc")
        self._next += 0x100
        self.mem[self._next] = np.zeros(nbytes, np.uint8)
        self.mem_ctx[self._next] = ctx
        self.calls.append("alloc")
        return self._next

    def device_ptr(self, buf: int) -> int:
        return buf

    def free(self, buf: int) -> None:
        self.calls.append("free")
        if self._activatable(self.mem_ctx[buf]):
            del self.mem[buf], self.mem_ctx[buf]
        # else: pycuda swallows cannot_activate_out_of_thread_context and frees nothing

    def alloc_pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        self.calls.append("alloc_pinned")
        return np.zeros(shape, dtype)

    def free_pinned(self, arr: np.ndarray) -> None:
        self.calls.append("free_pinned")

    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.calls.append("htod")
        self.mem[dst][: src.nbytes] = src.view(np.uint8).reshape(-1)

    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self.calls.append("dtoh")
        dst.view(np.uint8).reshape(-1)[:] = self.mem[src][: dst.nbytes]


def fake_trt(cuda: FakeCuda, tensors: dict[str, tuple[str, tuple[int, ...]]], max_batch: int = 8) -> Any:
    """A TensorRT-shaped module whose engine computes score = mean(features) through FakeCuda's memory."""

    class Severity(int):
        pass

    class ILogger:
        Severity = type("S", (), {"ERROR": 1, "WARNING": 2})

        def __init__(self) -> None:
            pass

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class ExecCtx:
        def __init__(self) -> None:
            self.addr: dict[str, int] = {}
            self.shape: dict[str, tuple[int, ...]] = {}

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = ptr
            return True

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            self.shape[name] = tuple(shape)
            return 1 <= shape[0] <= max_batch

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (self.shape["features"][0],)

        def execute_async_v3(self, stream_handle: int) -> bool:
            cuda.calls.append("execute")
            b, t, f = self.shape["features"]
            x = cuda.mem[self.addr["features"]].view(np.float32)[: b * t * f].reshape(b, t, f)
            cuda.mem[self.addr["score"]].view(np.float32)[:b] = x.reshape(b, -1).mean(1)
            return True

    class Engine:
        num_io_tensors = len(tensors)
        device_memory_size = 4096

        def get_tensor_name(self, i: int) -> str:
            return list(tensors)[i]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tensors[name][1]

        def get_tensor_dtype(self, name: str) -> str:
            return "float32"

        def get_tensor_mode(self, name: str) -> str:
            return tensors[name][0]

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
            shp = tensors[name][1]
            return [(1, *shp[1:]), (1, *shp[1:]), (max_batch, *shp[1:])]

        def create_execution_context(self) -> ExecCtx:
            cuda.calls.append("create_execution_context")
            return ExecCtx()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger
            cuda.calls.append("runtime")

        def deserialize_cuda_engine(self, blob: bytes) -> Engine | None:
            if not blob.startswith(PLAN_MAGIC):
                self.logger.log(
                    1, "Serialization assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed."
                )
                return None
            return Engine()

    mod = type(sys)("fake_tensorrt")
    mod.ILogger, mod.Runtime, mod.TensorIOMode = ILogger, Runtime, TensorIOMode
    mod.nptype = lambda dt: np.float32
    mod.__version__ = "10.fake"
    return mod


CONTRACT = {"features": ("INPUT", (-1, 4, 3)), "score": ("OUTPUT", (-1,))}


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    p = tmp_path / "model.engine"
    p.write_bytes(PLAN_MAGIC + bytes(range(256)) * 8)
    return p


def make(cuda: FakeCuda, tensors: dict[str, Any] = CONTRACT, **kw: Any) -> TensorRTEngine:
    kw.setdefault("watchdog_thread", False)
    return TensorRTEngine((FEATURES,), (SCORE,), cuda=cuda, trt_module=fake_trt(cuda, tensors), **kw)


# ----------------------------------------------------------------- the real environment here


def test_tensorrt_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, plan: Path) -> None:
    hide_tensorrt(monkeypatch)
    with pytest.raises(TensorRTNotInstalledError, match="TensorRT is not installed.*pip install tensorrt"):
        import_tensorrt("auto")
    with pytest.raises(TensorRTNotInstalledError):
        TensorRTEngine((FEATURES,), (SCORE,)).load(plan)


def test_stub_only_tensorrt_package_counts_as_missing() -> None:
    # tensorrt-stubs installs an importable `tensorrt` folder with only .pyi files.
    pytest.importorskip("tensorrt_stubs")
    with pytest.raises(TensorRTNotInstalledError, match="only type stubs"):
        import_tensorrt("full")


def test_no_gpu_with_the_real_lean_runtime(plan: Path) -> None:
    trt, flavour = pytest.importorskip("tensorrt_lean"), "lean"
    assert import_tensorrt("lean")[1] == flavour and trt.Runtime is not None
    e = TensorRTEngine((FEATURES,), (SCORE,), runtime="lean")
    try:
        e.load(plan)
    except NoCudaGpuError as exc:
        assert "no CUDA GPU" in str(exc)
        assert e.state is EngineState.UNLOADED and e.residency().held == ()
    else:  # a machine with a GPU would reach deserialization instead
        pytest.fail("a fake plan cannot load on a real GPU either")


# ----------------------------------------------------------------- plan-file validation (no GPU touched)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "too small"),
        (b"\x01\x02" * 100, "too small"),
        (b"\x00" * 4096, "zeros only"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12345\n", "Git LFS"),
        (b'{"not": "an engine"}' * 100, "is text"),
        (b"\x08\x08\x3a" + bytes(4096), "ONNX model"),
    ],
)
def test_corrupt_engine_files_refused_before_any_gpu_call(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "bad.engine"
    p.write_bytes(content)
    cuda = FakeCuda()
    with pytest.raises(CorruptEngineError, match=match):
        make(cuda).load(p)
    assert cuda.calls == []


def test_real_onnx_model_given_as_engine(tiny_onnx_model: Path) -> None:
    with pytest.raises(CorruptEngineError, match="ONNX model"):
        read_engine_file(tiny_onnx_model)


def test_garbage_plan_maps_deserialize_failure_and_frees_the_context(tmp_path: Path) -> None:
    p = tmp_path / "garbage.engine"
    p.write_bytes(bytes(range(256)) * 16)
    cuda = FakeCuda()
    with pytest.raises(CorruptEngineError, match="could not deserialize.*magicTag.*rebuild"):
        make(cuda).load(p)
    assert cuda.live_contexts == 0 and cuda.current == []


# ----------------------------------------------------------------- I/O contract


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        (
            {"input": ("INPUT", (-1, 4, 3)), "score": ("OUTPUT", (-1,))},
            r"names differ.*input\[None, 4, 3\].*features",
        ),
        (
            {"features": ("INPUT", (-1, 8, 3)), "score": ("OUTPUT", (-1,))},
            r"features: shape \[None, 8, 3\] vs \[None, 4, 3\]",
        ),
        (
            {"features": ("INPUT", (-1, 4, 3)), "logits": ("OUTPUT", (-1, 2))},
            "outputs do not match.*logits.*score",
        ),
    ],
)
def test_engine_with_other_names_or_shapes_is_refused(
    plan: Path, tensors: dict[str, Any], match: str
) -> None:
    cuda = FakeCuda()
    e = make(cuda, tensors)
    with pytest.raises(EngineMismatchError, match=match):
        e.load(plan)
    assert e.state is EngineState.UNLOADED and cuda.live_contexts == 0


# ----------------------------------------------------------------- lifecycle, order, residency


def test_lifecycle_infer_synchronizes_and_sleep_frees_in_order(plan: Path) -> None:
    cuda = FakeCuda()
    e = make(cuda)
    assert isinstance(e, Engine)
    e.load(plan)
    r = e.residency()
    assert r.state is EngineState.LOADED and r.held == ("model_plan",) and r.asleep
    assert cuda.live_contexts == 0  # load's validation context is gone

    e.wake()
    r = e.residency()
    assert not r.asleep and r.device_bytes > 0
    assert {"context", "engine", "execution_context", "stream", "device_buffer:features"} <= set(r.held)

    cuda.calls.clear()
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    np.testing.assert_allclose(e.infer(x), x.reshape(2, -1).mean(1), rtol=1e-6)
    assert cuda.calls == ["push", "htod", "execute", "dtoh", "synchronize", "pop"]

    cuda.calls.clear()
    e.sleep()
    assert cuda.calls == [
        "push",
        "synchronize",
        "free",
        "free",
        "free_pinned",
        "free_pinned",
        "destroy_stream",
        "destroy_context",
    ]
    r = e.residency()
    assert r.asleep and r.awake_resources() == () and r.device_bytes == 0
    assert cuda.live_contexts == 0 and cuda.mem == {} and cuda.current == []
    assert cuda.leaked == [] and cuda.warnings == []  # the stream went before its context
    e.sleep()  # idempotent
    e.wake()
    e.unload()
    assert e.state is EngineState.UNLOADED and e.residency().held == () and cuda.live_contexts == 0


def test_wrong_state_and_bad_features(plan: Path) -> None:
    cuda = FakeCuda()
    e = make(cuda)
    with pytest.raises(EngineStateError, match="before load"):
        e.wake()
    e.load(plan)
    with pytest.raises(EngineStateError, match="wake"):
        e.infer(np.zeros((1, 4, 3), np.float32))
    e.wake()
    with pytest.raises(InputError, match="shape"):
        e.infer(np.zeros((1, 5, 3), np.float32))
    with pytest.raises(InputError, match="batch"):
        e.infer(np.zeros((9, 4, 3), np.float32))
    with pytest.raises(InputError, match="NaN"):
        e.infer(np.full((1, 4, 3), np.nan, np.float32))
    assert e.infer(np.ones((1, 4, 3))).tolist() == [1.0]  # float64 accepted, still usable
    e.unload()


def test_failure_inside_wake_frees_what_was_made(plan: Path) -> None:
    cuda = FakeCuda()
    e = make(cuda)
    e.load(plan)

    def boom(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        raise MemoryError("pinned allocation failed")

    cuda.alloc_pinned = boom  # type: ignore[method-assign]
    with pytest.raises(MemoryError):
        e.wake()
    assert e.state is EngineState.LOADED and e.residency().asleep
    assert cuda.live_contexts == 0 and cuda.mem == {} and cuda.current == []


# ----------------------------------------------------------------- watchdog


def test_watchdog_forces_sleep_and_reports(plan: Path) -> None:
    now = [100.0]
    seen: list[WatchdogDiagnostic] = []
    cuda = FakeCuda()
    e = make(cuda, max_idle_awake_s=10.0, clock=lambda: now[0], on_diagnostic=seen.append)
    e.load(plan)
    e.wake()
    now[0] += 5
    e.infer(np.ones((1, 4, 3), np.float32))  # activity resets the idle clock
    now[0] += 9
    assert not e.check_watchdog() and e.state is EngineState.AWAKE
    now[0] += 2
    assert e.check_watchdog()
    assert e.state is EngineState.LOADED and e.residency().asleep and cuda.live_contexts == 0
    assert len(seen) == 1 and seen[0].inferences_since_wake == 1 and seen[0].idle_for_s == pytest.approx(11)
    assert "forced sleep" in e.residency().details["watchdog"]
    with pytest.raises(WatchdogForcedSleep, match="without sleep"):
        e.infer(np.ones((1, 4, 3), np.float32))
    e.wake()  # a new wake clears the diagnostic
    assert e.last_watchdog is None
    e.unload()


def test_watchdog_thread_forces_sleep_and_really_frees_the_context(plan: Path) -> None:
    # wake() runs here; the forced sleep runs on the watchdog's own thread, where
    # pycuda would leak a context that is not current there.
    fired = threading.Event()
    cuda = FakeCuda()
    e = make(cuda, max_idle_awake_s=0.05, watchdog_thread=True, on_diagnostic=lambda d: fired.set())
    e.load(plan)
    cuda.destroyed_on.clear()  # load's own short-lived context
    e.wake()
    assert cuda.current == []  # wake left nothing current on the waking thread
    assert fired.wait(5.0)
    deadline = time.monotonic() + 2
    while e.state is EngineState.AWAKE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert e.state is EngineState.LOADED
    assert cuda.destroyed_on == ["trt-awake-watchdog"]
    assert cuda.leaked == [] and cuda.live_contexts == 0 and cuda.mem == {} and cuda.warnings == []
    r = e.residency()
    assert r.held == ("model_plan",) and r.asleep and "last_sleep_errors" not in r.details
    e.unload()


def test_exit_sleep_from_another_thread_than_wake(plan: Path) -> None:
    from vibration_anomaly.engine.tensorrt import sleep_all_awake_engines

    cuda = FakeCuda()
    e = make(cuda)
    e.load(plan)
    cuda.destroyed_on.clear()  # load's own short-lived context
    worker = threading.Thread(target=e.wake, name="engine-worker")
    worker.start()
    worker.join()
    assert e.state is EngineState.AWAKE and cuda.live_contexts == 1
    sleep_all_awake_engines()  # what atexit runs, on the main thread
    assert cuda.destroyed_on == [threading.current_thread().name]
    assert cuda.leaked == [] and cuda.live_contexts == 0 and cuda.mem == {} and cuda.current == []
    assert e.residency().held == ("model_plan",)


def test_a_failing_teardown_step_is_reported_not_hidden(plan: Path) -> None:
    cuda = FakeCuda()
    e = make(cuda)
    e.load(plan)
    e.wake()

    def broken_sync(stream: Any) -> None:
        raise RuntimeError("cuStreamSynchronize: an illegal memory access was encountered")

    cuda.synchronize = broken_sync  # type: ignore[method-assign]
    with pytest.raises(EngineError, match="freed everything it could.*illegal memory access"):
        e.sleep()
    assert cuda.live_contexts == 0 and cuda.leaked == [] and cuda.mem == {}  # the later steps still ran
    assert "illegal memory access" in e.residency().details["last_sleep_errors"]


def test_stale_watchdog_does_not_sleep_a_later_wake(plan: Path) -> None:
    now = [0.0]
    cuda = FakeCuda()
    e = make(cuda, max_idle_awake_s=1.0, clock=lambda: now[0])
    e.load(plan)
    e.wake()
    stale = e._watchdog
    e.sleep()
    e.wake()
    now[0] += 5
    assert stale is not None and stale.poll() is False  # stopped by sleep(); it never fires
    assert e.state is EngineState.AWAKE
    e.unload()


@pytest.mark.parametrize("bound", [0, -1.0, float("nan"), float("inf"), "soon"])
def test_watchdog_bound_must_be_a_positive_number(bound: Any) -> None:
    with pytest.raises(InputError, match="max_idle_awake_s.*> 0"):
        TensorRTEngine((FEATURES,), (SCORE,), max_idle_awake_s=bound)


# ----------------------------------------------------------------- pycuda errors (pycuda is the GPU edge)


class FakeDriverError(Exception):
    """Stands in for ``pycuda._driver.Error``."""


class FakeDriverMemoryError(FakeDriverError, MemoryError):
    """Stands in for ``pycuda._driver.MemoryError`` (a subclass of both, as in pycuda's wrapper)."""


def install_fake_pycuda(monkeypatch: pytest.MonkeyPatch, fail: dict[str, Exception]) -> None:
    """A ``pycuda.driver`` whose calls named in ``fail`` raise, the way pycuda reports CUresults."""
    drv = types.ModuleType("pycuda.driver")

    def maybe_fail(what: str) -> None:
        if what in fail:
            raise fail[what]

    class Device:
        def __init__(self, ordinal: int) -> None:
            maybe_fail("Device")

        @staticmethod
        def count() -> int:
            return 1

        def name(self) -> str:
            maybe_fail("name")
            return "Fake GPU"

        def make_context(self, flags: int = 0) -> Any:
            maybe_fail("make_context")
            return object()

    def mem_alloc(nbytes: int) -> Any:
        maybe_fail("mem_alloc")
        return object()

    drv.Error = FakeDriverError  # type: ignore[attr-defined]
    drv.init = lambda flags=0: None  # type: ignore[attr-defined]
    drv.Device = Device  # type: ignore[attr-defined]
    drv.mem_alloc = mem_alloc  # type: ignore[attr-defined]
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)


def test_pycuda_errors_become_engine_errors_that_say_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    from vibration_anomaly.engine.tensorrt import CudaDriverError, PyCudaApi

    oom = FakeDriverMemoryError("cuCtxCreate failed: out of memory")
    install_fake_pycuda(
        monkeypatch,
        {
            "make_context": oom,
            "name": FakeDriverError("cuDeviceGetName failed: unknown error"),
            "mem_alloc": FakeDriverMemoryError("cuMemAlloc failed: out of memory"),
        },
    )
    api = PyCudaApi()
    with pytest.raises(
        NoCudaGpuError, match="GPU #0.*creating a context failed.*exclusive-process.*out of memory"
    ) as ei:
        api.create_context(0)
    assert ei.value.__cause__ is oom
    with pytest.raises(NoCudaGpuError, match="GPU #0: reading its name failed.*unknown error"):
        api.device_name(0)
    with pytest.raises(
        CudaDriverError, match="allocating 64 bytes of device memory failed.*out of memory"
    ) as ei2:
        api.alloc(64)
    assert not isinstance(ei2.value, MemoryError)


def test_load_with_a_context_that_cannot_be_made_is_a_no_gpu_error(
    monkeypatch: pytest.MonkeyPatch, plan: Path
) -> None:
    install_fake_pycuda(monkeypatch, {"make_context": FakeDriverError("cuCtxCreate failed: invalid device")})
    patch_gpu_edge(monkeypatch, probe_cuda_driver=lambda: CudaProbe(True, "fake GPU", 1, 12040))
    e = TensorRTEngine(
        (FEATURES,), (SCORE,), trt_module=fake_trt(FakeCuda(), CONTRACT), watchdog_thread=False
    )
    with pytest.raises(NoCudaGpuError, match="creating a context failed.*invalid device"):
        e.load(plan)
    assert e.state is EngineState.UNLOADED and e.residency().held == ()


# ----------------------------------------------------------------- select_engine passes the watchdog bound


def test_select_engine_passes_the_watchdog_bound(
    monkeypatch: pytest.MonkeyPatch, plan: Path, tiny_onnx_model: Path
) -> None:
    from vibration_anomaly.engine.select import reason_code, select_engine

    cuda = FakeCuda()
    patch_gpu_edge(
        monkeypatch,
        PyCudaApi=lambda: cuda,
        probe_cuda_driver=cuda.probe,
        import_tensorrt=lambda runtime="auto": (fake_trt(cuda, CONTRACT), "full"),
    )

    engine, reason = select_engine("auto", tiny_onnx_model, plan)
    assert isinstance(engine, TensorRTEngine) and reason_code(reason) == "gpu"
    assert engine.residency().details["watchdog_bound_s"] == f"{DEFAULT_MAX_IDLE_AWAKE_S:g}"
    engine.unload()

    engine, _ = select_engine("tensorrt", tiny_onnx_model, plan, max_idle_awake_s=0.05)
    assert isinstance(engine, TensorRTEngine) and engine.residency().details["watchdog_bound_s"] == "0.05"
    engine.wake()
    deadline = time.monotonic() + 5
    while engine.state is EngineState.AWAKE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.last_watchdog is not None and engine.last_watchdog.bound_s == 0.05
    assert cuda.live_contexts == 0 and cuda.leaked == []
    engine.unload()

    with pytest.raises(InputError, match="select_engine: max_idle_awake_s"):
        select_engine("auto", tiny_onnx_model, plan, max_idle_awake_s=0.0)


def test_gpu_check_says_plainly_when_it_cannot_run() -> None:
    import json
    import subprocess

    from vibration_anomaly.engine.tensorrt import probe_cuda_driver

    if probe_cuda_driver().ok:
        pytest.skip("this machine has a GPU: run tools/gpu_check.py for real")
    tool = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.py"
    proc = subprocess.run(
        [sys.executable, str(tool), "--seconds", "0.1"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["ran"] is False
    assert "cannot run here" in proc.stderr
