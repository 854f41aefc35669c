"""The campaigns a gateway knows: the ones running (or run) in this process, and those whose results
the store kept (an earlier run of the gateway, another gateway on a shared database).

The control API (gateway/http_api.py) asks here and turns the answers into HTTP; this module knows
nothing of HTTP.  Campaigns finished in this process are kept for status queries up to
`MAX_CAMPAIGNS_KEPT`, oldest dropped first; their results stay in the store.  At start-up the
gateway's own running and paused campaigns are read back from the store and go on
(`resume_kept`), once the gateway can place calls.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from gateway.campaigns.contacts import Contact
from gateway.campaigns.dnc import DoNotCallList
from gateway.campaigns.persist import CampaignArchive, CampaignState, KeptCampaign, load_kept
from gateway.campaigns.policy import POLICY_KEYS, CampaignDefaults, CampaignPolicy
from gateway.campaigns.results import tally
from gateway.campaigns.scheduler import Campaign
from gateway.campaigns.storage import CampaignStorage
from gateway.store import StoreError

if TYPE_CHECKING:
    from gateway.http_api import GatewayControl

MAX_CAMPAIGNS_KEPT = 100
RESUME_WAIT_S = 120.0  # a resumed campaign waits this long for the gateway to be ready (registered), then goes
_RESUME_POLL_S = 0.5

log = structlog.get_logger("campaign")


class CampaignBook:
    """Safe from any thread (HTTP workers)."""

    def __init__(self, defaults: CampaignDefaults | None = None, do_not_call: DoNotCallList | None = None,
                 storage: CampaignStorage | None = None, owner: str = ""):
        self.defaults = defaults or CampaignDefaults()
        self.do_not_call = do_not_call  # None: campaigns check no list
        self.storage = storage  # None: results live in memory only
        self.owner = owner  # this gateway, on the campaigns it keeps (persist.gateway_owner)
        self._campaigns: dict[str, Campaign] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def policy(self, request: Mapping[str, object]) -> CampaignPolicy:
        """The YAML defaults with the policy keys of a request replaced; PolicyError names a bad key."""
        return self.defaults.policy.merged({k: v for k, v in request.items() if k in POLICY_KEYS})

    def start(self, contacts: list[Contact], agent: str | None, concurrency: int, calls_per_second: float,
              control: GatewayControl, account: str | None, policy: CampaignPolicy) -> str:
        """Start a campaign on its own thread; returns its id."""
        campaign_id = uuid.uuid4().hex[:12]
        campaign = Campaign(contacts, agent, concurrency, calls_per_second, control, account=account, policy=policy,
                            do_not_call=self.do_not_call, archive=self._archive(campaign_id), name=campaign_id)
        self._add(campaign_id, campaign)
        campaign.start()
        return campaign_id

    def resume_kept(self, control: GatewayControl) -> list[str]:
        """Take up this gateway's kept running and paused campaigns (a thread starts them once the gateway
        is ready, or after RESUME_WAIT_S); their ids.  A store that cannot be read is logged, not raised."""
        if self.storage is None:
            return []
        try:
            kept = load_kept(self.storage, self.owner)
        except StoreError as exc:
            log.error("campaigns_not_resumed", error=str(exc))
            return []
        campaigns = [self._revive(k, control) for k in kept]
        if campaigns:
            threading.Thread(target=self._start_when_ready, args=(control, campaigns), name="campaign-resume",
                             daemon=True).start()
        return [c.name for c in campaigns]

    def _start_when_ready(self, control: GatewayControl, campaigns: list[Campaign]) -> None:
        """Resumed campaigns start dialling once the gateway is ready (accounts registered, models loaded)."""
        deadline = time.monotonic() + RESUME_WAIT_S
        while time.monotonic() < deadline and not self._closed.is_set():
            try:
                if control.readiness().get("ready") is True:
                    break
            except Exception:  # a readiness check that fails: wait out the deadline like a not-ready gateway
                log.exception("campaign_resume_readiness_failed")
            self._closed.wait(_RESUME_POLL_S)
        else:
            log.warning("campaign_resume_not_ready", waited_s=RESUME_WAIT_S)
        for campaign in campaigns:
            if not self._closed.is_set() and not control.draining:
                campaign.start()

    def _revive(self, kept: KeptCampaign, control: GatewayControl) -> Campaign:
        spec, campaign_id = kept.spec, kept.record.campaign_id
        campaign = Campaign(kept.contacts, spec.agent, spec.concurrency, spec.calls_per_second, control,
                            account=spec.account, policy=spec.policy, do_not_call=self.do_not_call,
                            archive=self._archive(campaign_id), name=campaign_id, restored=kept.results,
                            state=CampaignState(kept.record.state))
        self._add(campaign_id, campaign)
        log.info("campaign_resumed", campaign_id=campaign_id, state=kept.record.state, total=len(kept.contacts),
                 left=sum(1 for r in kept.results if str(r.status) != "done"))
        return campaign

    def _archive(self, campaign_id: str) -> CampaignArchive | None:
        return None if self.storage is None else CampaignArchive(self.storage, campaign_id, self.owner)

    def _add(self, campaign_id: str, campaign: Campaign) -> None:
        with self._lock:
            self._campaigns[campaign_id] = campaign
            finished = [cid for cid, c in self._campaigns.items() if not c.status()["running"]]
            for cid in finished[: max(0, len(self._campaigns) - MAX_CAMPAIGNS_KEPT)]:
                del self._campaigns[cid]

    def get(self, campaign_id: str) -> Campaign | None:
        """The campaign if this process runs (or ran) it."""
        with self._lock:
            return self._campaigns.get(campaign_id)

    def status(self, campaign_id: str) -> dict[str, object]:
        """Live counts, or those of the kept results (`running: false, kept: true`); KeyError if unknown."""
        campaign = self.get(campaign_id)
        if campaign is not None:
            return campaign.status()
        kept = self.results(campaign_id)
        record = self.storage.run(lambda store: store.campaign(campaign_id)) if self.storage else None
        return {"running": False, "kept": True, "state": record.state if record else None,
                **tally((r.get("status"), r.get("outcome"), bool(r.get("history"))) for r in kept)}

    def results(self, campaign_id: str) -> list[dict[str, Any]]:
        """Each contact's result as JSON, in list order; KeyError if unknown, StoreError if the store fails."""
        campaign = self.get(campaign_id)
        if campaign is not None:
            return [r.as_json() for r in campaign.results()]
        kept = self.storage.run(lambda store: store.campaign_contacts(campaign_id)) if self.storage else []
        if not kept:
            raise KeyError(campaign_id)
        return kept

    def listing(self) -> list[dict[str, object]]:
        """The campaigns of this process and those kept in the store, newest first: id, state, created_at,
        whether this process runs it.  StoreError if the store fails."""
        with self._lock:
            live = dict(self._campaigns)
        kept = self.storage.run(lambda store: store.campaigns(limit=MAX_CAMPAIGNS_KEPT)) if self.storage else []
        rows = {r.campaign_id: {"campaign_id": r.campaign_id, "state": r.state, "created_at": r.created_at,
                                "owner": r.owner, "here": r.campaign_id in live} for r in kept}
        for campaign_id, campaign in live.items():
            rows.setdefault(campaign_id, {"campaign_id": campaign_id, "created_at": None, "owner": self.owner})
            rows[campaign_id].update(state=str(campaign.state), here=True)
        return sorted(rows.values(), key=lambda r: -(r["created_at"] or time.time()))  # type: ignore[operator]

    def close(self) -> None:
        """Stop every campaign from starting more calls and close the storage (their calls end on their own)."""
        self._closed.set()
        with self._lock:
            campaigns = list(self._campaigns.values())
        for campaign in campaigns:
            campaign.stop()
        if self.do_not_call is not None:
            self.do_not_call.close()
        if self.storage is not None:
            self.storage.close()
