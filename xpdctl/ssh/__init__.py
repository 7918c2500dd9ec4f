"""Running shell scripts on a cluster's hosts: SSH (or this machine's shell for hosts that share it),
every host at once, bounded in time, output in sections a host cannot forge.

Below both :mod:`xpdctl.observe` (``status``) and the executors (``upgrade``, ``down``), which each
bring their own scripts."""
