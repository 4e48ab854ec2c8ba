"""One MQTT connection driven from asyncio through paho-mqtt's public external-loop API.

Why paho directly, and not aiomqtt: the outbox must not delete a record that the broker refused
(an MQTT 5 PUBACK with a reason code of 0x80 or more: not authorised, quota exceeded). aiomqtt 2.x
waits for the PUBACK but drops its reason code, and offers no public hook to read it; paho-mqtt 2's
callback API (``CallbackAPIVersion.VERSION2``) hands it to ``on_publish``. aiomqtt itself is a thin
asyncio adapter over the same paho calls, so this module is that adapter, reduced to what the uplink
needs and written only against what paho documents for an external event loop:

- ``connect()`` blocks (TCP connect, TLS handshake), so it runs in a worker thread; it sends CONNECT
  from there. Only once it returned does the event loop take the socket (``socket()``, ``want_write()``,
  the ``on_socket_*`` callbacks) and drive it with ``loop_read()``, ``loop_write()`` and, each second,
  ``loop_misc()`` (keepalive).
- ``on_connect``, ``on_publish``, ``on_subscribe``, ``on_disconnect`` and ``on_message`` resolve futures and
  events on the loop; nothing here reads paho's private state.
- :meth:`Connection.abort` shuts the TCP socket down (``socket()`` is public) and lets paho find out on its
  next read: the broker sees a connection end without DISCONNECT, so it publishes the Will.

tests/contracts/ checks each of these paho and Mosquitto behaviours on the versions pinned in
``pyproject.toml``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.errors import GatewayError

__all__ = ["Connection", "MqttError", "PublishRefused", "Will"]

log = logging.getLogger(__name__)

ACK_TIMEOUT = 10.0
"""Seconds a publish or subscribe waits for the broker's acknowledgement before the connection is given up."""


class MqttError(GatewayError):
    """The broker could not be reached, or the connection to it ended or failed."""


