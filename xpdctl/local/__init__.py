"""Running a cluster's rendered services on this machine (``runtime: native``): the local executor,
its supervisor, and the ``up``/``status``/``down`` steps built on them."""
