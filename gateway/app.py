"""The gateway process: wires SIP signalling, the media clock, ports, calls and agents."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway.calls import CallManager
from gateway.config import AgentConfig, Config
from gateway.http_api import HttpApi
from gateway.metrics import Metrics
from gateway.operations import GatewayOperations
from gateway.records import purge_records
from gateway.sip.account import GatewayAccount
from gateway.sip.stack import SipStack, StackSettings
from gateway.sip.tcp_guard import TcpGuard
from rtp.clock import MediaClock
from rtp.ports import PortAllocator

if TYPE_CHECKING:
    from gateway.conversation.end_of_turn import EndOfTurnModel

log = structlog.get_logger("gateway")
MEDIA_REPORT_INTERVAL_S = 60.0


class Gateway:
    def __init__(self, config: Config):
        self.config = config
        self.stack = SipStack(StackSettings(
            listen_host=config.sip.listen.host,
            listen_port=config.sip.listen.port,
            public_address=config.sip.public_address,
            max_calls=config.sip.max_calls,
            codecs=config.rtp.codecs,
            user_agent=config.sip.user_agent,
            sip_trace=config.logging.sip_trace,
            tls=config.sip.tls,
            srtp=config.rtp.srtp,
            tcp=config.sip.tcp,
        ))
        self.ports = PortAllocator(config.sip.listen.host, *config.rtp.port_range)
        self.clock = MediaClock(on_error=lambda session, exc: self.calls.commands.media_error(session, exc))
        self.services = load_conversation_services(config) if config.needs_models else None
        self.metrics = Metrics()
        self.call_events = _call_event_writer(config)
        if self.call_events is not None:
            writer = self.call_events
            self.metrics.on_collect(lambda: self.metrics.record_events(writer.written, writer.dropped, writer.failed))
        self.calls = CallManager(config, self.stack, self.clock, self.ports, self.services, self.metrics,
                                 call_events=self.call_events)
        self.started = threading.Event()
        self._drain_deadline: float | None = None
        self.http: HttpApi | None = None
        self.accounts: list[GatewayAccount] = []
        self.local_account: GatewayAccount | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        self.clock.start()
        try:
            self.stack.start(on_started=self._create_accounts, on_shutdown=self._shutdown_sip)
        except BaseException:
            self.clock.stop()
            raise
        self.started.set()
        self._start_http()
        if self.config.recording.directory:
            purged = purge_records(Path(self.config.recording.directory), self.config.recording.retention_days)
            log.info("recording_ready", directory=self.config.recording.directory, audio=self.config.recording.audio,
                     purged_files=purged)
        log.info("gateway_ready", accounts=[a.name for a in self.accounts], max_calls=self.config.sip.max_calls,
                 rtp_ports=f"{self.ports.first}-{self.ports.last}",
                 http=None if self.http is None else f"{self.config.http.listen.host}:{self.http.port}")
        if not self.config.sip.trusted_sources:
            log.warning("sip_trusted_sources_unset",
                        hint="INVITEs are accepted from any address; set sip.trusted_sources to the PBX's addresses")
        if self.config.rtp.srtp != "off" and self.config.sip.tls is None:
            log.warning("srtp_keys_in_clear", srtp=self.config.rtp.srtp,
                        hint="SDES keys travel in the SIP messages: without sip.tls anyone who sees the "
                             "signalling can decrypt the media")

    def originate(self, uri: str, account: str | None = None, agent: str | None = None,
                  variables: Mapping[str, str] | None = None) -> Future:
        """Place an outbound call (any thread); the Future gives its Call-ID."""

        def place() -> str:
            acc = self._account_for(account)
            target = _target_uri(uri, acc)
            return self.calls.outgoing(acc, target, agent or acc.agent, variables)

        return self.stack.submit(place)

    def drain(self) -> None:
        """Take no new calls (INVITEs get 503, originate is refused) and let the calls up finish.

        For upgrades and certificate renewals without cutting anyone off: behind a dispatcher or
        a PBX with several gateways, the 503 sends new calls elsewhere; the process exits once
        the last call has ended (see `drained`). Any thread; idempotent.
        """
        if self.calls.draining:
            return
        self._drain_deadline = time.monotonic() + self.config.sip.drain_timeout_s
        self.calls.draining = True
        log.info("gateway_draining", active_calls=self.calls.active_count,
                 timeout_s=self.config.sip.drain_timeout_s)

    @property
    def drained(self) -> bool:
        """Draining, and no call is left."""
        return self.calls.draining and self.calls.active_count == 0

    @property
    def drain_expired(self) -> bool:
        """Draining for longer than `sip.drain_timeout_s`: a call whose BYE was lost must not keep the old
        process (and its 503s) alive forever; stopping hangs the rest up."""
        return self._drain_deadline is not None and time.monotonic() > self._drain_deadline

    def stop(self) -> None:
        """Hang up every call with BYE, unregister, and release everything. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("gateway_stopping", active_calls=self.calls.active_count)
        if self.http is not None:
            self.http.stop()
        self.stack.stop()
        self.clock.stop()
        if self.call_events is not None:
            self.call_events.close()  # after the calls: their last events (call_end) are queued by now
        if self.services is not None:
            self.services.close()
        log.info("gateway_stopped")

    def _start_http(self) -> None:
        listen = self.config.http.listen
        if listen is None:
            return
        if self.config.http.token is None:
            log.warning("http_control_api_disabled", hint="set http.token to enable the control API")
        from gateway.campaigns.book import CampaignBook
        from gateway.campaigns.dnc import DoNotCallList
        from gateway.campaigns.persist import gateway_owner
        from gateway.campaigns.storage import CampaignStorage
        from gateway.store import open_store

        database = self.config.memory.database  # the do-not-call list and campaign results live beside caller memory
        storage = CampaignStorage(lambda: open_store(database))
        dnc = DoNotCallList(storage, self.config.campaigns.do_not_call_file)
        operations = GatewayOperations(self)
        book = CampaignBook(self.config.campaigns, dnc, storage, owner=gateway_owner(self.config.sip.listen.port))
        self.http = HttpApi((listen.host, listen.port), self.config.http.token, operations, self.metrics, book,
                            console=_console(self, operations))
        self.http.start()
        book.resume_kept(operations)  # this gateway's campaigns that were running when it last stopped

    # -- SIP thread ----------------------------------------------------------------------------

    def _report_media(self) -> None:
        """Log the media clock's health every minute while calls are up (SIP thread timer)."""
        if self.calls.active_count:
            stats = self.clock.stats()
            self.metrics.clock_lateness(stats.lateness_p99_ms)
            log.info("media_clock", calls=self.calls.active_count, ports_in_use=self.ports.in_use,
                     lateness_p50_ms=round(stats.lateness_p50_ms, 2), lateness_p99_ms=round(stats.lateness_p99_ms, 2),
                     lateness_max_ms=round(stats.lateness_max_ms, 2), work_p99_ms=round(stats.work_p99_ms, 2),
                     skipped_ticks=stats.skipped)
        self.stack.call_later(MEDIA_REPORT_INTERVAL_S, self._report_media)

    def _create_accounts(self) -> None:
        self.stack.call_later(MEDIA_REPORT_INTERVAL_S, self._report_media)
        if self.config.sip.tcp:
            TcpGuard(self.config.sip.listen.port, self.calls.admission.guard.trusts).start(self.stack)
        self.local_account = GatewayAccount.local(self.stack, self.config.sip.default_agent, self.calls.incoming)
        for account in self.config.sip.accounts:
            self.accounts.append(GatewayAccount.registered(self.stack, account, self.calls.incoming))

    def _account_for(self, name: str | None) -> GatewayAccount:
        if name is None:
            if self.accounts:
                return self.accounts[0]
            assert self.local_account is not None
            return self.local_account
        for acc in self.accounts:
            if name in (acc.name, acc.config.username if acc.config else None):
                return acc
        raise ValueError(f"no configured account {name!r} (have: {', '.join(a.name for a in self.accounts)})")

    def _shutdown_sip(self) -> None:
        self.calls.hangup_all("shutdown")
        if not self.stack.pump_until(lambda: self.calls.active_count == 0, 3.0):
            log.warning("gateway_calls_not_ended", left=self.calls.active_count)
        self.calls.close_all()
        waiting = [acc for acc in self.accounts if acc.unregister()]
        if waiting and not self.stack.pump_until(lambda: not any(a.state.registered for a in waiting), 3.0):
            log.warning("gateway_unregister_timeout")
        self.stack.pump(0.05)  # let the queued Call releases run before the library goes away
        self.stack.clear_timers()
        for acc in [*self.accounts, self.local_account]:
            if acc is not None:
                acc.shutdown()
        self.accounts.clear()
        self.local_account = None


