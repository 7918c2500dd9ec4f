"""``xpdctl up`` for clusters of real hosts: provision, then prove the cluster serves.

:func:`~xpdctl.deploy.bringup.deploy` runs the playbooks through :mod:`xpdctl.provision` (live progress
per host and role; the ``services`` role installs and starts the rendered units in order), then waits
for every engine's ``/health``, for the KV agents to verify each prefill->decode path, for the router
to serve, and sends one request through it. Clusters whose hosts are all this machine run under
:mod:`xpdctl.local` instead (:func:`~xpdctl.deploy.where.runs_locally` decides).
"""

from xpdctl.deploy.bringup import deploy
from xpdctl.deploy.models import DeployResult
from xpdctl.deploy.where import runs_locally

__all__ = ["DeployResult", "deploy", "runs_locally"]
