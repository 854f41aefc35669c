"""The pjsua2 endpoint, owned by one thread.

pjsua2 aborts the process when an unregistered Python thread touches it, and its objects are
not safe to use from several threads at once. So one thread ("sip") creates the endpoint,
runs `libHandleEvents`, receives every callback, and is the only thread that calls pjsua2;
other threads hand it work with `submit()` / `call_later()`. Media never passes through here.

Releasing a pjsua2 object is touching pjsua2 too: a `Call` or `Account` wrapper's destructor
calls into pjsua, so the last reference to one must be dropped on this thread, while the
library is up. Every such wrapper of ours reports its finalisation to `released()`, which logs
`pjsua2_released_off_sip_thread` (an error: the integration tests fail on it) when that rule
was broken, before pjlib gets the chance to abort the process over it.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import os
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj
import structlog

from gateway.config import TlsConfig
from gateway.sip.sdp import redact_keys
from gateway.sip.tcp_gate import TcpGate, TransportChange, TransportState

log = structlog.get_logger("sip")


# TLS 1.2 with forward secrecy and AEAD only.  The pjsua2 wheel links OpenSSL 1.0.2k, which has
# no TLS 1.3; within 1.2 these are the suites current guidance keeps (ECDHE + AES-GCM).
TLS_CIPHERS = (
    0xC02F,  # ECDHE-RSA-AES128-GCM-SHA256
    0xC030,  # ECDHE-RSA-AES256-GCM-SHA384
    0xC02B,  # ECDHE-ECDSA-AES128-GCM-SHA256
    0xC02C,  # ECDHE-ECDSA-AES256-GCM-SHA384
)


@dataclass(frozen=True)
class StackSettings:
    listen_host: str
    listen_port: int
    public_address: str
    max_calls: int
    codecs: tuple[str, ...] = ("G722", "PCMU", "PCMA")
    user_agent: str = "voicegate"  # sent to the PBX only (REGISTER, outbound INVITE), see _create
    sip_trace: bool = False
    tls: TlsConfig | None = None
    srtp: str = "off"  # off | optional | required
    tcp: bool = False  # also listen (and connect) over TCP on the listen address


class _PjLogWriter(pj.LogWriter):
    """Route pjsip's own log lines into our JSON log (warnings and errors only, unless tracing)."""

    def write(self, entry: pj.LogEntry) -> None:  # noqa: D401 - pjsua2 callback
        text = redact_keys(entry.msg.rstrip())
        if entry.level <= 1:
            log.error("pjsip", msg=text)
        elif entry.level == 2:
            log.warning("pjsip", msg=text)
        else:
            log.debug("pjsip", msg=text)


class _Endpoint(pj.Endpoint):
    """pjsua2's endpoint with its transport callback passed on (SIP thread: pjsua runs no thread of its own)."""

    def __init__(self, on_transport: Callable[[TransportChange], None]):
        super().__init__()
        self._on_transport = on_transport

    def onTransportState(self, prm: pj.OnTransportStateParam) -> None:  # noqa: N802 - pjsua2 callback
        try:
            self._on_transport(TransportChange(int(prm.hnd), str(prm.type), TransportState.of(int(prm.state))))
        except Exception:  # an exception must not unwind into pjsip's accept loop
            log.exception("sip_transport_callback_failed")


