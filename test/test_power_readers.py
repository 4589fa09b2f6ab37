"""Power readers on recorded sysfs trees, tegrastats lines and NVML answers (see fixtures/power/README.md)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vibration_anomaly.power import PowerReadError, PowerSourceUnavailable, open_power_source
from vibration_anomaly.power.hwmon import Ina3221Source
from vibration_anomaly.power.modelled import ModelledSource, custom_model, get_model
from vibration_anomaly.power.nvml import NvmlSource
from vibration_anomaly.power.tegrastats import TegrastatsSource, parse_tegrastats_line, reading_from_line

FIX = Path(__file__).parent / "fixtures" / "power"
NOWHERE = Path("/nonexistent-va-test")


def hwmon(tree: str) -> Ina3221Source:
    return Ina3221Source(FIX / tree / "ina3221", NOWHERE, clock=lambda: 12.5)


def test_orin_nano_hwmon_rails_in_watts_total_is_vdd_in() -> None:
    r = hwmon("orin_nano_jp6").read()
    assert set(r.rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}  # in7 "sum of shunt voltages" skipped
    assert r.rails["VDD_IN"] == pytest.approx(5072 * 935 / 1e6)
    assert r.rails["VDD_SOC"] == pytest.approx(5064 * 285 / 1e6)
    assert r.watts == r.rails["VDD_IN"] and r.total_rule == "VDD_IN"
    assert not r.modelled and r.t == 12.5 and r.problems == ()


def test_agx_orin_two_monitors_skip_nc_and_sum() -> None:
    r = hwmon("agx_orin_jp5").read()
    assert set(r.rails) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert r.total_rule == "sum of rails"
    assert r.watts == pytest.approx(sum(r.rails.values()))


def test_jetpack4_iio_layout_reads_milliwatts() -> None:
    src = Ina3221Source(NOWHERE, FIX / "nano_jp4" / "ina3221x", clock=lambda: 0.0)
    r = src.read()
    assert r.rails == {"POM_5V_IN": 1.016, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.117}
    assert r.watts == 1.016 and r.total_rule == "POM_5V_IN"


def test_garbage_rails_are_reported_not_summed() -> None:
    r = hwmon("orin_nano_garbage").read()
    assert set(r.rails) == {"VDD_IN"}
    assert r.watts == pytest.approx(5072 * 935 / 1e6)
    assert any("VDD_CPU_GPU_CV" in p and "'abc'" in p for p in r.problems)
    assert any("VDD_SOC" in p and "in3_input" in p for p in r.problems)
    assert "unread" in r.describe()


def test_unreadable_input_rail_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "ina3221"
    shutil.copytree(FIX / "orin_nano_jp6" / "ina3221", root)
    curr = root / "1-0040/hwmon/hwmon1/curr1_input"
    curr.unlink()
    curr.mkdir()  # reading it now fails like a vanished or disabled channel does
    src = Ina3221Source(root, NOWHERE)
    with pytest.raises(PowerReadError, match="VDD_IN.*unreadable"):
        src.read()
    (root / "1-0040/hwmon/hwmon1/in1_input").write_text("-5072\n")
    curr.rmdir()
    curr.write_text("935\n")
    with pytest.raises(PowerReadError, match="negative"):
        src.read()


def test_no_ina3221_anywhere_is_unavailable() -> None:
    with pytest.raises(PowerSourceUnavailable, match="no INA3221"):
        Ina3221Source(NOWHERE, NOWHERE)


def tegra_lines() -> dict[str, str]:
    out = {}
    for line in (FIX / "tegrastats_lines.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            case, text = line.split("|", 1)
            out[case] = text
    return out


@pytest.mark.parametrize(
    ("case", "rails", "total"),
    [
        ("orin_nano_jp6", {"VDD_IN": 2.957, "VDD_CPU_GPU_CV": 0.486, "VDD_SOC": 1.012}, 2.957),
        ("orin_nx_jp6", {"VDD_IN": 6.12, "VDD_CPU_GPU_CV": 0.436, "VDD_SOC": 2.464}, 6.12),
        ("orin_nano_r39", {"VDD_IN": 9.761, "VDD_CPU_GPU_CV": 4.238, "VDD_SOC": 1.825}, 9.761),
        ("nano_jp4", {"POM_5V_IN": 4.52, "POM_5V_GPU": 0.0, "POM_5V_CPU": 1.078}, 4.52),
        (
            "agx_xavier_jp4",
            {"GPU": 0.0, "CPU": 0.465, "SOC": 1.242, "CV": 0.0, "VDDRQ": 0.155, "SYS5V": 2.76},
            4.622,
        ),
    ],
)
def test_tegrastats_lines_of_each_generation(case: str, rails: dict[str, float], total: float) -> None:
    line = tegra_lines()[case]
    assert parse_tegrastats_line(line) == pytest.approx(rails)
    r = reading_from_line(line, t=1.0)
    assert r.watts == pytest.approx(total) and not r.modelled


def test_tegrastats_tx2_ignores_ram_swap_and_units() -> None:
    rails = parse_tegrastats_line(tegra_lines()["tx2_jp4"])
    assert rails["VDD_IN"] == 14.025 and "RAM" not in rails and "SWAP" not in rails
    assert set(rails) == {"VDD_IN", "VDD_CPU", "VDD_GPU", "VDD_SOC", "VDD_WIFI", "VDD_DDR"}


@pytest.mark.parametrize("case", ["truncated", "garbage"])
def test_tegrastats_broken_lines_are_errors(case: str) -> None:
    with pytest.raises(PowerReadError, match="no power rails"):
        reading_from_line(tegra_lines()[case], t=0.0)


def test_tegrastats_source_runs_the_tool_and_keeps_the_latest_line(tmp_path: Path) -> None:
    # A stand-in for /usr/bin/tegrastats (the sensor edge): prints recorded lines like the tool.
    fake = tmp_path / "tegrastats"
    lines = tegra_lines()
    fake.write_text(
        "import sys, time\n"
        f"print({lines['orin_nano_jp6']!r}, flush=True)\n"
        f"print({lines['orin_nx_jp6']!r}, flush=True)\n"
        "time.sleep(30)\n"
    )
    src = TegrastatsSource(command=[sys.executable, str(fake)])
    try:
        deadline = 50
        while src.read().rails.get("VDD_IN") != 6.12 and deadline:
            import time

            time.sleep(0.05)
            deadline -= 1
        assert src.read().watts == 6.12
    finally:
        src.close()
    with pytest.raises(PowerReadError, match="exited"):
        src.read()


def test_tegrastats_missing_or_silent_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(PowerSourceUnavailable, match="could not start"):
        TegrastatsSource(command=[str(tmp_path / "no-such-tegrastats")])
    with pytest.raises(PowerSourceUnavailable, match="exited"):
        TegrastatsSource(command=[sys.executable, "-c", "pass"])


class RecordedNvml:
    """pynvml stand-in answering from nvml_answers.json, raising the real pynvml error types."""

    def __init__(self, case: str) -> None:
        pynvml = pytest.importorskip(
            "pynvml", reason="nvidia-ml-py is not installed (its error types are used)"
        )

        self.NVMLError = pynvml.NVMLError
        self._err = pynvml.NVMLError
        self.a: dict[str, Any] = json.loads((FIX / "nvml_answers.json").read_text())[case]
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if "init_error" in self.a:
            raise self._err(self.a["init_error"])

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return int(self.a["device_count"])

    def nvmlDeviceGetHandleByIndex(self, i: int) -> object:
        return ("handle", i)

    def nvmlDeviceGetName(self, h: object) -> str:
        return str(self.a["name"])

    def nvmlDeviceGetPowerUsage(self, h: object) -> int:
        if "power_usage_error" in self.a:
            raise self._err(self.a["power_usage_error"])
        return int(self.a["power_usage_mw"])

    def _procs(self, key: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(**p) for p in self.a[key]]

    def nvmlDeviceGetComputeRunningProcesses(self, h: object) -> list[SimpleNamespace]:
        return self._procs("compute_processes")

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: object) -> list[SimpleNamespace]:
        return self._procs("graphics_processes")


def test_nvml_board_power_and_our_process_memory() -> None:
    src = NvmlSource(nvml=RecordedNvml("h100_idle_with_our_context"), pid=4242, clock=lambda: 3.0)
    r = src.read()
    assert r.watts == 71.234 and r.rails == {"board": 71.234} and "H100" in r.source
    assert r.details["process_gpu_memory_bytes"] == 531628032
    assert src.process_gpu_memory(777) == 1073741824
    src.close()


def test_nvml_absent_process_holds_zero_and_unknown_is_none() -> None:
    assert NvmlSource(nvml=RecordedNvml("h100_we_hold_nothing"), pid=4242).process_gpu_memory() == 0
    src = NvmlSource(nvml=RecordedNvml("geforce_memory_not_available"), pid=4242)
    assert src.process_gpu_memory() is None
    assert "process_gpu_memory_bytes" not in src.read().details


def test_nvml_unsupported_power_and_no_driver_are_unavailable() -> None:
    fake = RecordedNvml("power_not_supported")
    with pytest.raises(PowerSourceUnavailable, match="no power reading: Not Supported"):
        NvmlSource(nvml=fake)
    assert fake.shutdowns == 1  # init was balanced
    with pytest.raises(PowerSourceUnavailable, match="Driver Not Loaded"):
        NvmlSource(nvml=RecordedNvml("driver_not_loaded"))


def test_real_nvml_on_a_machine_without_driver_is_unavailable() -> None:
    pytest.importorskip("pynvml")
    try:
        src = NvmlSource()
    except PowerSourceUnavailable as exc:
        assert "NVML" in str(exc)
    else:  # a machine with a GPU: then it must give a real reading
        assert src.read().watts > 0
        src.close()


def test_modelled_source_follows_the_engine_and_says_so() -> None:
    awake = {"v": False}
    src = ModelledSource(get_model("orin-nano"), is_awake=lambda: awake["v"], clock=lambda: 1.0)
    r = src.read()
    assert r.modelled and r.watts == 4.0 and "MODELLED" in r.describe()
    awake["v"] = True
    assert src.read().watts == 11.0
    assert custom_model("3.5,9").awake_w == 9.0


@pytest.mark.parametrize("spec", ["9", "a,b", "9,3", "-1,2"])
def test_bad_model_watts_are_input_errors(spec: str) -> None:
    from vibration_anomaly.errors import InputError

    with pytest.raises(InputError, match="--model-watts"):
        custom_model(spec)


def test_auto_prefers_hwmon_and_falls_back_to_the_model() -> None:
    src, reason = open_power_source("auto", hwmon_roots=(FIX / "orin_nano_jp6" / "ina3221", NOWHERE))
    assert isinstance(src, Ina3221Source) and reason.startswith("auto: hwmon")
    src, reason = open_power_source("auto", hwmon_roots=(NOWHERE, NOWHERE))
    if isinstance(src, ModelledSource):  # this machine: no NVML driver, no tegrastats
        assert "MODELLED" in reason and "hwmon: no INA3221" in reason
    src.close()
    with pytest.raises(PowerSourceUnavailable):
        open_power_source("hwmon", hwmon_roots=(NOWHERE, NOWHERE))
