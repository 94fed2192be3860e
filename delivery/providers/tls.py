"""TLS client contexts shared by the senders.

An extra CA (``ca_file``) is *added* to the system trust store rather than replacing
it, so the same config can point at the simulators (self-signed local CA) or at a
real provider behind a corporate CA. Verification is never disabled.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence


def client_ssl_context(ca_file: str = "", alpn_protocols: Sequence[str] = ()) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context