def _console(gateway: Gateway, operations: GatewayOperations):
    """The web console on the HTTP port, fed each call's recorded events as they happen."""
    from gateway.console import CallFeed, Console, ConsoleSources, Credentials

    config = gateway.config
    feed = CallFeed()
    gateway.calls.reporting.on_record(feed.record)
    gateway.calls.on_ended(lambda call, code, reason: feed.call_ended(call.call_id, reason))
    credentials = Credentials(config.http.token, config.http.console_password, config.http.console_viewer_password)
    return Console(ConsoleSources(
        control=operations, metrics=gateway.metrics, credentials=credentials, feed=feed,
        records=Path(config.recording.directory) if config.recording.directory else None,
        database=config.memory.database, store=lambda: gateway.services.store if gateway.services else None,
        clock_stats=gateway.clock.stats, agents=tuple(config.agents),
        session_ttl_s=config.http.console_session_hours * 3600.0,
    ))


def load_conversation_services(config: Config):
    """Load and warm up every model before the first call; index each agent's knowledge, open the
    caller-memory database, and cache the agents' fixed phrases."""
    from gateway.conversation.settings import fixed_phrases, model_set_config
    from gateway.conversation.skills import AgentSkills
    from gateway.conversation.speech import ConversationServices
    from gateway.store import open_store
    from models.loader import ModelSet
    from rtp.codec import audio_codec_by_name, is_wideband

    conversation_agents = [a for a in config.agents.values() if a.type == "conversation"]
    skills = {a.name: AgentSkills.build(a) for a in conversation_agents}
    models = ModelSet.load(model_set_config(config.models))
    models.warm_up(skills[conversation_agents[0].name].system_prompt)
    for agent in conversation_agents[1:]:
        models.llm.warm_up(skills[agent.name].system_prompt)
    services = ConversationServices(models, skills, None, _load_turn_model(conversation_agents),
                                    wideband=any(is_wideband(audio_codec_by_name(c)) for c in config.rtp.codecs))
    _open_memory(config, services, open_store)
    for agent in conversation_agents:
        for phrase in fixed_phrases(agent):
            services.cache_phrase(phrase)
    log.info("conversation_ready", agents=[a.name for a in conversation_agents])
    return services


