"""Running a cluster's services on its hosts over SSH: the remote form of the executor.

``up`` installs units with Ansible (playbooks/roles/services); afterwards ``upgrade`` and ``down`` change
what runs through :class:`~xpdctl.remote.executor.RemoteExecutor`, which implements the same
``Executor`` protocol as the local executor: one shell script per host and call, hosts in parallel.
"""
