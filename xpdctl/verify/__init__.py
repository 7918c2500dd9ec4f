"""Checks that a running cluster serves, used by every executor's ``up`` and by ``upgrade``: services
answer ``/health`` (:mod:`~xpdctl.verify.health`), the KV agents verified every prefill->decode path
(:mod:`~xpdctl.verify.kvpath`), and a request through the router completes (:mod:`~xpdctl.verify.smoke`)."""
