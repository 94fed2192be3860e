"""The HPACK shortcuts in delivery/providers/h2util.py must be byte-for-byte
interchangeable with hpack's own encoder and decoder."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.exceptions import HPACKDecodingError
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.providers.h2util import FastHpackDecoder, PlainHpackEncoder

names = st.sampled_from(
    [b":method", b":path", b"authorization", b"apns-topic", b"apns-id", b"x-custom", b"a" * 40]
)
values = st.binary(max_size=60) | st.sampled_from([b"POST", b"GET", b"10", b"alert", b""])
header = st.tuples(names, values, st.booleans()).map(
    lambda t: NeverIndexedHeaderTuple(t[0], t[1]) if t[2] else HeaderTuple(t[0], t[1])
)
blocks = st.lists(st.lists(header, max_size=8), min_size=1, max_size=12)
table_sizes = st.lists(st.sampled_from([None, 0, 64, 256, 4096]), min_size=12, max_size=12)


@settings(max_examples=40, deadline=None)
@given(blocks=blocks, huffman=st.booleans(), sizes=table_sizes)
def test_fast_decoder_matches_hpack(blocks, huffman, sizes):
    encoder = Encoder()
    reference, fast = Decoder(), FastHpackDecoder()
    for block, size in zip(blocks, sizes, strict=False):
        if size is not None:
            encoder.header_table_size = size
        data = encoder.encode(block, huffman=huffman)
        expected = list(reference.decode(data, raw=True))
        got = fast.decode(data, raw=True)
        assert got == expected
        assert [type(h) for h in got] == [type(h) for h in expected]
        assert fast.header_table.dynamic_entries == reference.header_table.dynamic_entries


@settings(max_examples=40, deadline=None)
@given(blocks=blocks, sizes=table_sizes)
def test_caching_encoder_round_trips(blocks, sizes):
    """Repeated header sets hit the cache; every block must still decode to the
    headers given (pseudo-headers first, never-indexed ones after them)."""
    encoder, decoder = PlainHpackEncoder(), Decoder()
    for block, size in zip(blocks * 2, sizes * 2, strict=False):
        if size is not None:
            encoder.header_table_size = size
        ordered = sorted(block, key=lambda h: not h[0].startswith(b":"))
        decoded = list(decoder.decode(encoder.encode(ordered), raw=True))
        expected_order = (
            [h for h in ordered if h[0].startswith(b":") and h.indexable]
            + [h for h in ordered if not h.indexable]
            + [h for h in ordered if not h[0].startswith(b":") and h.indexable]
        )
        assert [tuple(h) for h in decoded] == [tuple(h) for h in expected_order]


def test_fast_decoder_rejects_what_hpack_rejects():
    fast = FastHpackDecoder()
    with pytest.raises(HPACKDecodingError):
        fast.decode(b"\x80", raw=True)  # index 0
    with pytest.raises(HPACKDecodingError):
        fast.decode(b"\x04\x05ab", raw=True)  # truncated literal
    with pytest.raises(HPACKDecodingError):
        fast.decode(b"\x82\x3f\xe1\x1f", raw=True)  # size update after a header
