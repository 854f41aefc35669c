"""The campaigns a gateway knows: the ones running (or run) in this process, and those whose results
the store kept (an earlier run of the gateway, another gateway on a shared database).

The control API (gateway/http_api.py) asks here and turns the answers into HTTP; this module knows
nothing of HTTP.  Campaigns finished in this process are kept for status queries up to
`MAX_CAMPAIGNS_KEPT`, oldest dropped first; their results stay in the store.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.campaigns.contacts import Contact
from gateway.campaigns.dnc import DoNotCallList
from gateway.campaigns.policy import POLICY_KEYS, CampaignDefaults, CampaignPolicy
from gateway.campaigns.results import tally
from gateway.campaigns.scheduler import Campaign
from gateway.campaigns.storage import CampaignStorage

if TYPE_CHECKING:
    from gateway.http_api import GatewayControl

MAX_CAMPAIGNS_KEPT = 100


class CampaignBook:
    """Safe from any thread (HTTP workers)."""

    def __init__(self, defaults: CampaignDefaults | None = None, do_not_call: DoNotCallList | None = None,
                 storage: CampaignStorage | None = None):
        self.defaults = defaults or CampaignDefaults()
        self.do_not_call = do_not_call  # None: campaigns check no list
        self.storage = storage  # None: results live in memory only
        self._campaigns: dict[str, Campaign] = {}
        self._lock = threading.Lock()

    def policy(self, request: Mapping[str, object]) -> CampaignPolicy:
        """The YAML defaults with the policy keys of a request replaced; PolicyError names a bad key."""
        return self.defaults.policy.merged({k: v for k, v in request.items() if k in POLICY_KEYS})

    def start(self, contacts: list[Contact], agent: str | None, concurrency: int, calls_per_second: float,
              control: GatewayControl, account: str | None, policy: CampaignPolicy) -> str:
        """Start a campaign on its own thread; returns its id."""
        campaign_id = uuid.uuid4().hex[:12]
        campaign = Campaign(contacts, agent, concurrency, calls_per_second, control, account=account, policy=policy,
                            do_not_call=self.do_not_call, archive=self.storage, name=campaign_id)
        with self._lock:
            self._campaigns[campaign_id] = campaign
            finished = [cid for cid, c in self._campaigns.items() if not c.status()["running"]]
            for cid in finished[: max(0, len(self._campaigns) - MAX_CAMPAIGNS_KEPT)]:
                del self._campaigns[cid]
        campaign.start()
        return campaign_id

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
        return {"running": False, "kept": True,
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

    def close(self) -> None:
        """Stop every campaign from starting more calls and close the storage (their calls end on their own)."""
        with self._lock:
            campaigns = list(self._campaigns.values())
        for campaign in campaigns:
            campaign.stop()
        if self.do_not_call is not None:
            self.do_not_call.close()
        if self.storage is not None:
            self.storage.close()
