"""Observed state of a cluster's hosts: one SSH round trip per host (a shell script printing
delimited sections, parsed by :mod:`xpdctl.probes`) plus HTTP probes of every service, all hosts in
parallel. Entry point: :func:`xpdctl.observe.cluster.observe_cluster`."""
