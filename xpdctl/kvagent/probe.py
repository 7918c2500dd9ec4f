"""Judge every prefill->decode pair of one host: side channel, NIXL transfer, expected transport.

The decode host's agent measures a pair (it pulls from the prefill host's agent, as vLLM's decode
pulls KV from its prefill); one NIXL probe per peer host serves every pair between the two hosts.
The prefill host's agent relays what the decode host's agent reports, so both list every pair they
take part in and the router can ask either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from xpdctl.errors import InputError, UnhealthyError
from xpdctl.kvagent.config import KvAgentConfig, Pair
from xpdctl.kvagent.models import PairResult, SourceInfo, TransferResult
from xpdctl.kvagent.sidechannel import check_side_channel
from xpdctl.kvagent.source import LazySource
from xpdctl.kvagent.transfer import ProbeWorkers, now_iso, run_transfer

_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)


def _rdma_fault(pair: Pair, transfer: TransferResult) -> str | None:
    if pair.prefill_host == pair.decode_host:
        return None  # same host: shared memory is the right path, no NIC involved
    if transfer.transport is None:
        return (
            f"UCX did not report which transport carried the probe from {pair.prefill_host}, "
            "so RDMA cannot be confirmed (does this UCX print UCX_PROTO_INFO tables?)"
        )
    if "rdma" not in (transfer.transport_class or "").split(","):
        return (
            f"KV from {pair.prefill_host} travels over {transfer.transport}, not RDMA, although this host "
            "declares RDMA NICs: UCX fell back silently. Check `ibv_devinfo` (port ACTIVE), "
            "UCX_NET_DEVICES/UCX_TLS in the kv-agent and engine environments, and `ulimit -l`"
        )
    return None


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__  # asyncio.TimeoutError has no message


def _identity(pair: Pair) -> dict[str, str]:
    """The fields of a result that name the pair (the config's pair without peer_agent)."""
    return pair.model_dump(exclude={"peer_agent"})


def judge_pair(
    pair: Pair,
    *,
    host: str,
    expect_rdma: bool,
    side_channel_error: str | None,
    engine_may_be_starting: bool,
    transfer: TransferResult | None,
    checked_at: str,
    peer_may_be_starting: bool = False,
) -> PairResult:
    """The verdict on one pair this host measures, with every reason it is not ok.

    While the agents and engines of a fresh cluster come up, failures of things that have never
    worked yet are "waiting"; the caller decides how long that lasts (``startup_grace_s``).
    """
    broken: list[str] = []
    waiting: list[str] = []
    if side_channel_error is not None:
        if engine_may_be_starting:
            waiting.append(f"{side_channel_error}; the prefill engine may still be starting")
        else:
            broken.append(f"{side_channel_error}; is the prefill engine {pair.prefill} running?")
    if transfer is None:
        waiting.append(f"the first NIXL probe from {pair.prefill_host} has not finished yet")
    elif not transfer.ok:
        (waiting if peer_may_be_starting else broken).append(transfer.reason)
    elif expect_rdma and (fault := _rdma_fault(pair, transfer)):
        broken.append(fault)
    state = "broken" if broken else "waiting" if waiting else "ok"
    return PairResult(
        **_identity(pair),
        ok=state == "ok",
        state=state,
        # An ok verdict kept across timed-out probes says so (keep_verdict_if_slow).
        reason="; ".join(broken + waiting) or (transfer.reason if transfer and transfer.ok else ""),
        side_channel_reachable=side_channel_error is None,
        transport=transfer.transport if transfer else None,
        transport_class=transfer.transport_class if transfer else None,
        bandwidth_gbps=transfer.bandwidth_gbps if transfer else None,
        latency_ms=transfer.latency_ms if transfer else None,
        verified=transfer.verified if transfer else False,
        measured_by=host,
        checked_at=checked_at,
    )


def _unreported(pair: Pair, reason: str, state: str) -> PairResult:
    return PairResult(
        **_identity(pair),
        ok=False,
        state=state,
        reason=reason,
        measured_by=pair.decode_host,
        checked_at=now_iso(),
    )


def keep_verdict_if_slow(new: TransferResult, last: TransferResult | None, since_success_s: float,
                         grace_s: float, never_started_grace_s: float) -> TransferResult:
    """The last successful verdict, noted, when ``new`` only timed out less than ``grace_s`` after the
    last probe that succeeded (``never_started_grace_s`` when it never reached the network); ``new``
    otherwise.

    A probe that does not finish on an overloaded host (an engine compiling beside it: each probe is a
    process that imports nixl) says nothing about the path; probes that hang in the transfer for longer
    than the grace do. One that never got past its imports says nothing about the path for longer (seen: 17 minutes at load 40-60 on 2 cores while a vLLM
    surge instance compiled), but it is no success either: past its own grace no bytes have moved for too
    long to call the pair ok. A failed transfer is never excused."""
    if not new.timed_out or last is None or not last.ok:
        return new
    if since_success_s > (never_started_grace_s if new.never_started else grace_s):
        return new
    return last.model_copy(update={"reason": f"{new.reason}; kept the verdict of the probe at {last.checked_at}"})


class Prober:
    """Keeps the latest probe per peer host and judges all pairs of one agent, round after round."""

    def __init__(
        self,
        config: KvAgentConfig,
        session: aiohttp.ClientSession,
        source: LazySource,
        workers: ProbeWorkers,
        *,
        startup_grace_s: float | None = None,
    ):
        strangers = [p for p in config.pairs if config.host not in (p.prefill_host, p.decode_host)]
        if strangers:
            raise InputError(
                f"kv-agent config of host {config.host!r} lists pair {strangers[0].prefill} -> "
                f"{strangers[0].decode}, which runs on neither side here; re-render the config"
            )
        self.config = config
        self._session = session
        self._source = source
        self._workers = workers
        self._grace_until = time.monotonic() + (config.startup_grace_s if startup_grace_s is None else startup_grace_s)
        self._transfers: dict[str, TransferResult] = {}
        self._due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._reached: set[str] = set()  # side channels seen open at least once
        self._worked: set[str] = set()  # peer hosts with a successful probe at least once
        self._succeeded_at: dict[str, float] = {}  # peer host -> monotonic time of its last successful probe
        self.results: list[PairResult] = []
        self.new_transfers: list[TransferResult] = []  # the probes the last round ran
        self.rounds = 0

    def _measured(self) -> list[Pair]:
        return [p for p in self.config.pairs if p.decode_host == self.config.host]

    def _relayed(self) -> list[Pair]:
        return [p for p in self.config.pairs if p.decode_host != self.config.host]

    async def _source_info(self, pair: Pair) -> SourceInfo:
        if pair.prefill_host == self.config.host:
            return await self._source.info()
        url = f"{pair.peer_agent.rstrip('/')}/nixl/source"
        async with self._session.get(url, timeout=_HTTP_TIMEOUT) as response:
            if response.status != 200:
                raise aiohttp.ClientError(f"HTTP {response.status}: {(await response.text())[:200]}")
            return SourceInfo.model_validate(await response.json())

    async def _transfer(self, pair: Pair) -> TransferResult:
        peer = pair.prefill_host
        try:
            source = await self._source_info(pair)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return TransferResult(
                peer_host=peer, ok=False, checked_at=now_iso(),
                reason=f"cannot get NIXL metadata from the KV agent of {peer} at {pair.peer_agent} "
                f"({_describe(exc)}); is `xpdctl kv-agent` running there?",
            )
        except Exception as exc:  # noqa: BLE001 - nixl's own errors (no UCX plugin, registration) are plain
            return TransferResult(
                peer_host=peer, ok=False, checked_at=now_iso(),
                reason=f"cannot set up this host's NIXL probe buffer: {exc}",
            )
        return await run_transfer(
            self.config.host, peer, source, workers=self._workers,
            ucx_env=self.config.ucx_env, timeout_s=self.config.probe_timeout_s,
        )

    async def _run_due_transfers(self) -> None:
        by_peer: dict[str, Pair] = {}
        for pair in self._measured():
            by_peer.setdefault(pair.prefill_host, pair)
        self.new_transfers = []
        # One at a time: concurrent probes would share the NIC and understate each other's bandwidth.
        for peer, pair in by_peer.items():
            if time.monotonic() < self._due.get(peer, 0.0):
                continue
            probed = await self._transfer(pair)
            self.new_transfers.append(probed)
            if probed.ok:
                self._worked.add(peer)
                self._succeeded_at[peer] = time.monotonic()
            failures = 0 if probed.ok else self._failures.get(peer, 0) + 1
            self._failures[peer] = failures
            since_success = time.monotonic() - self._succeeded_at.get(peer, float("-inf"))
            self._transfers[peer] = keep_verdict_if_slow(probed, self._transfers.get(peer), since_success,
                                                         self.config.slow_probe_grace_s,
                                                         self.config.never_started_grace_s)
            delay = self.config.probe_interval_s
            if failures:
                delay = min(self.config.check_interval_s * 2 ** (failures - 1), delay)
            self._due[peer] = time.monotonic() + delay

    async def _relay(self, pairs: list[Pair]) -> list[PairResult]:
        reports: dict[str, list[PairResult] | str] = {}
        for agent in {p.peer_agent for p in pairs}:
            try:
                async with self._session.get(f"{agent.rstrip('/')}/pairs", timeout=_HTTP_TIMEOUT) as response:
                    body = await response.json()
                reports[agent] = [PairResult.model_validate(p) for p in body["pairs"]]
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError) as exc:
                reports[agent] = _describe(exc)
        state = "waiting" if time.monotonic() < self._grace_until else "broken"
        results = []
        for pair in pairs:
            report = reports[pair.peer_agent]
            if isinstance(report, str):
                results.append(_unreported(
                    pair, f"cannot reach the KV agent of decode host {pair.decode_host} at "
                    f"{pair.peer_agent} ({report}); start `xpdctl kv-agent` there", state))
                continue
            match = [r for r in report if (r.prefill, r.decode) == (pair.prefill, pair.decode)]
            results.append(match[0] if match else _unreported(
                pair, f"the KV agent of {pair.decode_host} does not report this pair; "
                "re-render and restart the kv-agents so their configs agree", "broken"))
        return results

    async def round(self) -> list[PairResult]:
        """Check every side channel, run the probes that are due, and judge every pair."""
        measured = self._measured()
        errors = await asyncio.gather(*(
            check_side_channel(p.side_channel, self.config.side_channel_timeout_s) for p in measured
        ))
        self._reached.update(p.side_channel for p, err in zip(measured, errors) if err is None)
        await self._run_due_transfers()
        checked_at = now_iso()
        in_grace = time.monotonic() < self._grace_until
        results = [
            judge_pair(
                pair,
                host=self.config.host,
                expect_rdma=self.config.expect_rdma,
                side_channel_error=err,
                engine_may_be_starting=in_grace and pair.side_channel not in self._reached,
                peer_may_be_starting=in_grace and pair.prefill_host not in self._worked,
                transfer=self._transfers.get(pair.prefill_host),
                checked_at=checked_at,
            )
            for pair, err in zip(measured, errors)
        ]
        results += await self._relay(self._relayed())
        self.results = results
        self.rounds += 1
        return results


