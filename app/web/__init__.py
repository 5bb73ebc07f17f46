"""The web layer: dashboard, JSON API and live WebSocket, on Hypercorn's trio worker."""

from app.web.factory import create_web

__all__ = ["create_web"]
