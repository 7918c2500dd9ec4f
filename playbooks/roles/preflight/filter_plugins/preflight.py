"""``xpd_preflight_report``: judge the facts ``xpd_host_facts`` read, on the controller.

The judgement lives in xpdctl (``xpdctl.provision.preflight_checks``), where it is unit-tested and
shares its PCI and os-release parsers with ``xpdctl status``; these playbooks ship with xpdctl and
run with its Python.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def xpd_preflight_report(facts, expectations):
    try:
        from xpdctl.provision.preflight_checks import Expectations, HostFacts, evaluate
    except ImportError as exc:
        raise AnsibleFilterError(
            f"xpd_preflight_report needs the xpdctl package in Ansible's Python ({exc}); run the playbooks "
            "through `xpdctl provision` or from xpdctl's virtualenv"
        ) from exc
    report = evaluate(HostFacts.model_validate(facts), Expectations.model_validate(expectations))
    return report.model_dump()


class FilterModule:
    def filters(self):
        return {"xpd_preflight_report": xpd_preflight_report}