class SipStack:
    """Lifecycle of the pjsua2 endpoint plus a work queue and timers run on its thread."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.endpoint: pj.Endpoint | None = None
        self._work: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], Any]]] = []
        self._timer_seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._start_error: BaseException | None = None
        self._log_writer = _PjLogWriter()
        self._on_shutdown: Callable[[], None] | None = None
        self._library_up = False  # between libCreate and libDestroy: pjsua2 objects may live
        self.tcp_gate: TcpGate | None = None  # with TCP or TLS listeners: see gateway/sip/tcp_gate.py

    def released(self, what: str) -> None:
        """A pjsua2 wrapper of ours is being finalised (any thread): check it happens where it may."""
        if threading.current_thread() is self._thread and self._library_up:
            return
        log.error("pjsua2_released_off_sip_thread", object=what, thread=threading.current_thread().name,
                  library_up=self._library_up,
                  hint="a pjsua2 object's last reference must be dropped on the SIP thread before libDestroy")

    # -- public API, any thread ----------------------------------------------------------------

    def start(self, on_started: Callable[[], None], on_shutdown: Callable[[], None]) -> None:
        """Start the SIP thread; `on_started` runs on it once the endpoint is up."""
        self._on_shutdown = on_shutdown
        self._thread = threading.Thread(target=self._run, args=(on_started,), name="sip", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run `fn` on the SIP thread; returns a Future of its result."""
        future: Future = Future()
        if threading.current_thread() is self._thread:
            _run_into(fn, future)
        else:
            self._work.put((fn, future))
        return future

    def call_later(self, delay_s: float, fn: Callable[[], Any]) -> None:
        """Run `fn` on the SIP thread after `delay_s` (must be called on the SIP thread)."""
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._timer_seq), fn))

    def stop(self, timeout: float = 15.0) -> None:
        """Run the shutdown callback, destroy the endpoint and join the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def pump(self, duration_s: float) -> None:
        """Process SIP events for `duration_s` from within the SIP thread (used during shutdown)."""
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            self._iterate()

    def clear_timers(self) -> None:
        """Forget pending timers (shutdown): they may hold pjsua2 objects that must go first."""
        self._timers.clear()

    def pump_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() >= end:
                return False
            self._iterate()
        return True

    # -- SIP thread ----------------------------------------------------------------------------

    def _run(self, on_started: Callable[[], None]) -> None:
        try:
            self._create()
            on_started()
        except BaseException as exc:  # report to start(), then clean up what exists
            traceback.clear_frames(exc.__traceback__)  # its frames may hold pjsua2 objects: not to main
            self._start_error = exc
            self._ready.set()
            self._destroy()
            return
        self._ready.set()
        while not self._stopping.is_set():
            self._iterate()
        try:
            if self._on_shutdown is not None:
                self._on_shutdown()
        except Exception:
            log.exception("sip_shutdown_failed")
        finally:
            self._destroy()

    def _iterate(self) -> None:
        assert self.endpoint is not None
        self.endpoint.libHandleEvents(10)
        while True:
            try:
                fn, future = self._work.get_nowait()
            except queue.Empty:
                break
            _run_into(fn, future)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                log.exception("sip_timer_failed")

    def _create(self) -> None:
        s = self.settings
        ep = _Endpoint(self._on_transport)
        with _quiet_stdout():  # pjlib prints its start-up lines to stdout before any log config
            ep.libCreate()
        self.endpoint = ep
        self._library_up = True
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        # pjsua's own limit sits well above ours so that *we* answer 486 with a log line: a call
        # slot is taken by every INVITE until pjsua ends it, refused ones and answered ones whose
        # ACK never comes (up to 32 s), so a burst of those must not leave the PBX facing pjsua's
        # anonymous 486s. pjsua clamps it to its compile-time PJSUA_MAX_CALLS.
        cfg.uaConfig.maxCalls = s.max_calls + max(32, s.max_calls)
        # No global User-Agent: pjsua would put it on every request and on its answers to OPTIONS
        # from anyone, which is how scanners fingerprint a product. sip.user_agent is added only
        # to what we send our PBX on our own initiative (REGISTER, outbound INVITE).
        cfg.uaConfig.userAgent = ""
        cfg.logConfig.writer = self._log_writer
        cfg.logConfig.level = 5 if s.sip_trace else 2
        cfg.logConfig.consoleLevel = cfg.logConfig.level  # with a writer, this is what reaches it
        cfg.logConfig.msgLogging = 1 if s.sip_trace else 0
        cfg.logConfig.decor = 0
        cfg.medConfig.ecTailLen = 0
        cfg.medConfig.threadCnt = 0
        cfg.medConfig.noVad = True
        ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = s.listen_port
        tcfg.boundAddress = s.listen_host
        tcfg.publicAddress = s.public_address
        listeners = ((s.listen_port,) if s.tcp else ()) + ((s.tls.listen.port,) if s.tls is not None else ())
        if listeners:  # before the first listener exists: its first connection is counted
            self.tcp_gate = TcpGate(listeners, self.call_later)
        try:
            ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        except pj.Error as exc:
            raise OSError(f"cannot listen for SIP on {s.listen_host}:{s.listen_port}/udp: {exc.reason}") from None
        if s.tcp:
            # RFC 3261 section 18: a UA listens on TCP where it listens on UDP, and a request
            # within 200 bytes of the path MTU goes over TCP. pjsip makes that switch by itself
            # (PJSIP_UDP_SIZE_THRESHOLD, 1300 bytes), but only when a TCP transport exists; it
            # also serves ;transport=tcp URIs (registrar, outbound targets) through this one.
            tcp_cfg = _copy_transport_config(tcfg)
            tcp_cfg.sockOptParams = _no_delay()
            try:
                ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcp_cfg)
            except pj.Error as exc:
                raise OSError(f"cannot listen for SIP on {s.listen_host}:{s.listen_port}/tcp: {exc.reason} "
                              "(another program holds the TCP port, or set sip.tcp: false)") from None
        if s.tls is not None:
            self._create_tls(ep, s.tls)
        ep.libStart()
        # No sound device: nothing may run pjmedia's conference clock (it would send RTP).
        ep.audDevManager().setNoDev()
        self._set_codec_priorities(ep)
        log.info("sip_listening", address=f"{s.listen_host}:{s.listen_port}", public=s.public_address,
                 transports=["udp", "tcp"] if s.tcp else ["udp"])

    def _on_transport(self, change: TransportChange) -> None:
        if self.tcp_gate is not None:
            self.tcp_gate.on_transport(change)

    def _create_tls(self, ep: pj.Endpoint, tls: TlsConfig) -> None:
        """A TLS listener (and client transport for sips:/;transport=tls calls): TLS 1.2, strong suites."""
        s = self.settings
        tcfg = pj.TransportConfig()
        tcfg.port = tls.listen.port
        tcfg.boundAddress = tls.listen.host
        tcfg.publicAddress = s.public_address
        t = tcfg.tlsConfig
        t.certFile = tls.certificate
        t.privKeyFile = tls.private_key
        # Without a CA list pjsip tries an empty CA buffer and logs an error on every handshake.
        t.CaListFile = tls.ca_list or tls.certificate
        t.proto = pj.PJ_SSL_SOCK_PROTO_TLS1_2
        available = set(ep.utilSslGetAvailableCiphers())
        ciphers = pj.IntVector([c for c in TLS_CIPHERS if c in available])
        if not ciphers:
            raise OSError("the SSL library offers none of the TLS 1.2 ECDHE-AES-GCM cipher suites")
        t.ciphers = ciphers
        t.verifyClient = tls.verify_peer
        t.requireClientCert = tls.verify_peer
        # Without it pjsip connects whatever the server presents: a man in the middle of the
        # registrar connection would read every SDES key.
        t.verifyServer = tls.verify_server
        t.msecTimeout = 5000  # a peer that stalls the handshake does not hold a socket for long
        try:
            ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
        except pj.Error as exc:
            raise OSError(f"cannot listen for SIP over TLS on {tls.listen.host}:{tls.listen.port}: "
                          f"{exc.reason} (check sip.tls.certificate and sip.tls.private_key)") from None
        if not tls.verify_server:
            log.warning("sip_tls_server_unverified",
                        hint="set sip.tls.ca_list to the CA of the PBX's certificate: without it, TLS "
                             "connections the gateway opens accept any certificate")
        log.info("sip_tls_listening", address=f"{tls.listen.host}:{tls.listen.port}", verify_peer=tls.verify_peer,
                 verify_server=tls.verify_server,
                 protocol="TLSv1.2", ciphers=len(ciphers))

    def _set_codec_priorities(self, ep: pj.Endpoint) -> None:
        """Offer and accept only the codecs our RTP engine implements, in the configured order."""
        # 254 down, never 255: pjmedia takes 255 (PJMEDIA_CODEC_PRIO_HIGHEST) as "move to the top and
        # demote the previous top to 254", so the first two codecs came out tied at 254.
        wanted = {name: 254 - i for i, name in enumerate(self.settings.codecs)}
        available: set[str] = set()
        for info in ep.codecEnum2():
            name = info.codecId.split("/")[0].upper()
            available.add(name)
            ep.codecSetPriority(info.codecId, wanted.get(name, 0))
        for name in self.settings.codecs:
            if name not in available:  # e.g. OPUS: our RTP engine has it, this pjsua2 build does not
                log.warning("sip_codec_unavailable", codec=name, offered=[c for c in self.settings.codecs
                                                                          if c in available],
                            hint="the SIP stack (pjsua2) cannot negotiate this codec, so calls never use it")

    def _destroy(self) -> None:
        ep, self.endpoint = self.endpoint, None
        if ep is None:
            return
        # A Call or Account wrapper freed after libDestroy asserts inside pjsua: collect
        # any that only a reference cycle still keeps alive while the library exists.
        gc.collect()
        try:
            ep.libDestroy()
        except pj.Error as exc:
            log.warning("sip_destroy_failed", error=exc.info())
        self._library_up = False


def _copy_transport_config(tcfg: pj.TransportConfig) -> pj.TransportConfig:
    copy = pj.TransportConfig()
    copy.port, copy.boundAddress, copy.publicAddress = tcfg.port, tcfg.boundAddress, tcfg.publicAddress
    return copy


def _no_delay() -> pj.SockOptParams:
    """TCP_NODELAY on pjsip's TCP sockets, listening, accepted and connecting.

    pjsip writes each message as it is made: a 100 Trying, then the 200 OK a moment later. With
    Nagle's algorithm the 200 waits for the peer to acknowledge the 100, and a peer that delays
    its ACKs (Linux: 40 ms) holds every answer that long: measured with SIPp over one connection,
    INVITE to 200 took 48 ms over TCP against 4 ms over UDP (docs/benchmarks.md).
    """
    option = pj.SockOpt()
    option.level = socket.IPPROTO_TCP
    option.optName = socket.TCP_NODELAY
    option.setOptValInt(1)
    params = pj.SockOptParams()
    params.sockOpts = pj.SockOptVector([option])
    return params


@contextlib.contextmanager
def _quiet_stdout():
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _run_into(fn: Callable[[], Any], future: Future) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:
        log.exception("sip_work_failed")
        # The caller's thread receives the exception: its traceback must not carry this thread's
        # locals (a half-made pjsua2 Call, say) there to be released off the SIP thread.
        traceback.clear_frames(exc.__traceback__)
        future.set_exception(exc)
