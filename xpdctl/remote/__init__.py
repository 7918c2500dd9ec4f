"""A cluster's services on its hosts: the one service applier (:mod:`xpdctl.remote.applier`, on
pyinfra) that ``up`` (after the playbooks' host layer), ``upgrade`` and ``down`` use, and the
:class:`~xpdctl.remote.executor.RemoteExecutor`, which implements the same ``Executor`` protocol as
the local executor on top of it.
"""
