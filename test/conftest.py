"""Shared fixtures. ROS tests get their own ROS_DOMAIN_ID so parallel runs never hear each other.

``ROS_PYTHON_CHECK_FIELDS=1`` is set here, at import, before any message module is imported (the
generated message modules read it once, when imported): with it rclpy refuses a field of the wrong
type at once (an ``int`` diagnostic level, say) instead of sending a random byte, so every test that
builds or publishes a message checks its types. Subprocesses started by tests inherit it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["ROS_PYTHON_CHECK_FIELDS"] = "1"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # One domain per test session (0-101 are valid for Fast DDS on Linux with default ports).
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture
def tiny_onnx_model(tmp_path: Path) -> Path:
    """A 2-op ONNX model with the package's I/O contract: features [B, 4, 3] -> score [B].

    A test fixture for exercising backends, not a detector: score = mean of the features.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4, 3])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    node = helper.make_node("ReduceMean", ["features"], ["score"], axes=[1, 2], keepdims=0)
    graph = helper.make_graph([node], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture
def ros() -> Iterator[Any]:
    """The node tests' ROS context, executor and nodes (``test_nodes_ros.Ros``), closed after the test."""
    from test_nodes_ros import Ros  # lazily: only ROS tests load rclpy

    r = Ros()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def score_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ONNX model whose score follows the features (``runtime_testkit.score_model``), per module."""
    from runtime_testkit import score_model as build

    return build(tmp_path_factory.mktemp("model") / "zsq.onnx")
