"""Parsers of real tool output (``nvidia-smi``, ``amd-smi``, ``rocm-smi``, sysfs, ``ibv_devinfo``).

Each parser takes the text a tool printed and returns :mod:`xpdctl.status_model` objects. They run
nowhere near the tools: :mod:`xpdctl.observe` collects the text from hosts and hands it over, so the
parsers are tested on captured output.
"""
