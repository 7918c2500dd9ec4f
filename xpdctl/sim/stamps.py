"""Engine timestamps, opt-in (``xpdctl sim --timestamps``): what lets a benchmark subtract the engines' own time.

Every stamp is ``time.monotonic()`` in seconds. On Linux that is CLOCK_MONOTONIC, the clock of
``time.perf_counter()`` as well, and one clock for every process on the machine, so a client on the
same machine can set the stamps against its own send and receive times, request by request.

- A prefill (a request with ``kv_transfer_params.do_remote_decode``) adds ``{"arrived", "answered"}``
  under ``KEY`` to the ``kv_transfer_params`` it returns. A PD router hands those to the decode
  unchanged, so the stamps travel the way the KV handle does.
- Every other answer carries ``{"arrived", "first_token", "last_token"}`` under ``KEY``, plus
  ``"prefill"``: the prefill's stamps when the request's ``kv_transfer_params`` brought them. A stream
  carries them in its final usage chunk (so only with ``stream_options.include_usage``), a whole
  response at its top level.

``arrived`` is when the request handler started, ``answered`` just before the prefill's answer is
encoded, ``first_token``/``last_token`` just before those tokens are written.
"""

from __future__ import annotations

from typing import Any

KEY = "xpd_sim_timestamps"


def prefill(arrived: float, answered: float) -> dict[str, float]:
    return {"arrived": arrived, "answered": answered}


def answer(arrived: float, first_token: float, last_token: float, kv_transfer_params: Any) -> dict[str, Any]:
    stamps: dict[str, Any] = {"arrived": arrived, "first_token": first_token, "last_token": last_token}
    if isinstance(kv_transfer_params, dict) and isinstance(kv_transfer_params.get(KEY), dict):
        stamps["prefill"] = kv_transfer_params[KEY]
    return stamps
