"""The operator's web console, served at `/` on `http.listen` (see routes.py for the map)."""

from gateway.console.auth import Credentials, Role
from gateway.console.feed import CallFeed
from gateway.console.routes import Console
from gateway.console.sources import ConsoleSources

__all__ = ["CallFeed", "Console", "ConsoleSources", "Credentials", "Role"]
