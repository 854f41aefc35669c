"""What a campaign needs from the store to outlive the process: the campaign itself (who runs it,
its state, what it was started with) and each contact's dialling details beside its latest result.

Why the contact (number, zone, call variables) sits in the contact's own row and not in the
campaign's: `forget NUMBER` deletes that row, so a forgotten person's name and number leave the
database with it, and a campaign resumed afterwards simply no longer has them.

The semantics live here once (JSON in and out, a damaged row skipped); the SQLite and PostgreSQL
backends only run the SQL, as for the rest of :class:`gateway.store.base.Store`.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store.caller_ids import normalize_caller_id

CAMPAIGN_COLUMNS = "campaign_id, owner, state, created_at, updated_at, spec"


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """One campaign as kept: `owner` is the gateway that runs it, `spec` what it was started with."""

    campaign_id: str
    owner: str
    state: str  # gateway.campaigns.scheduler.CampaignState's value
    created_at: float
    updated_at: float
    spec: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CampaignContactRow:
    row: int
    contact: Mapping[str, Any] | None  # None: kept by a gateway before contacts were (a results-only row)
    result: Mapping[str, Any]


class CampaignRows(ABC):
    """The campaign half of the store (mixed into :class:`gateway.store.base.Store`)."""

    def save_campaign(self, campaign_id: str, owner: str, state: str, spec: Mapping[str, object],
                      at: float | None = None) -> None:
        """Create or update a campaign (an update keeps its created_at)."""
        when = time.time() if at is None else float(at)
        self._save_campaign((campaign_id, owner, state, when, when, json.dumps(dict(spec), default=str)))

    def set_campaign_state(self, campaign_id: str, state: str, at: float | None = None) -> bool:
        """Change a kept campaign's state; False if there is no such campaign."""
        return self._set_campaign_state(campaign_id, state, time.time() if at is None else float(at))

    def campaigns(self, owner: str | None = None, states: Iterable[str] | None = None,
                  limit: int = 100) -> list[CampaignRecord]:
        """Kept campaigns, newest first, optionally only `owner`'s and only in `states`."""
        wanted = None if states is None else frozenset(states)
        records = (_record(row) for row in self._campaigns(owner, max(1, int(limit))))
        return [r for r in records if r is not None and (wanted is None or r.state in wanted)]

    def campaign(self, campaign_id: str) -> CampaignRecord | None:
        return next((_record(row) for row in self._campaign(campaign_id)), None)

    def save_campaign_contact_list(self, campaign_id: str,
                                   rows: Iterable[tuple[int, Mapping[str, object], Mapping[str, object]]],
                                   at: float | None = None) -> None:
        """Keep contacts (row number, dialling details, latest result) in one transaction."""
        when = time.time() if at is None else float(at)
        values = [(campaign_id, int(row), normalize_caller_id(str(contact.get("to") or "")), when,
                   json.dumps(dict(result), default=str), json.dumps(dict(contact), default=str))
                  for row, contact, result in rows]
        if values:
            self._save_campaign_contact_list(values)

    def campaign_contact_rows(self, campaign_id: str) -> list[CampaignContactRow]:
        """A campaign's kept contacts in list order, with their dialling details; damaged rows skipped."""
        kept = []
        for row, contact, result in self._campaign_contact_rows(campaign_id):
            loaded, details = _json_object(result), _json_object(contact) if contact is not None else None
            if loaded is not None:
                kept.append(CampaignContactRow(int(str(row)), details, loaded))
        return kept

    # ------------------------------------------------------------------ backend

    @abstractmethod
    def _save_campaign(self, values: tuple[str, str, str, float, float, str]) -> None:
        """Upsert (CAMPAIGN_COLUMNS order); on conflict keep created_at, replace the rest."""

    @abstractmethod
    def _set_campaign_state(self, campaign_id: str, state: str, at: float) -> bool:
        """Update state and updated_at; whether the campaign exists."""

    @abstractmethod
    def _campaigns(self, owner: str | None, limit: int) -> list[Sequence[object]]:
        """CAMPAIGN_COLUMNS rows, newest created first, at most `limit`."""

    @abstractmethod
    def _campaign(self, campaign_id: str) -> list[Sequence[object]]:
        """The campaign's CAMPAIGN_COLUMNS row (a list of none or one)."""

    @abstractmethod
    def _save_campaign_contact_list(self, values: list[tuple[str, int, str | None, float, str, str]]) -> None:
        """Upsert (campaign_id, row_number, number, updated_at, result, contact) rows."""

    @abstractmethod
    def _campaign_contact_rows(self, campaign_id: str) -> list[Sequence[object]]:
        """(row_number, contact, result) rows ordered by row number."""


def _record(row: Sequence[object]) -> CampaignRecord | None:
    campaign_id, owner, state, created_at, updated_at, spec = row
    loaded = _json_object(spec)
    if loaded is None:
        return None
    return CampaignRecord(str(campaign_id), str(owner), str(state), float(str(created_at)),
                          float(str(updated_at)), loaded)


def _json_object(payload: object) -> dict[str, Any] | None:
    try:
        value = json.loads(str(payload))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
