"""A campaign kept in the store so that it survives a restart: its state, what it was started with,
and each contact's dialling details beside its latest result.

Why each campaign has an `owner` (the gateway's host name and SIP port): with a PostgreSQL
`database` several gateways share the tables, and only the gateway that ran a campaign may take it
up again, or two of them would dial the same list.  A gateway resumes its own `running` and
`paused` campaigns at start-up (`CampaignBook.resume_kept`), once it is ready to place calls.

Writes go through `CampaignArchive`, which never raises: a database that fails costs the
campaign its persistence (logged once), never its calls.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.campaigns.contacts import Contact
from gateway.campaigns.policy import CampaignPolicy, parse_zone, read_policy
from gateway.campaigns.results import ContactResult
from gateway.campaigns.storage import CampaignStorage
from gateway.store import CampaignRecord, StoreError

log = structlog.get_logger("campaign")


class CampaignState(enum.StrEnum):
    RUNNING = "running"  # dialling (or waiting for back-offs and calling hours)
    PAUSED = "paused"  # starts no calls until resumed; the calls up finish
    CANCELLED = "cancelled"  # stopped for good by the operator
    FINISHED = "finished"  # every contact has a final outcome


RESUMABLE = frozenset({CampaignState.RUNNING, CampaignState.PAUSED})


def gateway_owner(sip_port: int) -> str:
    """This gateway's name on the campaigns it runs: the same host and SIP port after a restart."""
    return f"{socket.gethostname()}:{sip_port}"


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What a campaign was started with, as kept (JSON) and read back for a resume."""

    agent: str | None
    account: str | None
    concurrency: int
    calls_per_second: float
    policy: CampaignPolicy

    def as_json(self) -> dict[str, object]:
        return {"agent": self.agent, "account": self.account, "concurrency": self.concurrency,
                "calls_per_second": self.calls_per_second, "policy": self.policy.describe()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CampaignSpec:
        """ValueError (a PolicyError names the key) if the kept spec cannot be used."""
        try:
            return cls(_name(data.get("agent")), _name(data.get("account")), int(data["concurrency"]),
                       float(data["calls_per_second"]), read_policy(data.get("policy") or {}))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"kept campaign spec: {exc}") from None


def contact_json(contact: Contact) -> dict[str, object]:
    return {"to": contact.to, "timezone": contact.zone.key, "variables": dict(contact.variables)}


def contact_from_json(row: int, data: Mapping[str, Any]) -> Contact:
    variables = data.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise ValueError(f"kept contact {row}: variables must be a mapping")
    return Contact(row, str(data["to"]), parse_zone(data.get("timezone") or "UTC", "timezone"),
                   {str(k): str(v) for k, v in variables.items()})


@dataclass(frozen=True, slots=True)
class KeptCampaign:
    """A campaign read back from the store, ready to be built again."""

    record: CampaignRecord
    spec: CampaignSpec
    contacts: list[Contact]
    results: list[ContactResult]


def load_kept(storage: CampaignStorage, owner: str) -> list[KeptCampaign]:
    """`owner`'s running and paused campaigns, oldest first; one that cannot be read is logged and skipped."""
    records = storage.run(lambda store: store.campaigns(owner=owner, states=RESUMABLE, limit=1000))
    kept = []
    for record in reversed(records):
        try:
            rows = storage.run(lambda store, cid=record.campaign_id: store.campaign_contact_rows(cid))
            contacts = [contact_from_json(r.row, r.contact) for r in rows if r.contact is not None]
            results = [ContactResult.from_json(r.result) for r in rows if r.contact is not None]
            kept.append(KeptCampaign(record, CampaignSpec.from_json(record.spec), contacts, results))
        except (ValueError, KeyError) as exc:
            log.error("campaign_not_resumable", campaign_id=record.campaign_id, error=str(exc))
    return kept


class CampaignArchive:
    """One campaign's writes to the store; safe from any thread (the store is), never raises."""

    def __init__(self, storage: CampaignStorage, campaign_id: str, owner: str):
        self.storage = storage
        self.campaign_id = campaign_id
        self.owner = owner
        self._contacts: dict[int, dict[str, object]] = {}
        self._failed = False

    def begin(self, spec: CampaignSpec, state: CampaignState, contacts: Iterable[Contact],
              results: Iterable[ContactResult]) -> None:
        """The campaign and every contact, in two transactions: after a restart the list shows who is left."""
        self._contacts = {c.row: contact_json(c) for c in contacts}
        self._write(lambda store: store.save_campaign(self.campaign_id, self.owner, str(state), spec.as_json()))
        self.results(results)

    def results(self, results: Iterable[ContactResult]) -> None:
        rows = [(r.row, self._contacts.get(r.row, {"to": r.to}), r.as_json()) for r in results]
        self._write(lambda store: store.save_campaign_contact_list(self.campaign_id, rows))

    def state(self, state: CampaignState) -> None:
        self._write(lambda store: store.set_campaign_state(self.campaign_id, str(state)))

    def _write(self, work) -> None:  # noqa: ANN001 - a Callable[[Store], object]
        try:
            self.storage.run(work)
        except StoreError as exc:  # the campaign goes on in memory
            if not self._failed:
                log.warning("campaign_results_not_kept", campaign_id=self.campaign_id, error=str(exc))
            self._failed = True


def _name(value: object) -> str | None:
    return None if value is None else str(value)
