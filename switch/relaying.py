"""The RTP relay of recorded calls, as the switch runs it (`[media] relay`, README "Call
recording"):

- `embedded` (default): the Python relay (`media.relay.embedded`) as a child process of the
  switch, `softswitch relay --die-with-parent …`: started before the proxy takes calls,
  restarted (same ng port) if it exits, stopped with SIGTERM (it finishes its recordings) when
  the switch stops, and killed by the kernel if the switch dies first (PR_SET_PDEATHSIG).
  Why a process of its own: RTP is 50 packets a second per party, and in the switch's event
  loop every SIP burst delays it (and every RTP burst delays SIP); measured in the README.
- `inprocess`: the same relay in the switch's event loop (one process; for small sites).
- `udp:HOST:PORT`: rtpengine's ng socket. Its pcap spool (`[media] relay_spool`) is converted
  by the node's RecordingKeeper (switch/recordings.py).
- `off`: no relay: nothing is anchored, nothing recorded.

`NgRelay` adapts `media.relay.client.NgClient` to the proxy's `RelayClient` (its errors become
`RelayError`s with their kind) and feeds the ng metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from media.relay.client import NgClient
from media.relay.core import RelayConfig
from media.relay.embedded import EmbeddedRelay
from media.relay.errors import NgError
from media.relay.recorder import PcmWriter
from media.relay.sink import DirectorySink, RecordingMeta
from media.ua.config import MediaConfig
from switch.proxy.anchor import MediaAnchors, RelayError, RelayMetrics

__all__ = ["NgRelay", "RelayRuntime"]

log = logging.getLogger(__name__)

_LISTENING = re.compile(rb"relay listening ng=(\S+):(\d+)")
_START_TIMEOUT = 15.0
_RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0)
_KINDS = {
    "NgTimeout": "timeout",
    "NgUnreachable": "unreachable",
    "NgRefused": "refused",
    "NgProtocolError": "malformed",
}


class NgRelay:
    """`switch.proxy.anchor.RelayClient` over an `NgClient` (module docstring); `ready()`
    gives the client, starting the relay first when it is not running yet."""

    def __init__(self, ready: Callable[[], Awaitable[NgClient]]) -> None:
        self.ready = ready

    async def _do(self, request: Callable[[NgClient], Awaitable[Any]]) -> Any:
        try:
            client = await self.ready()
            return await request(client)
        except NgError as exc:
            raise RelayError(_KINDS.get(type(exc).__name__, "malformed"), str(exc)) from exc
        except OSError as exc:  # the relay process could not be started
            raise RelayError("unreachable", str(exc)) from exc

    async def offer(
        self, *, call_id: str, from_tag: str, sdp: bytes, via_branch: str | None,
        to_tag: str | None, label: str, record: bool, metadata: str | None,
    ) -> bytes:  # fmt: skip
        result: bytes = await self._do(lambda c: c.offer(
            call_id=call_id, from_tag=from_tag, sdp=sdp, via_branch=via_branch, to_tag=to_tag,
            label=label, record=record, metadata=metadata,
        ))  # fmt: skip
        return result

    async def answer(
        self, *, call_id: str, from_tag: str, to_tag: str, sdp: bytes, via_branch: str | None,
        label: str, record: bool, metadata: str | None,
    ) -> bytes:  # fmt: skip
        result: bytes = await self._do(lambda c: c.answer(
            call_id=call_id, from_tag=from_tag, to_tag=to_tag, sdp=sdp, via_branch=via_branch,
            label=label, record=record, metadata=metadata,
        ))  # fmt: skip
        return result

    async def delete(
        self, *, call_id: str, from_tag: str | None = None, via_branch: str | None = None
    ) -> Mapping[str, Any]:
        reply: Mapping[str, Any] = await self._do(
            lambda c: c.delete(call_id=call_id, from_tag=from_tag, via_branch=via_branch)
        )
        return reply

    async def query(self, *, call_id: str) -> Mapping[str, Any]:
        reply: Mapping[str, Any] = await self._do(lambda c: c.query(call_id=call_id))
        return reply

    async def block_media(self, *, call_id: str, from_tag: str) -> None:
        await self._do(lambda c: c.block_media(call_id=call_id, from_tag=from_tag))

    async def unblock_media(self, *, call_id: str, from_tag: str) -> None:
        await self._do(lambda c: c.unblock_media(call_id=call_id, from_tag=from_tag))

    async def play_media(self, *, call_id: str, from_tag: str, file: str) -> int | None:
        ms: int | None = await self._do(
            lambda c: c.play_media(call_id=call_id, from_tag=from_tag, file=file)
        )
        return ms


class _Waking:
    """A DirectorySink that tells the recording keeper when a recording is finished (the
    in-process relay: the keeper registers it at once instead of at its next scan)."""

    def __init__(self, inner: DirectorySink, finished: Callable[[], None]) -> None:
        self.inner = inner
        self.finished = finished

    def open(self, call_id: str, meta: RecordingMeta) -> PcmWriter:
        return self.inner.open(call_id, meta)

    def close(self, writer: PcmWriter, meta: RecordingMeta) -> None:
        self.inner.close(writer, meta)
        self.finished()

    def discard(self, writer: PcmWriter, meta: RecordingMeta) -> None:
        self.inner.discard(writer, meta)


class RelayRuntime:
    """The relay the switch uses (module docstring). `start()`, then `anchors(…)` for the
    proxy; `stop()` at the end."""

    def __init__(
        self,
        section: MediaConfig,
        *,
        host: str,
        recordings: Path,
        notice: Path,
        finished: Callable[[], None] = lambda: None,
    ) -> None:
        self.section = section
        self.mode = section.relay if not section.relay.startswith("udp:") else "rtpengine"
        self.host = section.relay_host or host
        self.recordings = recordings
        self.notice = notice
        self.finished = finished
        self.client: NgClient | None = None
        self.inprocess: EmbeddedRelay | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.ng: tuple[str, int] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._metrics: RelayMetrics | None = None
        self._starting: asyncio.Lock | None = None
        self._preparing = False
        self.restarts = 0

    @property
    def name(self) -> str:
        """The relay's label in metrics."""
        return "rtpengine" if self.mode == "rtpengine" else "embedded"

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """rtpengine and the in-process relay are ready at once; the relay process starts
        when the first recorded call needs it, or earlier through `prepare()` (the switch
        calls it as soon as a number with the recording option exists)."""
        if self.mode == "rtpengine":
            self.ng = self.section.relay_address
        elif self.mode == "inprocess":
            await self._start_inprocess()
        if self.ng is not None:
            self.client = NgClient(self.ng, observer=self._observe)
            log.info("relay %s at ng %s:%d", self.mode, *self.ng)

    async def ready(self) -> NgClient:
        """The ng client, once the relay runs (OSError if the process cannot start)."""
        if self.client is not None:
            return self.client
        if self._stopping:
            raise OSError("the switch is stopping")
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self.client is None:
                self.recordings.mkdir(parents=True, exist_ok=True)
                await self._spawn(0)
                self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
                assert self.ng is not None
                self.client = NgClient(self.ng, observer=self._observe)
        return self.client

    def prepare(self) -> None:
        """Start the relay process in the background, if it is one and not running."""
        if self.mode == "embedded" and self.client is None and not self._preparing:
            self._preparing = True
            asyncio.get_running_loop().create_task(self._prepare())

    async def _prepare(self) -> None:
        try:
            await self.ready()
        except OSError as exc:
            log.error("relay process not started: %s", exc)
        finally:
            self._preparing = False

    @property
    def process_id(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.client is not None:
            await self.client.close()
        if self.inprocess is not None:
            await self.inprocess.stop()
        await self._terminate()

    def anchors(self, metrics: Any, scheduler: Any) -> MediaAnchors | None:
        """The proxy's anchors over this relay (None when `relay = "off"`)."""
        if self.mode == "off":
            return None
        self._metrics = RelayMetrics.of(metrics)
        return MediaAnchors(
            NgRelay(self.ready), metrics=metrics, relay=self.name,
            record_on_offer=self.mode == "rtpengine", notice_file=str(self.notice),
            scheduler=scheduler,
        )  # fmt: skip

    def _observe(self, command: str, outcome: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.observe(self.name, command, outcome, seconds)

    # ---------------------------------------------------------------- in process
    async def _start_inprocess(self) -> None:
        sink = DirectorySink(self.recordings)
        self.recordings.mkdir(parents=True, exist_ok=True)
        for path in sink.recover():
            log.warning("recovered the partial recording %s", path)
        self.inprocess = EmbeddedRelay(
            ng_host="127.0.0.1", media_address=self.host, ports=self.section.relay_ports,
            recordings=_Waking(sink, self.finished), media_root=self.notice.parent,
            config=RelayConfig(),
        )  # fmt: skip
        await self.inprocess.start()
        self.ng = self.inprocess.ng_address

    # ---------------------------------------------------------------- child process
    def _command(self, port: int) -> list[str]:
        ports = self.section.relay_ports
        return [
            sys.executable, "-m", "switch", "relay", "--die-with-parent", str(os.getpid()),
            f"--ng=127.0.0.1:{port}", f"--media-address={self.host}",
            f"--ports={ports.first}-{ports.last}", f"--recordings={self.recordings}",
            f"--media-dir={self.notice.parent}",
        ]  # fmt: skip

    async def _spawn(self, port: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._command(port), stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        self.process = proc
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), _START_TIMEOUT)
        except TimeoutError:
            line = b""
        found = _LISTENING.search(line)
        if found is None:
            await self._terminate()
            raise OSError(f"the relay process did not start (said {line!r})")
        self.ng = (found[1].decode(), int(found[2]))
        log.info("relay process %s at ng %s:%d", proc.pid, *self.ng)

    async def _supervise(self) -> None:
        """Restart the relay when it exits (same ng port, so the proxy's client is unchanged)."""
        failures = 0
        while not self._stopping:
            proc = self.process
            if proc is not None:
                assert proc.stdout is not None
                while await proc.stdout.read(4096):  # it prints one line; drain until it exits
                    pass
                code = await proc.wait()
                if self._stopping:
                    return
                self.restarts += 1
                log.error("relay process exited (%s); restarting it", code)
            await asyncio.sleep(_RESTART_BACKOFF[min(failures, len(_RESTART_BACKOFF) - 1)])
            try:
                assert self.ng is not None
                await self._spawn(self.ng[1])
                failures = 0
            except OSError as exc:
                self.process = None
                failures += 1
                log.error("relay restart failed: %s", exc)

    async def _terminate(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
