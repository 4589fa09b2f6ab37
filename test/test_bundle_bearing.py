"""The optional ``bearing`` section of the signed bundle: defect orders or geometry, refused by field when wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bundle_testkit import Signer

from vibration_anomaly.bundle import BundleRefused, load_verified_bundle
from vibration_anomaly.bundle.bearing import orders_from_geometry

CWRU_6205 = {"balls": 9, "ball_diameter": 0.3126, "pitch_diameter": 1.537}


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer(tmp_path)


def _load(tmp_path: Path, signer: Signer, **changes: Any) -> Any:
    return load_verified_bundle(
        signer.write(tmp_path / "b.yaml", **changes), signer.trust_dir, require_firmware=False
    )


def _refused(tmp_path: Path, signer: Signer, bearing: Any) -> BundleRefused:
    with pytest.raises(BundleRefused) as info:
        _load(tmp_path, signer, bearing=bearing)
    assert info.value.reason == "field"
    return info.value


def test_a_bundle_without_the_section_loads_as_before(tmp_path: Path, signer: Signer) -> None:
    b = _load(tmp_path, signer)
    assert b.bearing is None
    assert "bearing" not in b.as_dict()
    assert not any(k.startswith("bearing") for k in b.effective_values())
    assert b.effective_values()["duty_cycle.period_s"] == 60


def test_orders_are_taken_as_stated(tmp_path: Path, signer: Signer) -> None:
    # The CWRU drive-end bearing, as its data centre states the orders (its "ball" is 2 x BSF).
    stated = {"bpfo": 3.5848, "bpfi": 5.4152, "bsf": 4.7135, "ftf": 0.39828}
    b = _load(tmp_path, signer, bearing=stated)
    assert b.bearing is not None and b.bearing.orders() == stated
    assert b.as_dict()["bearing"] == stated
    assert b.effective_values()["bearing.bpfo"] == 3.5848
    only_outer = _load(tmp_path, signer, bearing={"bpfo": 3.5848})
    assert only_outer.bearing is not None and only_outer.bearing.orders() == {"bpfo": 3.5848}


def test_a_stated_resonance_is_kept_beside_the_orders(tmp_path: Path, signer: Signer) -> None:
    b = _load(tmp_path, signer, bearing={**CWRU_6205, "resonance_hz": [2500, 4500.5]})
    assert b.bearing is not None and b.bearing.resonance_hz == (2500.0, 4500.5)
    assert b.as_dict()["bearing"]["resonance_hz"] == [2500.0, 4500.5]
    assert set(b.bearing.orders()) == {"bpfo", "bpfi", "bsf", "ftf"}  # the orders as without it
    plain = _load(tmp_path, signer, bearing=CWRU_6205)
    assert plain.bearing is not None and plain.bearing.resonance_hz is None
    assert "resonance_hz" not in plain.as_dict()["bearing"]


def test_geometry_gives_the_published_orders(tmp_path: Path, signer: Signer) -> None:
    b = _load(tmp_path, signer, bearing={**CWRU_6205, "contact_angle_deg": 0})
    assert b.bearing is not None
    got = b.bearing.orders()
    # The CWRU README's multipliers, recomputed from the same geometry (BSF there is 2 x 4.7135 / 2).
    assert got["bpfo"] == pytest.approx(3.5848, abs=1e-4)
    assert got["bpfi"] == pytest.approx(5.4152, abs=1e-4)
    assert got["ftf"] == pytest.approx(0.39831, abs=1e-4)
    assert 2 * got["bsf"] == pytest.approx(4.7135, abs=1e-3)
    # FEMTO PRONOSTIA: 13 balls of 3.5 mm on 25.6 mm (its README: BPFO 5.611, 2 x BSF 7.178).
    femto = orders_from_geometry(13, 3.5, 25.6)
    assert femto["bpfo"] == pytest.approx(5.611, abs=1e-3) and 2 * femto["bsf"] == pytest.approx(
        7.178, abs=1e-3
    )
    # A contact angle lowers the outer-race order.
    assert orders_from_geometry(9, 0.3126, 1.537, 30.0)["bpfo"] > got["bpfo"]


@pytest.mark.parametrize(
    ("bearing", "field", "words"),
    [
        ({"bpfo": -3.58}, "bearing.bpfo", "expected 0 <"),
        ({"bpfo": float("nan")}, "bearing.bpfo", "finite"),
        ({"bpfi": ".inf"}, "bearing.bpfi", "number"),
        ({"bsf": 0}, "bearing.bsf", "expected 0 <"),
        ({"ftf": 1.4}, "bearing.ftf", "<= 1"),
        ({"bpfo": 3.58, "bpfi": 4.91}, "bearing.bpfi", "number of rolling elements"),
        ({"bpfo": 3.5848, "bpfi": 5.4152, "ftf": 0.45}, "bearing.ftf", "cage"),
        ({"bpfo": 350.0}, "bearing.bpfo", "<= 100"),
        ({"bpfo": "3.58"}, "bearing.bpfo", "number"),
        ({"bpfo": True}, "bearing.bpfo", "number"),
        ({"bpfo": 3.58, "balls": 9}, "bearing.balls", "not both"),
        ({"balls": 9, "ball_diameter": 0.31}, "bearing.pitch_diameter", "missing"),
        ({**CWRU_6205, "balls": 2}, "bearing.balls", "3..100"),
        ({**CWRU_6205, "balls": 9.5}, "bearing.balls", "integer"),
        ({**CWRU_6205, "ball_diameter": 2.0}, "bearing.ball_diameter", "pitch_diameter"),
        ({**CWRU_6205, "contact_angle_deg": 95}, "bearing.contact_angle_deg", "<= 60"),
        ({"bpfo_typo": 3.58}, "bearing.bpfo_typo", "unknown field"),
        ({"bpfo": 3.58, "resonance_hz": [4500, 2500]}, "bearing.resonance_hz", "0 < lo < hi"),
        ({"bpfo": 3.58, "resonance_hz": [0, 2500]}, "bearing.resonance_hz", "0 < lo < hi"),
        ({"bpfo": 3.58, "resonance_hz": 3000}, "bearing.resonance_hz", "[lo, hi]"),
        ({"bpfo": 3.58, "resonance_hz": [1000, 2000, 3000]}, "bearing.resonance_hz", "[lo, hi]"),
        ({"bpfo": 3.58, "resonance_hz": [1000, "2k"]}, "bearing.resonance_hz[1]", "number"),
        ({"bpfo": 3.58, "resonance_hz": [1000, float("inf")]}, "bearing.resonance_hz[1]", "finite"),
        ({"resonance_hz": [2500, 4500]}, "bearing.bpfo", "expected some of"),
        ([3.58, 5.41], "bearing", "mapping"),
    ],
)
def test_nonsense_is_refused_naming_the_field(
    tmp_path: Path, signer: Signer, bearing: Any, field: str, words: str
) -> None:
    exc = _refused(tmp_path, signer, bearing)
    assert exc.field == field, exc.detail
    assert words in exc.detail, exc.detail


def test_a_nan_written_in_the_payload_text_is_refused(tmp_path: Path, signer: Signer) -> None:
    import yaml

    text = yaml.safe_dump(signer.payload(), sort_keys=False) + "bearing:\n  bpfo: .nan\n"
    with pytest.raises(BundleRefused) as info:
        load_verified_bundle(
            signer.write(tmp_path / "b.yaml", text), signer.trust_dir, require_firmware=False
        )
    assert info.value.field == "bearing.bpfo" and "finite" in info.value.detail


def test_the_models_presets_are_the_formula_with_the_ball_at_twice_bsf() -> None:
    """``model.data.BEARING_PRESETS`` (evaluate's ``--bearing``) quote the data sets' own numbers, whose
    "ball" is 2 x BSF; the bundle's ``bsf`` is the kinematic one (docs/BUNDLE.md)."""
    from vibration_anomaly.model.data import BEARING_PRESETS

    for name, geometry in (("cwru-6205", (9, 0.3126, 1.537)), ("femto", (13, 3.5, 25.6))):
        got, preset = orders_from_geometry(*geometry), BEARING_PRESETS[name]
        for order in ("bpfo", "bpfi", "ftf"):
            assert got[order] == pytest.approx(preset[order], rel=1e-3), (name, order)
        assert 2 * got["bsf"] == pytest.approx(preset["bsf"], rel=1e-3), name
