"""``syncbus monitor``: the sharing SLAs of every route, measured from the central side.

``kafka_reads`` and ``tail`` ask the brokers; ``monitor`` turns one cycle of answers into
per-route figures (``meters``) and verdicts (``syncbus.core.sla``); ``exporter``,
``server`` and ``rows`` show them as Prometheus metrics, a status page and JSON;
``report`` builds ``syncbus sla report`` from Prometheus or from the monitor.
"""
