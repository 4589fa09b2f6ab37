"""``python -m vibration_anomaly`` is the same as the ``vibration-anomaly`` command."""

from vibration_anomaly.cli import main

raise SystemExit(main())
