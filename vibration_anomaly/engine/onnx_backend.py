"""ONNX Runtime backend: the embedded CPU default where there is no GPU.

``wake`` creates the inference session and ``sleep`` drops it, so an idle robot
holds only the model bytes. Session creation is made cheap by doing the
expensive part once at ``load`` (configure time): the graph is optimised and
serialised there, and ``wake`` builds a session from the already-optimised
bytes with optimisation switched off.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from vibration_anomaly.engine.base import EngineState, Residency, TensorSpec
from vibration_anomaly.errors import EngineError, EngineStateError, InputError

log = logging.getLogger(__name__)


def _spec(arg: object) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)  # type: ignore[attr-defined]
    dtype = str(arg.type).removeprefix("tensor(").removesuffix(")")  # type: ignore[attr-defined]
    return TensorSpec(arg.name, shape, "float32" if dtype == "float" else dtype)  # type: ignore[attr-defined]


class OnnxRuntimeEngine:
    """Engine protocol over ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, intra_op_threads: int = 1) -> None:
        self._threads = intra_op_threads
        self._state = EngineState.UNLOADED
        self._model_path: Path | None = None
        self._optimized: bytes | None = None
        self._session: object | None = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def _options(self, optimize: bool) -> object:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # The thread pool would otherwise spin waiting for work after each run,
        # burning CPU on a robot that is about to sleep.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if optimize
            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        return opts

    def load(self, model_path: Path) -> None:
        """Read the model file and load it as :meth:`load_bytes` does."""
        if self._state is not EngineState.UNLOADED:
            raise EngineStateError(f"{self.name}: load() while {self._state.value}; unload first")
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"model file {path}: not found (expected an .onnx file)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EngineError(f"model file {path}: cannot read: {exc.strerror or exc}") from exc
        self.load_bytes(data, path)

    def load_bytes(self, model: bytes, source: Path | str = "<model bytes>") -> None:
        """Validate serialized ONNX ``model`` and pre-optimise it; holds only bytes afterwards.

        The bytes are what gets loaded, not a path re-opened later: a caller that
        hashed them (``bundle.read_verified_model``) knows the engine runs exactly
        what it checked. ``source`` only names the model in messages and residency.
        """
        import onnxruntime as ort

        if self._state is not EngineState.UNLOADED:
            raise EngineStateError(f"{self.name}: load() while {self._state.value}; unload first")
        with tempfile.TemporaryDirectory(prefix="va-ort-") as tmp:
            opt_path = os.path.join(tmp, "optimized.onnx")
            opts = self._options(optimize=True)
            opts.optimized_model_filepath = opt_path  # type: ignore[attr-defined]
            try:
                session = ort.InferenceSession(
                    bytes(model), sess_options=opts, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises several unrelated types
                raise EngineError(f"model file {source}: not a loadable ONNX model: {exc}") from exc
            self._inputs = tuple(_spec(a) for a in session.get_inputs())
            self._outputs = tuple(_spec(a) for a in session.get_outputs())
            del session
            self._optimized = Path(opt_path).read_bytes()
        self._model_path = Path(source)
        self._state = EngineState.LOADED
        log.debug("loaded %s (%d optimised bytes)", source, len(self._optimized))

    def wake(self) -> None:
        import onnxruntime as ort

        if self._state is EngineState.AWAKE:
            return
        if self._state is EngineState.UNLOADED or self._optimized is None:
            raise EngineStateError(f"{self.name}: wake() before load()")
        self._session = ort.InferenceSession(
            self._optimized, sess_options=self._options(optimize=False), providers=["CPUExecutionProvider"]
        )
        self._state = EngineState.AWAKE

    def infer(self, features: np.ndarray) -> np.ndarray:
        if self._state is not EngineState.AWAKE or self._session is None:
            raise EngineStateError(f"{self.name}: infer() while {self._state.value}; wake() first")
        spec = self._inputs[0]
        x = np.asarray(features)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if x.ndim != len(spec.shape) or any(
            want is not None and got != want for got, want in zip(x.shape, spec.shape, strict=False)
        ):
            raise InputError("features", "shape", f"got {x.shape}, model expects {spec.shape} (None = any)")
        if not np.isfinite(x).all():
            raise InputError("features", "values", "contains NaN or inf")
        out = self._session.run([self._outputs[0].name], {spec.name: x})  # type: ignore[attr-defined]
        return np.asarray(out[0])

    def sleep(self) -> None:
        # ONNX Runtime on CPU runs synchronously, so dropping the session is the
        # whole of "synchronize and free".
        self._session = None
        if self._state is EngineState.AWAKE:
            self._state = EngineState.LOADED

    def unload(self) -> None:
        self.sleep()
        self._optimized = None
        self._model_path = None
        self._state = EngineState.UNLOADED

    def residency(self) -> Residency:
        held: list[str] = []
        if self._optimized is not None:
            held.append("model_bytes")
        if self._session is not None:
            held.append("session")
        return Residency(
            backend=self.name,
            state=self._state,
            held=tuple(held),
            host_bytes=len(self._optimized or b""),
            details={"model": str(self._model_path or "")},
        )
