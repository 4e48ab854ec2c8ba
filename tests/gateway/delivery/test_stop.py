"""The stop path finishes whatever the broker does: unreachable, half-open, refusing.

Three brokers a gateway may meet when it is told to stop:

- *unreachable*: nothing listens on the port (the connection is refused at once);
- *half-open*: a TCP listener written here that accepts and never answers, so the gateway waits for a
  CONNACK that never comes;
- *refusing*: a real Mosquitto that answers every CONNECT with "not authorised".

For each, a real ``streetedge run`` subprocess gets SIGTERM, and an in-process gateway is stopped with
:meth:`Gateway.stop` and, separately, cancelled. Each must be finished within :data:`STOP_BOUND`
seconds (documented in docs/reliability.md). The bound is a hang detector, not a performance figure:
a gateway that stops does so in well under a second; one that hangs never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.service.daemon import Gateway
from tools.broker import LocalBroker, free_port

STOP_BOUND = 10.0
"""Seconds within which a stopping (or cancelled) gateway has finished, whatever the broker does."""


class HalfOpenBroker:
    """A TCP listener on loopback that accepts connections, reads what comes, and never answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="half-open-broker", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The broker URL a gateway is configured with."""
        return f"mqtt://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            conns: list[socket.socket] = []
            while not self._closing.is_set():
                for key, _ in sel.select(0.1):
                    if key.fileobj is self._listener:
                        conn, _ = self._listener.accept()
                        conns.append(conn)
                        sel.register(conn, selectors.EVENT_READ)
                        self.accepted.set()
                    else:
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        if not sock.recv(4096):  # the client gave up: forget it
                            sel.unregister(sock)
                            sock.close()
                            conns.remove(sock)
            for conn in conns:
                conn.close()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closing.set()
        self._thread.join(5)
        self._listener.close()


class Unreachable:
    """A loopback port nobody listens on: every connection is refused."""

    def __init__(self) -> None:
        self.port = free_port()
        self.accepted = None

    @property
    def url(self) -> str:
        """The broker URL a gateway is configured with."""
        return f"mqtt://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Nothing to release."""


@contextlib.contextmanager
def broker(kind: str) -> Iterator[HalfOpenBroker | Unreachable | LocalBroker]:
    """The broker of one scenario, released afterwards."""
    if kind == "refusing":
        with LocalBroker("mosquitto", extra_config="allow_anonymous false") as refusing:
            yield refusing
        return
    fake = HalfOpenBroker() if kind == "half-open" else Unreachable()
    try:
        yield fake
    finally:
        fake.close()


BROKERS = ["unreachable", "half-open", "refusing"]


def config_text(url: str, outbox: Path) -> str:
    """A gateway without buses (nothing to poll), with an outbox file and one broker URL."""
    return "\n".join([
        'site = "test-site"', 'gateway = "gw-stop"', "[broker]", f'url = "{url}"', "keepalive = 10",
        "[delivery]", f'outbox = "{outbox}"', "[http]", "enabled = false", "",
    ])


def until(check: Callable[[], object], within: float, what: str) -> None:
    """Wait (blocking) until ``check()`` is truthy; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what}: not reached within {within} s"
        time.sleep(0.02)


@pytest.mark.parametrize("kind", BROKERS)
def test_sigterm_ends_a_streetedge_run_process(kind: str, tmp_path: Path) -> None:
    """SIGTERM to a real ``streetedge run``: the process exits cleanly (status 0) within the bound."""
    with broker(kind) as peer:
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(config_text(peer.url, tmp_path / "outbox.db"))
        log = tmp_path / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "-c", str(cfg)],
                                    stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            # Stop it while it is trying the broker: after its first attempt (or while it waits for the CONNACK).
            if isinstance(peer, HalfOpenBroker):
                until(lambda: peer.accepted.is_set() or proc.poll() is not None, 60, "a connection to the broker")
            else:  # Mosquitto's refusal is logged with its reason
                seen = "Not authorized" if kind == "refusing" else "unreachable"
                until(lambda: seen in log.read_text() or proc.poll() is not None, 60, f"{seen!r} in the log")
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            try:
                status = proc.wait(STOP_BOUND)
                print(f"{kind} broker: SIGTERM to exit {time.monotonic() - signalled:.2f} s")  # docs/reliability.md
            except subprocess.TimeoutExpired:
                pytest.fail(f"streetedge run did not exit within {STOP_BOUND} s of SIGTERM:\n{log.read_text()}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert status == 0, log.read_text()
    assert "gateway stopped" in log.read_text()


async def stopped_within(task: asyncio.Task[None], bound: float) -> None:
    """Wait for ``task`` to finish, at most ``bound`` seconds; fail (showing where it hangs) otherwise."""
    done, _ = await asyncio.wait({task}, timeout=bound)
    if not done:
        where = "\n".join(str(frame) for frame in task.get_stack())
        task.cancel()
        pytest.fail(f"the gateway did not finish within {bound} s; it waits in:\n{where}")


def in_process(kind: str, tmp_path: Path, ending: Callable[[Gateway, asyncio.Task[None]], None],
               pty_pair: tuple[str, str], sim: object) -> None:
    """Run a polling gateway (one simulated lamp, no reachable broker), end it with ``ending``, check it ends."""
    gw_end, node_end = pty_pair
    with broker(kind) as peer:
        config = sim.config(  # type: ignore[attr-defined]
            gw_end, peer.url, interval=0.02, extra=f'[delivery]\noutbox = "{tmp_path / "outbox.db"}"\n'
        )
        gateway = Gateway(config)

        async def main() -> None:
            async with sim.serve(node_end, [sim.lamp(1)]):  # type: ignore[attr-defined]
                task = asyncio.create_task(gateway.run())
                await wait_for(lambda: gateway.stats.outbox_stored >= 20 or task.done(), "polls stored")
                if isinstance(peer, HalfOpenBroker):
                    await wait_for(peer.accepted.is_set, "a connection to the half-open broker")
                assert not task.done(), "the gateway ended on its own"
                ending(gateway, task)
                began = time.monotonic()
                await stopped_within(task, STOP_BOUND)
                print(f"{kind} broker: ended in {time.monotonic() - began:.2f} s")  # docs/reliability.md
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                assert not pollers(), "a poller outlived the gateway"

        asyncio.run(main())


def pollers() -> list[str]:
    """Names of the poller tasks still running in this loop."""
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("poll-") and not t.done()]


async def wait_for(check: Callable[[], object], what: str, within: float = 60.0) -> None:
    """Wait in the loop until ``check()`` is truthy."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what}: not reached within {within} s"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", BROKERS)
