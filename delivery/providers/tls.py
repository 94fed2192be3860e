"""TLS client contexts shared by the senders.

An extra CA (``ca_file``) is *added* to the system trust store rather than replacing
it, so the same config can point at the simulators (self-signed local CA) or at a
real provider behind a corporate CA. Verification is never disabled.

Loading the system trust store costs ~0.1 s, so contexts without a client
certificate are cached per (ca_file, ALPN); ``SSLContext`` is safe to share between
connections. A context that will receive a client certificate must be fresh.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Sequence


def new_client_ssl_context(ca_file: str = "", alpn_protocols: Sequence[str] = ()) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


@functools.lru_cache(maxsize=16)
def shared_client_ssl_context(
    ca_file: str = "", alpn_protocols: tuple[str, ...] = ()
) -> ssl.SSLContext:
    return new_client_ssl_context(ca_file, alpn_protocols)
