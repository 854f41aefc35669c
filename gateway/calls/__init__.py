"""Calls: who gets one, the registry of those up, their media bridge, transfer, and what they leave behind."""

from gateway.calls.active import ActiveCall
from gateway.calls.manager import CallManager, GatewayDraining
from gateway.calls.outcome import CallOutcome

__all__ = ["ActiveCall", "CallManager", "CallOutcome", "GatewayDraining"]
