"""A cluster's services as systemd units, whichever executor runs them: the rendered unit files read
(:mod:`~xpdctl.units.unitfile`, :mod:`~xpdctl.units.rendered`), the units wanted and running and the
executor's three calls (:mod:`~xpdctl.units.state`), and restart-vs-reload, decided in one place
(:mod:`~xpdctl.units.changes`)."""
