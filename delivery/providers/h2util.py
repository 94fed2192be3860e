"""Two ``h2`` costs that dominate a busy connection, and how we avoid them.

Shared by the APNs sender and the APNs simulator (both pure, no Django).

* h2 counts open streams by scanning *every* stream each time one is opened (to
  enforce MAX_CONCURRENT_STREAMS); at 500 streams in flight that scan was ~30 % of
  the sender's CPU. Both of our ends bound concurrency themselves (the sender's
  channel pool follows the server's SETTINGS; the simulator trusts its clients), so
  :class:`LeanH2Connection` does the real count (which also purges closed streams)
  only every ``FULL_COUNT_EVERY`` calls.
* hpack Huffman-codes every literal in pure Python; device tokens make ``:path``
  a new literal on every request. :class:`PlainHpackEncoder` sends literals
  unencoded (a few bytes more on a connection that is never the bottleneck) and
  callers mark per-request values never-indexed so they do not churn the dynamic
  table.
"""

from __future__ import annotations

from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from hpack import Encoder, NeverIndexedHeaderTuple

FULL_COUNT_EVERY = 128

__all__ = ["FULL_COUNT_EVERY", "LeanH2Connection", "NeverIndexedHeaderTuple", "PlainHpackEncoder"]


class PlainHpackEncoder(Encoder):
    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class LeanH2Connection(H2Connection):
    def __init__(self, *, client_side: bool) -> None:
        super().__init__(
            config=H2Configuration(
                client_side=client_side,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
            )
        )
        self.encoder = PlainHpackEncoder()
        self._stream_opens = 0

    def _cheap_count(self, remainder: int) -> int:
        self._stream_opens += 1
        if self._stream_opens % FULL_COUNT_EVERY == 0:
            return self._open_streams(remainder)
        return 0

    @property
    def open_outbound_streams(self) -> int:
        return self._cheap_count(int(self.config.client_side))

    @property
    def open_inbound_streams(self) -> int:
        return self._cheap_count(int(not self.config.client_side))
