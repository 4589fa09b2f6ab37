"""Fleet telemetry: Prometheus metrics of one robot, pushed to a Pushgateway.

- ``metrics.RobotMetrics``: the robot's metrics in a registry you pass in, fed by pipeline events.
- ``pusher.PushgatewayPusher``: background, non-blocking, retrying push of that registry.
- ``exporter.MetricsExporter``: optional local ``/metrics`` for robots scraped directly.
- ``fleetsim`` and ``localservers``: the synthetic fleet and real local servers used by tests and bench.

The rules, scrape config, Alertmanager routing and Grafana dashboard live in
``config/prometheus/``; docs/TELEMETRY.md explains them.
"""
