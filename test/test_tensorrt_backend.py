"""TensorRT backend on CPU: the real missing/no-GPU paths, and tiny fakes only at the GPU edge.

``FakeCuda`` stands in for the CUDA driver (pycuda) and records every call;
``fake_trt`` stands in for TensorRT's runtime/engine objects, which cannot be
created without a GPU. Both implement only what the backend calls.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vibration_anomaly.core.errors import EngineStateError, InputError
from vibration_anomaly.engine.base import Engine, EngineState, TensorSpec
from vibration_anomaly.engine.tensorrt_backend import (
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


class _HideTensorRT:
    """An import hook at the edge: this process behaves as if TensorRT were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in ("tensorrt", "tensorrt_lean"):
            raise ImportError(f"No module named {name!r}")


def hide_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m.split(".")[0] in ("tensorrt", "tensorrt_lean")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [_HideTensorRT(), *sys.meta_path])


FEATURES = TensorSpec("features", (None, 4, 3), "float32")
SCORE = TensorSpec("score", (None,), "float32")
PLAN_MAGIC = b"FAKEPLAN"


class FakeCuda:
    """Records calls; device memory is numpy bytes keyed by a fake pointer."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.mem: dict[int, np.ndarray] = {}
        self.current: list[str] = []
        self._next = 0x1000
        self.live_contexts = 0

    def probe(self) -> CudaProbe:
        return CudaProbe(True, "fake GPU", 1, 12040)

    def create_context(self, device: int) -> str:
        self._next += 1
        ctx = f"ctx{self._next}"
        self.calls.append("create_context")
        self.current.append(ctx)
        self.live_contexts += 1
        return ctx

    def push(self, ctx: str) -> None:
        self.calls.append("push")
        self.current.append(ctx)

    def pop(self) -> None:
        self.calls.append("pop")
        self.current.pop()

    def destroy_context(self, ctx: str) -> None:
        assert ctx not in self.current, "context destroyed while current"
        self.calls.append("destroy_context")
        self.live_contexts -= 1

    def device_name(self, device: int) -> str:
        return "Fake GPU"

    def create_stream(self) -> str:
        self.calls.append("create_stream")
        return "stream"

    def stream_handle(self, stream: Any) -> int:
        return 77

    def synchronize(self, stream: Any) -> None:
        self.calls.append("synchronize")

    def destroy_stream(self, stream: Any) -> None:
        self.calls.append("destroy_stream")

    def alloc(self, nbytes: int) -> int:
        self._next += 0x100
        self.mem[self._next] = np.zeros(nbytes, np.uint8)
        self.calls.append("alloc")
        return self._next

    def device_ptr(self, buf: int) -> int:
        return buf

    def free(self, buf: int) -> None:
        del self.mem[buf]
        self.calls.append("free")

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
                self.logger.log(1, "Serialization assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.")
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
        ({"input": ("INPUT", (-1, 4, 3)), "score": ("OUTPUT", (-1,))}, r"names differ.*input\[None, 4, 3\].*features"),
        ({"features": ("INPUT", (-1, 8, 3)), "score": ("OUTPUT", (-1,))}, r"features: shape \[None, 8, 3\] vs \[None, 4, 3\]"),
        ({"features": ("INPUT", (-1, 4, 3)), "logits": ("OUTPUT", (-1, 2))}, "outputs do not match.*logits.*score"),
    ],
)
def test_engine_with_other_names_or_shapes_is_refused(plan: Path, tensors: dict[str, Any], match: str) -> None:
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
        "push", "synchronize", "free", "free", "free_pinned", "free_pinned", "destroy_stream", "pop", "destroy_context",
    ]
    r = e.residency()
    assert r.asleep and r.awake_resources() == () and r.device_bytes == 0
    assert cuda.live_contexts == 0 and cuda.mem == {}
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


def test_watchdog_thread_fires_for_real(plan: Path) -> None:
    fired = threading.Event()
    cuda = FakeCuda()
    e = make(cuda, max_idle_awake_s=0.05, watchdog_thread=True, on_diagnostic=lambda d: fired.set())
    e.load(plan)
    e.wake()
    assert fired.wait(5.0)
    deadline = time.monotonic() + 2
    while e.state is EngineState.AWAKE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert e.state is EngineState.LOADED and cuda.live_contexts == 0


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


def test_gpu_check_says_plainly_when_it_cannot_run() -> None:
    import json
    import subprocess

    from vibration_anomaly.engine.tensorrt_backend import probe_cuda_driver

    if probe_cuda_driver().ok:
        pytest.skip("this machine has a GPU: run tools/gpu_check.py for real")
    tool = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(tool), "--seconds", "0.1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["ran"] is False
    assert "cannot run here" in proc.stderr
