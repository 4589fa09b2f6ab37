"""Fleet telemetry: Prometheus metrics of one robot, pushed to a Pushgateway.

- ``metrics.RobotMetrics``: the robot's metrics in a registry you pass in, fed by pipeline events;
  ``metrics_labels``: their label vocabularies and value checks.
- ``pusher.PushgatewayPusher``: background, non-blocking, retrying push of that registry, to a
  Pushgateway group or a store's Prometheus import endpoint (VictoriaMetrics); ``push_http``: one
  such push on the wire, with basic auth and TLS.
- ``routing.route_for``: the robot's destination from the signed bundle (one gateway, its shard by
  rendezvous hashing, or the store); ``lasttrusted``: report a refused bundle through the last trusted one.
- ``exporter.MetricsExporter``: optional local ``/metrics`` for robots scraped directly.
- ``fleetsim`` and ``localservers``: the synthetic fleet and real local servers (Pushgateway,
  Prometheus, VictoriaMetrics, vmalert) used by tests and bench.

The rules, scrape config, Alertmanager routing and Grafana dashboard live in
``config/prometheus/``; docs/TELEMETRY.md explains them, docs/FLEET.md the fleet design.
"""