class PublishRefused(MqttError):  # noqa: N818 - the name the delivery side already uses
    """The broker answered a publish with a failure reason code (MQTT 5): it does not have the message."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"broker refused a publish on {topic}: {reason}")
        self.topic = topic
        self.reason = reason


@dataclass(frozen=True)
class Will:
    """The message the broker publishes (QoS 1) when the connection ends without a DISCONNECT."""

    topic: str
    payload: bytes
    retain: bool = True


class Connection:
    """One connection to one broker: connect, publish (QoS 1), subscribe, disconnect or abort.

    Not reusable: every connection is a new object (no message of an earlier connection is sent again
    behind the outbox's back); ``clean=False`` (3.1.1) lets the broker keep our subscriptions between them.

    Args:
        host: broker host name or address.
        port: broker TCP port.
        client_id: MQTT client identifier; empty to let the broker assign one.
        protocol: ``"5"`` or ``"3.1.1"``.
        keepalive: seconds between PINGREQs when idle.
        will: left with the broker at CONNECT.
        tls: the TLS context for ``mqtts://`` (verifies the broker, may carry our certificate), or None.
        window: QoS 1 publishes paho puts on the wire before their PUBACKs (it queues the rest).
        on_message: called on the event loop with ``(topic, payload)`` of every message received.
        clean: MQTT 3.1.1 clean session (MQTT 5 always starts clean).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        protocol: Literal["5", "3.1.1"],
        keepalive: int,
        will: Will | None,
        tls: ssl.SSLContext | None,
        window: int,
        on_message: Callable[[str, bytes], None],
        clean: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.protocol = protocol
        self.keepalive = keepalive
        self.on_message = on_message
        self.session_present = False
        """What the broker said in CONNACK: it kept a session of this client id."""
        version = paho.MQTTv5 if protocol == "5" else paho.MQTTv311
        self.paho = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            clean_session=None if protocol == "5" else clean,
        )
        """The paho client, only through its public external-loop and on_* callback attributes (tests/contracts)."""
        self.paho.max_inflight_messages_set(window)
        if will is not None:
            self.paho.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        if tls is not None:
            self.paho.tls_set_context(tls)
        self.paho.on_socket_open = self._socket_opened  # before connect(): set TCP_NODELAY first
        self.paho.on_connect = self._connected
        self.paho.on_disconnect = self._disconnected
        self.paho.on_publish = self._published
        self.paho.on_subscribe = self._subscribed
        self.paho.on_message = self._received
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[None] | None = None
        self._closed = asyncio.Event()
        self._error: MqttError | None = None
        self._closing = False
        self._publishes: dict[int, tuple[asyncio.Future[None], str]] = {}
        self._subscribes: dict[int, asyncio.Future[None]] = {}
        self._misc: asyncio.Task[None] | None = None
        # Between the worker thread that connects and a cancelled connect(): who drops the socket.
        self._open_lock = threading.Lock()
        self._opened = self._abandoned = False

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def connect(self, timeout: float = ACK_TIMEOUT) -> None:  # noqa: ASYNC109 - bounds the whole handshake
        """Connect and wait for a successful CONNACK; :class:`MqttError` if that fails or takes too long."""
        loop = self._loop = asyncio.get_running_loop()
        self._connack = loop.create_future()
        try:
            await loop.run_in_executor(None, self._open)
        except asyncio.CancelledError:
            self._abandon()
            raise
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS failure, bad host name
            raise MqttError(f"{type(exc).__name__}: {exc}") from exc
        self._attach(loop)
        try:
            async with asyncio.timeout(timeout):
                await self._connack
        except TimeoutError:
            self.abort()
            raise MqttError(f"no CONNACK within {timeout} s") from None
        except BaseException:
            self.abort()
            raise

    async def disconnect(self, timeout: float) -> None:  # noqa: ASYNC109 - the bound is the point
        """Send DISCONNECT (the broker then discards the Will) and wait until the socket closed.

        A broker that does not take the packet within ``timeout`` s is dropped with :meth:`abort`.
        """
        if self._closed.is_set():
            return
        self._closing = True
        if self.paho.disconnect() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.abort()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._closed.wait()
        except TimeoutError:
            log.warning("broker did not take our DISCONNECT in %.0f s; dropping the connection", timeout)
            self.abort()

    def abort(self) -> None:
        """Drop the connection without a DISCONNECT packet, so that the broker publishes our Will."""
        sock = self.paho.socket()
        if not isinstance(sock, socket.socket):  # closed already (paho never opens websockets here)
            self._mark_closed(None)
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # paho's next read sees the end and closes its socket
        try:
            self.paho.loop_read()
        except Exception as exc:
            log.debug("reading a dropped connection: %s", exc)
        if self.paho.socket() is not None:  # paho did not notice: there is nothing left to drive anyway
            self._mark_closed(self._error or MqttError("connection dropped"))

    async def wait_closed(self) -> None:
        """Return when the connection ended; :class:`MqttError` if it was lost rather than closed by us."""
        await self._closed.wait()
        if self._error is not None:
            raise self._error

    # -- requests ------------------------------------------------------------------------------------------

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: Properties | None = None
    ) -> None:
        """Publish with QoS 1 and wait for the PUBACK; :class:`PublishRefused` if it carries a failure code."""
        self._check_open()
        info = self.paho.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish on {topic} failed: {paho.error_string(info.rc)}")
        done = self._future()
        self._publishes[info.mid] = (done, topic)
        try:
            async with asyncio.timeout(ACK_TIMEOUT):
                await done
        except TimeoutError:
            raise MqttError(f"no PUBACK for a publish on {topic} within {ACK_TIMEOUT} s") from None
        finally:
            self._publishes.pop(info.mid, None)

    async def subscribe(self, topic: str) -> bool:
        """Subscribe with QoS 1; True if the broker granted it (False: refused, e.g. by an ACL)."""
        self._check_open()
        rc, mid = self.paho.subscribe(topic, qos=1)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe to {topic} failed: {paho.error_string(rc)}")
        done = self._future()
        self._subscribes[mid] = done
        try:
            async with asyncio.timeout(ACK_TIMEOUT):
                await done
        except TimeoutError:
            raise MqttError(f"no SUBACK for {topic} within {ACK_TIMEOUT} s") from None
        except _SubscriptionRefusedError:
            return False
        finally:
            self._subscribes.pop(mid, None)
        return True

    # -- the socket on the event loop ----------------------------------------------------------------------

    def _open(self) -> None:
        """In a worker thread: TCP (and TLS) connect, then CONNECT, written from here."""
        # MQTT 5 asks for a clean start; 3.1.1 has it from clean_session (paho refuses clean_start there).
        if self.protocol == "5":
            self.paho.connect(self.host, self.port, self.keepalive, clean_start=True)
        else:
            self.paho.connect(self.host, self.port, self.keepalive)
        with self._open_lock:
            self._opened = True
            if self._abandoned:  # connect() was cancelled meanwhile: nobody will drive this socket
                self._drop_unattached()

    def _abandon(self) -> None:
        with self._open_lock:
            self._abandoned = True
            if self._opened:
                self._drop_unattached()

    def _drop_unattached(self) -> None:
        """Drop a socket the event loop never took (possibly from the worker thread): ``_disconnected`` ignores it."""
        sock = self.paho.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            self.paho.loop_read()  # paho sees the end and closes its socket

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand paho's socket to the event loop (CONNECT is out or waiting to be written)."""
        sock = self.paho.socket()
        if sock is None:
            raise MqttError("the connection closed during CONNECT")
        self.paho.on_socket_close = self._socket_closed
        self.paho.on_socket_register_write = self._want_write
        self.paho.on_socket_unregister_write = self._written
        loop.add_reader(sock, self._readable)
        if self.paho.want_write():
            loop.add_writer(sock, self._writable)
        self._misc = loop.create_task(self._keepalive(), name="mqtt-keepalive")

    def _socket_opened(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        # Small packets (PUBACKs, results) must not wait for Nagle + delayed ACK: ~40 ms each.
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _socket_closed(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _want_write(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._writable)

    def _written(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _readable(self) -> None:
        try:
            while True:
                self.paho.loop_read()
                sock = self.paho.socket()
                # A TLS record may hold more packets than one read returned; select() will not tell.
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    break
        except Exception as exc:  # a broken socket surfaces as an exception on some paths
            self._fail(exc)

    def _writable(self) -> None:
        try:
            self.paho.loop_write()
        except Exception as exc:
            self._fail(exc)

    async def _keepalive(self) -> None:
        # paho's keepalive is a poll: loop_misc() sends PINGREQ when due and gives up on a silent broker.
        while self.paho.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:  # noqa: ASYNC110
            await asyncio.sleep(1.0)

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = MqttError(f"connection failed: {type(exc).__name__}: {exc}")
        self.abort()

    # -- paho's callbacks (on the event loop once attached) ------------------------------------------------

    def _connected(self, _client: paho.Client, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any) -> None:
        self.session_present = bool(flags.session_present)
        if self._connack is None or self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(MqttError(f"broker refused the connection: {reason}"))
        else:
            self._connack.set_result(None)

    def _disconnected(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _p: Any) -> None:
        if self._abandoned:  # a cancelled connect()'s socket, dropped by _drop_unattached: nobody is waiting
            return
        if self._error is None and not self._closing:
            self._error = MqttError(f"connection lost: {reason}")
        self._mark_closed(self._error or MqttError("connection closed"))

    def _mark_closed(self, error: MqttError | None) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(error or MqttError("connection closed"))
        failure = error or MqttError("connection closed")
        for done, _topic in self._publishes.values():
            if not done.done():
                done.set_exception(failure)
        for done in self._subscribes.values():
            if not done.done():
                done.set_exception(failure)
        if self._misc is not None:
            self._misc.cancel()
        self._closed.set()

    def _published(self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any) -> None:
        pending = self._publishes.get(mid)
        if pending is None or pending[0].done():
            return
        done, topic = pending
        if reason.is_failure:
            done.set_exception(PublishRefused(topic, str(reason)))
        else:
            done.set_result(None)

    def _subscribed(
        self, _client: paho.Client, _userdata: Any, mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        done = self._subscribes.get(mid)
        if done is None or done.done():
            return
        if any(reason.is_failure for reason in reasons):
            done.set_exception(_SubscriptionRefusedError())
        else:
            done.set_result(None)

    def _received(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self.on_message(message.topic, bytes(message.payload))
        except Exception:  # a bug in a handler must not cut the broker connection
            log.exception("message handler failed")

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise self._error or MqttError("connection closed")

    def _future(self) -> asyncio.Future[None]:
        assert self._loop is not None
        return self._loop.create_future()


class _SubscriptionRefusedError(MqttError):
    """A SUBACK with a failure reason code."""
