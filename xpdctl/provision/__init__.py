"""Provisioning bare-metal hosts with the playbooks in ``playbooks/``, driven by ansible-runner.

``provision(loaded_inventory, render_dir, limit=..., check=..., allow_reboot=...)`` runs ``site.yml``
(preflight, OS, drivers, runtimes, images, weights, a gated reboot, services);
``preflight(loaded_inventory, render_dir)`` runs only the read-only checks. Both report per host.
"""

from xpdctl.provision.drive import preflight, provision, render_now
from xpdctl.provision.events import Progress
from xpdctl.provision.models import PreflightResult, ProvisionResult

__all__ = ["Progress", "PreflightResult", "ProvisionResult", "preflight", "provision", "render_now"]
