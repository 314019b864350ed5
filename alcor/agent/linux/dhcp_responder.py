"""The in-agent DHCPv4 responder (the OVN model, no dnsmasq): one AF_PACKET socket per served
interface (a local port's tap), each with a classic BPF filter so only frames to UDP port 67
reach Python, all served by one selector thread.  It answers only the port's own MAC, with
that port's ``Lease``: DISCOVER -> OFFER, REQUEST -> ACK (NAK for another address), INFORM ->
ACK without lease times, unicast renewals included; RELEASE and DECLINE are logged (the
address is fixed, there is nothing to free or to offer instead).

Sockets are opened by the responder's own thread, so they live in the network namespace that
was current in the thread that called ``start()`` (the agent's host netns).  ``serve`` on an
interface that does not exist yet does not fail: the responder retries every
``retry_interval`` seconds and starts answering when it appears (Nova creates its taps when it
likes); an interface that disappears is reopened the same way.  ``serve`` and ``forget`` are
thread-safe and take effect before they return."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import queue
import selectors
import socket
import struct
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from alcor.agent.linux.dhcp_packet import (
    ACK,
    BOOTREQUEST,
    DECLINE,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    PACKET_OUTGOING,
    RELEASE,
    REQUEST,
    DhcpMessage,
    MalformedPacket,
    build_reply,
    check_lease,
    parse_frame,
    server_filter,
)
from alcor.agent.linux.lease import Lease

log = logging.getLogger(__name__)

SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003
IFNAMSIZ = 16
COMMAND_TIMEOUT = 10.0
_MISSING = (errno.ENODEV, errno.ENXIO)


def decide(request: DhcpMessage, lease: Lease) -> int | None:
    """The reply (OFFER, ACK, NAK) the server owes ``request`` from ``lease``'s client, or
    None when it must stay silent: another MAC, a relayed or non-request message, a REQUEST
    for another server, RELEASE, DECLINE."""
    mac = lease.mac.lower()
    if request.op != BOOTREQUEST or request.chaddr != mac or request.src_mac != mac:
        return None
    if request.giaddr != "0.0.0.0":
        return None  # relayed: not a client on this port's link
    kind = request.message_type
    if kind == DISCOVER:
        return OFFER
    if kind == REQUEST:
        return _answer_request(request, lease)
    if kind == INFORM:
        return ACK
    return None


def _answer_request(request: DhcpMessage, lease: Lease) -> int | None:
    """SELECTING (server id + requested ip), INIT-REBOOT (requested ip) or RENEWING/REBINDING
    (ciaddr), RFC 2131 section 4.3.2."""
    if request.server_id is not None and request.server_id != lease.server_ip:
        return None  # the client chose another server's offer
    asked = request.requested_ip
    if asked is None and request.ciaddr != "0.0.0.0":
        asked = request.ciaddr
    if asked is None:
        return None
    return ACK if asked == lease.ip else NAK


def open_server_socket(interface: str) -> socket.socket:
    """A non-blocking packet socket on ``interface`` that receives only frames to UDP port 67.
    It binds to ETH_P_ALL, not ETH_P_IP: on a bridge port the bridge's rx handler consumes
    frames before protocol-specific packet sockets see them, only ETH_P_ALL taps run first
    (which also see outgoing frames; the filter drops those).  The filter is attached before
    the socket is bound to a protocol, so nothing unfiltered is ever queued.  Raises OSError
    (ENODEV when the interface does not exist)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        program = server_filter()
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.bind((interface, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Binding:
    """One open server socket and the MAC of the interface it is bound to."""

    sock: socket.socket
    mac: str
    ifindex: int


def _interface_mac(sock: socket.socket) -> str:
    address = sock.getsockname()[4]
    return ":".join(f"{byte:02x}" for byte in address[:6])


class DhcpResponder:
    """Answers DHCPv4 for the leases it serves, one lease per interface."""

    def __init__(self, retry_interval: float = 1.0) -> None:
        self._retry_interval = retry_interval
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._running = False
        self._commands: queue.SimpleQueue[tuple[str, Future[bool]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._started: Future[None] | None = None
        # Owned by the selector thread once started:
        self._selector: selectors.DefaultSelector | None = None
        self._waker: tuple[socket.socket, socket.socket] | None = None
        self._bindings: dict[str, _Binding] = {}
        self._pending: set[str] = set()
        self._next_retry = 0.0

    # -- public API, any thread ------------------------------------------------------------

    def start(self) -> None:
        """Start the selector thread (in the caller's network namespace) and open a socket for
        every lease already served."""
        with self._lock:
            if self._running:
                return
            self._running = True
            self._waker = socket.socketpair()
            for end in self._waker:
                end.setblocking(False)
            self._started = Future()
            self._thread = threading.Thread(target=self._run, name="dhcp-responder", daemon=True)
            self._thread.start()
            started = self._started
        started.result(timeout=COMMAND_TIMEOUT)

    def stop(self) -> None:
        """Stop the thread and close every socket; served leases are kept for a later start."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            thread, waker = self._thread, self._waker
        assert thread is not None and waker is not None
        self._wake(waker)
        thread.join()
        for sock in waker:
            sock.close()
        self._waker = None

    def serve(self, interface: str, lease: Lease) -> bool:
        """Answer DHCP on ``interface`` with ``lease`` (replacing any earlier lease there).
        True when the interface's socket is open; False when the interface does not exist yet
        (or the responder is not started): it will be retried.  Raises OSError for any other
        failure to open the socket (e.g. no CAP_NET_RAW), ValueError for a bad name or lease."""
        if not interface or len(interface) >= IFNAMSIZ or "/" in interface:
            raise ValueError(f"not an interface name: {interface!r}")
        check_lease(lease)
        with self._lock:
            self._leases[interface] = lease
        return self._reconcile(interface)

    def forget(self, interface: str) -> None:
        """Stop answering on ``interface`` and close its socket (no-op when not served)."""
        with self._lock:
            self._leases.pop(interface, None)
        self._reconcile(interface)

    def served(self) -> dict[str, Lease]:
        """Interface -> lease for everything served (open or waiting for its interface)."""
        with self._lock:
            return dict(self._leases)

    def listening(self, interface: str) -> bool:
        """Whether ``interface`` has an open socket right now."""
        return interface in self._bindings

    # -- commands to the selector thread ---------------------------------------------------

    def _reconcile(self, interface: str) -> bool:
        done: Future[bool] = Future()
        with self._lock:
            if not self._running:
                return False
            self._commands.put((interface, done))
            waker = self._waker
        assert waker is not None
        self._wake(waker)
        return done.result(timeout=COMMAND_TIMEOUT)

    @staticmethod
    def _wake(waker: tuple[socket.socket, socket.socket]) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake with bytes queued
            waker[1].send(b"\x00")

    # -- the selector thread ---------------------------------------------------------------

    def _run(self) -> None:
        assert self._waker is not None and self._started is not None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._waker[0], selectors.EVENT_READ, None)
        for interface in self.served():
            self._sync(interface)
        self._started.set_result(None)
        try:
            while self._is_running():
                for key, _ in self._selector.select(self._timeout()):
                    if key.data is None:
                        self._run_commands()
                    else:
                        self._receive_guarded(key.data)
                self._retry_pending()
        finally:
            self._shutdown()

    def _is_running(self) -> bool:
        with self._lock:
            return self._running

    def _timeout(self) -> float | None:
        if not self._pending:
            return None
        return max(0.0, self._next_retry - time.monotonic())

    def _run_commands(self) -> None:
        assert self._waker is not None
        try:
            while self._waker[0].recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                interface, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                done.set_result(self._sync(interface))
            except Exception as error:  # handed to the caller of serve/forget
                done.set_exception(error)

    def _sync(self, interface: str) -> bool:
        """Make ``interface``'s socket match whether it is served; True when open."""
        with self._lock:
            served = interface in self._leases
        if not served:
            self._close(interface)
            self._pending.discard(interface)
            return False
        if interface in self._bindings:
            return True
        return self._open(interface)

    def _open(self, interface: str) -> bool:
        assert self._selector is not None
        try:
            sock = open_server_socket(interface)
        except OSError as error:
            if error.errno not in _MISSING:
                raise
            if interface not in self._pending:
                log.info("DHCP: %s does not exist yet; retrying every %ss", interface,
                         self._retry_interval)
                self._pending.add(interface)
                self._next_retry = time.monotonic() + self._retry_interval
            return False
        self._pending.discard(interface)
        self._bindings[interface] = _Binding(
            sock, _interface_mac(sock), socket.if_nametoindex(interface)
        )
        self._selector.register(sock, selectors.EVENT_READ, interface)
        log.debug("DHCP: serving on %s", interface)
        return True

    def _close(self, interface: str) -> None:
        binding = self._bindings.pop(interface, None)
        if binding is None:
            return
        assert self._selector is not None
        self._selector.unregister(binding.sock)
        binding.sock.close()

    def _retry_pending(self) -> None:
        if not self._pending or time.monotonic() < self._next_retry:
            return
        self._next_retry = time.monotonic() + self._retry_interval
        for interface in sorted(self._pending):
            try:
                self._sync(interface)
            except OSError as error:
                log.warning("DHCP: cannot open %s: %s", interface, error)

    def _recover(self, interface: str, binding: _Binding, error: OSError) -> None:
        """After a socket error (ENETDOWN: the interface went down, or away): a socket whose
        interface still exists keeps working once it is up again (the kernel re-hooks it);
        one whose interface was deleted (or replaced) is closed and retried on the timer."""
        try:
            same = socket.if_nametoindex(interface) == binding.ifindex
        except OSError:
            same = False
        if same:
            log.info("DHCP: %s: %s", interface, error)
            return
        log.info("DHCP: %s went away; waiting for it to come back", interface)
        self._close(interface)
        with self._lock:
            served = interface in self._leases
        if served:
            self._pending.add(interface)
            self._next_retry = time.monotonic()

    def _receive_guarded(self, interface: str) -> None:
        """One frame; a bug in handling it is logged, never the end of the thread."""
        try:
            self._receive(interface)
        except Exception:
            log.exception("DHCP: %s: failed to handle a frame", interface)

    def _receive(self, interface: str) -> None:
        binding = self._bindings.get(interface)
        if binding is None:
            return
        try:
            frame, address = binding.sock.recvfrom(65535)
        except BlockingIOError:
            return
        except OSError as error:
            self._recover(interface, binding, error)
            return
        if address[2] == PACKET_OUTGOING:
            return
        with self._lock:
            lease = self._leases.get(interface)
        if lease is not None:
            self._answer(interface, binding, frame, lease)

    def _answer(self, interface: str, binding: _Binding, frame: bytes, lease: Lease) -> None:
        try:
            request = parse_frame(frame)
        except MalformedPacket as error:
            log.debug("DHCP: %s: ignoring frame: %s", interface, error)
            return
        kind = decide(request, lease)
        if kind is None:
            self._note_silence(interface, request, lease)
            return
        try:
            binding.sock.send(build_reply(request, kind, lease, binding.mac))
        except OSError as error:
            log.warning("DHCP: %s: cannot send reply: %s", interface, error)
            return
        log.debug("DHCP: %s: answered %s with %s", interface, request.message_type, kind)

    @staticmethod
    def _note_silence(interface: str, request: DhcpMessage, lease: Lease) -> None:
        if request.chaddr != lease.mac.lower():
            return
        if request.message_type == DECLINE:
            log.warning("DHCP: %s: client %s declined %s (address in use on the network?)",
                        interface, request.chaddr, request.requested_ip)
        elif request.message_type == RELEASE:
            log.info("DHCP: %s: client %s released %s", interface, request.chaddr,
                     request.ciaddr)

    def _shutdown(self) -> None:
        for interface in list(self._bindings):
            self._close(interface)
        self._pending.clear()
        while True:  # anything queued after the last select: answer "not open"
            try:
                _, done = self._commands.get_nowait()
            except queue.Empty:
                break
            done.set_result(False)
        if self._selector is not None:
            self._selector.close()
            self._selector = None

