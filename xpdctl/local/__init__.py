"""Running a cluster's rendered services on this machine (``runtime: native``): the local executor,
its supervisor, and the local forms of ``up`` and ``status`` built on them."""
