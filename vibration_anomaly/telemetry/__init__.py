"""telemetry subpackage."""
