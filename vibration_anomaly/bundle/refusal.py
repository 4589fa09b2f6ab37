"""The one exception of the bundle package: what was refused, why, and where."""

from __future__ import annotations

from vibration_anomaly.errors import Refusal


class BundleRefused(Refusal):
    """The config bundle cannot be trusted or disagrees with the firmware: do not boot.

    ``reason`` is a short machine-readable code (see ``docs/BUNDLE.md`` for the
    list) for diagnostics and metrics; ``detail`` is the human sentence, which
    names the field and both values where there are two sides.
    """

    def __init__(
        self, reason: str, detail: str, *, source: str | None = None, field: str | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.source = source
        self.field = field
        where = f"{source}: " if source else ""
        super().__init__(f"{where}bundle refused ({reason}): {detail}")

    def with_source(self, source: str) -> BundleRefused:
        """Re-raise helper: attach the file name when a lower layer did not know it."""
        if self.source is not None:
            return self
        return BundleRefused(self.reason, self.detail, source=source, field=self.field)


# The fleet's metric label for a refusal (``vibration_anomaly_bundle_refused{reason=...}``, low
# cardinality, the alert rules read it); the exact ``reason`` goes to the log and the diagnostic.
_METRIC_CLASS = {
    "bad_signature": "signature",
    **dict.fromkeys(("unknown_key", "trust_store", "epoch_revoked", "epoch_mismatch"), "untrusted"),
    **dict.fromkeys(
        (
            "firmware_mismatch",
            "model_mismatch",
            "engine_mismatch",
            "model_json_mismatch",
            "calibration_mismatch",
            "calibration_foreign",
        ),
        "mismatch",
    ),
    **dict.fromkeys(
        ("firmware_missing", "model_missing", "engine_missing", "model_json_missing", "calibration_missing"),
        "missing",
    ),
    **dict.fromkeys(
        (
            "parse",
            "field",
            "too_large",
            "firmware_invalid",
            "rollback",
            "version_reuse",
            "calibration_implausible",
        ),
        "invalid",
    ),
}


def metric_class(reason: str) -> str:
    """signature, untrusted, mismatch (firmware and container disagree, or the wrong model), missing, invalid, other."""
    return _METRIC_CLASS.get(reason, "other")