async def probe_pairs_async(
    config: KvAgentConfig,
    *,
    wait_s: float = 0.0,
    on_round: Callable[[list[PairResult]], None] | None = None,
) -> list[PairResult]:
    """Probe every pair until all are ok or ``wait_s`` has passed; the last verdicts.

    Same-host pairs read from a NIXL source created in this process (it uses this process's UCX
    environment); cross-host pairs need ``xpdctl kv-agent`` serving on the peer host.
    """
    deadline = time.monotonic() + wait_s
    async with aiohttp.ClientSession() as session, ProbeWorkers(module=config.nixl_module) as workers:
        source = LazySource(config.host, config.probe_size_mib, config.nixl_module)
        prober = Prober(config, session, source, workers, startup_grace_s=wait_s)
        while True:
            results = await prober.round()
            if on_round:
                on_round(results)
            remaining = deadline - time.monotonic()
            if all(r.ok for r in results) or remaining <= 0:
                return results
            await asyncio.sleep(min(config.check_interval_s, remaining))


def probe_pairs(config: KvAgentConfig, *, wait_s: float = 0.0) -> list[PairResult]:
    """Synchronous :func:`probe_pairs_async`, for callers such as ``xpdctl up``."""
    return asyncio.run(probe_pairs_async(config, wait_s=wait_s))


def require_ok(results: list[PairResult]) -> None:
    """Raise ``UnhealthyError`` naming every pair that is not ok and why."""
    bad = [r for r in results if not r.ok]
    if bad:
        raise UnhealthyError(
            f"{len(bad)} of {len(results)} KV pair(s) not ok",
            details=[f"{r.prefill} -> {r.decode}: {r.state}: {r.reason}" for r in bad],
        )