def _load_turn_model(agents: list[AgentConfig]) -> EndOfTurnModel | None:
    """The end-of-turn model, once for the process, only if some agent's `turn_model` uses it."""
    if not any(a.conversation.turn_audio_model for a in agents):
        return None
    from gateway.conversation.end_of_turn import EndOfTurnModel

    start = time.perf_counter()
    model = EndOfTurnModel.load()
    loaded = time.perf_counter() - start
    log.info("turn_model_loaded", model=model.name, load_s=round(loaded, 3), warm_up_s=round(model.warm_up(), 3))
    return model


MEMORY_RETRY_S = 30.0


def _open_memory(config: Config, services, open_store, retry_s: float = MEMORY_RETRY_S) -> None:
    """Open caller memory into ``services.store``; a database that is down costs the memory, not the service.

    A shared PostgreSQL that is away at start-up (restarting, network) must not keep the
    receptionist from answering: the gateway starts without memory, logs it, and opens the store
    in the background every ``retry_s``; calls that start after that have memory again.  (A bad
    SQLite path is a local mistake, not an outage, and is reported the same way.)
    """
    from gateway.store import StoreError, redact_dsn

    def attempt() -> bool:
        try:
            store = open_store(config.memory.database)
            purged = store.purge(config.memory.retention_days)
        except StoreError as exc:
            log.error("memory_unavailable", database=redact_dsn(config.memory.database), error=str(exc),
                      retry_in_s=retry_s)
            return False
        services.store = store
        if services.closed.is_set():  # the gateway stopped while we were connecting
            store.close()
        log.info("memory_ready", database=store.where, remember_callers=config.memory.enabled,
                 retention_days=config.memory.retention_days, purged=purged)
        return True

    if attempt():
        return

    def retry() -> None:
        while not services.closed.wait(retry_s):
            if attempt():
                return

    threading.Thread(target=retry, name="memory-open", daemon=True).start()


def _call_event_writer(config: Config):
    """With call records on and a PostgreSQL database, every call's events are copied there too
    (so any gateway's call can be drawn from one place); None otherwise."""
    from gateway.store import is_postgres_dsn, redact_dsn

    database = config.memory.database
    if config.recording.directory is None or not is_postgres_dsn(database):
        return None
    from gateway.store.call_events import CallEventWriter
    from gateway.store.postgres import PostgresStore

    log.info("call_events_shared", database=redact_dsn(database))
    return CallEventWriter(lambda: PostgresStore(database), purge_days=config.recording.retention_days)


def _target_uri(uri: str, account: GatewayAccount) -> str:
    """Accept a full SIP URI or a bare extension/number (completed with the account's domain)."""
    if uri.startswith(("sip:", "sips:")):
        return uri
    if account.config is None:
        raise ValueError(f"{uri!r} is not a SIP URI and there is no account to complete it with")
    return f"sip:{uri}@{account.config.domain}"
