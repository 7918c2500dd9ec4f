"""What ``render`` writes for Prometheus and Grafana: scrape targets, alert rules, a dashboard.

Only data derived from the plan lives here; the files themselves come from ``templates/observability``
(Prometheus) and :mod:`xpdctl.observability.dashboard` (Grafana, built with grafanalib).
"""
