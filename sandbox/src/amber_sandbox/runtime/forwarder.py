"""A Service's data path: a TCP forwarder from the Service's loopback address to its pods.

Pods share the host's network namespace, each with its own loopback IP; a Service gets another
loopback IP, and the agent runs one ``PortForwarder`` per Service port, listening on
``service_ip:port`` and connecting each accepted connection to an endpoint (``pod_ip:targetPort``),
round-robin over the endpoints, skipping ones that refuse. This is what kube-proxy's userspace
mode did. One asyncio loop in a daemon thread carries all of a forwarder's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Sequence
from types import TracebackType

_BUFFER = 64 * 1024


class PortForwarder:
    def __init__(self, listen_ip: str, port: int, target_ip: str, target_port: int, *,
                 connect_timeout: float = 5.0) -> None:
        self.listen_ip = listen_ip
        self.port = port
        self._targets: list[tuple[str, int]] = [(target_ip, target_port)]
        self._next = itertools.count()
        self._connect_timeout = connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def targets(self) -> list[tuple[str, int]]:
        return list(self._targets)

    def set_targets(self, targets: Sequence[tuple[str, int]]) -> None:
        """Replace the endpoints (pods came or went); open connections are kept."""
        self._targets = list(targets)

    def start(self) -> None:
        """Listen (errors such as EADDRINUSE raise here); ``port`` 0 picks a free port."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True,
                                  name=f"forward-{self.listen_ip}:{self.port}")
        thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, self.listen_ip, self.port), loop)
        try:
            self._server = future.result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop, self._thread = loop, thread

    def stop(self) -> None:
        """Stop listening and close every forwarded connection; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    def __enter__(self) -> PortForwarder:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
            finally:
                up_writer.close()
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        targets = list(self._targets)
        start = next(self._next)
        for i in range(len(targets)):
            host, port = targets[(start + i) % len(targets)]
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                return await asyncio.wait_for(asyncio.open_connection(host, port),
                                              self._connect_timeout)
        return None


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the half-close on (so request/response protocols still work)."""
    try:
        while data := await reader.read(_BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
