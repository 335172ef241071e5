"""Per-user task service that sits behind the Portcullis gateway.

It trusts the X-User-Id request header blindly, so it must only ever be
reachable through the gateway (see README.md).
"""

from .app import create_app

__all__ = ["create_app"]