def test_stop_ends_a_polling_gateway(kind: str, tmp_path: Path, pty_pair: tuple[str, str], sim: object) -> None:
    """``Gateway.stop()`` while polls pile up and the broker does not take them: run() returns."""
    in_process(kind, tmp_path, lambda gateway, _task: gateway.stop(), pty_pair, sim)


@pytest.mark.parametrize("kind", BROKERS)
def test_cancellation_ends_a_polling_gateway(
    kind: str, tmp_path: Path, pty_pair: tuple[str, str], sim: object
) -> None:
    """Cancelling the task that runs the gateway ends it, whatever the broker does."""
    in_process(kind, tmp_path, lambda _gateway, task: task.cancel(), pty_pair, sim)



def test_asyncio_wait_for_drops_a_cancellation_that_arrives_with_the_result() -> None:
    """The trap behind the old stop hang, checked on this interpreter.

    pymodbus awaits every answer with ``asyncio.wait_for``. On Python 3.11, a task cancelled while the
    result it waits for is already in returns that result and forgets the cancellation (CPython
    gh-86296, fixed in 3.12). A poller cancelled that way polls on; whoever waits for it to end waits
    for ever, unless it cancels again.
    """

    async def main() -> bool:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def read() -> bool:
            answer.set_result("words")  # the answer is in ...
            await asyncio.wait_for(answer, 5)  # ... and the cancel arrives before this resumes
            return True  # still running: the cancellation was lost

        task = asyncio.create_task(read())
        await asyncio.sleep(0)  # read() now waits inside wait_for
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "the task neither ended nor lost its cancellation"
        return not task.cancelled()

    lost = asyncio.run(main())
    assert lost is (sys.version_info < (3, 12)), "the premise of the stop-path tests changed with this Python"


@pytest.mark.parametrize("ending", ["stop", "cancel"])
def test_a_poller_that_loses_its_cancellation_does_not_hold_up_the_stop(
    ending: str, tmp_path: Path, pty_pair: tuple[str, str], sim: object
) -> None:
    """The old no-broker hang, made deterministic: the stop arrives just as a poll's answer is in.

    The poll's read goes through ``asyncio.wait_for`` with its answer already there, as pymodbus's does
    when the answer and the stop come in the same loop step; that drops the poller's cancellation (see
    the test above). The gateway must still end within the bound: it cancels again until its tasks end.
    """
    gw_end, node_end = pty_pair
    with broker("unreachable") as peer:
        config = sim.config(  # type: ignore[attr-defined]
            gw_end, peer.url, interval=0.02, extra=f'[delivery]\noutbox = "{tmp_path / "outbox.db"}"\n'
        )
        gateway = Gateway(config)

        async def main() -> None:
            async with sim.serve(node_end, [sim.lamp(1)]):  # type: ignore[attr-defined]
                task = asyncio.create_task(gateway.run())
                await wait_for(lambda: gateway.stats.outbox_stored >= 5 or task.done(), "polls stored")
                assert gateway.polling is not None and not task.done()
                bus = gateway.polling.buses["bus0"]
                real_read = bus.read_requests
                raced = asyncio.Event()

                async def read_requests(*args: object, **kwargs: object) -> object:
                    answer = await real_read(*args, **kwargs)  # type: ignore[arg-type]
                    if raced.is_set():
                        return answer
                    raced.set()
                    if ending == "stop":
                        gateway.stop()
                    else:
                        task.cancel()
                    ready = asyncio.get_running_loop().create_future()
                    ready.set_result(answer)
                    return await asyncio.wait_for(ready, 5)  # the stop's cancellation lands here

                bus.read_requests = read_requests  # type: ignore[method-assign]
                await wait_for(raced.is_set, "a poll raced with the stop")
                await stopped_within(task, STOP_BOUND)
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                assert not pollers(), "a poller outlived the gateway"

        asyncio.run(main())
