"""Localized payloads cost work linear in the number of localizations (issue 9).

Counted, not timed: a mapping that counts every entry read shows how often the
localizations are scanned, and wrapped builders count the payload builds. A scan per
build (what made 10,000 localizations take 66 s) reads N entries per build.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery import payloads
from delivery.payloads import PushContent, Recipient, payload_size_report, select_text

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class CountingLocalizations(Mapping[str, Mapping[str, str]]):
    """A localizations mapping that counts each key yielded and each value looked up."""

    def __init__(self, entries: Mapping[str, Mapping[str, str]]) -> None:
        self._entries = dict(entries)
        self.reads = 0

    def __getitem__(self, key: str) -> Mapping[str, str]:
        self.reads += 1
        return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        for key in self._entries:
            self.reads += 1
            yield key

    def __len__(self) -> int:
        return len(self._entries)


def _localizations(n: int) -> CountingLocalizations:
    return CountingLocalizations({f"zz-{i:04d}": {"title": f"T{i}"} for i in range(n)})


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count calls of the three builders as payload_size_report makes them."""
    counts = {"apns": 0, "fcm": 0, "webpush": 0}
    real_apns, real_fcm, real_webpush = (
        payloads.build_apns,
        payloads.build_fcm,
        payloads.build_webpush,
    )

    def counting_apns(*args: Any, **kwargs: Any) -> Any:
        counts["apns"] += 1
        return real_apns(*args, **kwargs)

    def counting_fcm(*args: Any, **kwargs: Any) -> Any:
        counts["fcm"] += 1
        return real_fcm(*args, **kwargs)

    def counting_webpush(*args: Any, **kwargs: Any) -> Any:
        counts["webpush"] += 1
        return real_webpush(*args, **kwargs)

    monkeypatch.setattr(payloads, "build_apns", counting_apns)
    monkeypatch.setattr(payloads, "build_fcm", counting_fcm)
    monkeypatch.setattr(payloads, "build_webpush", counting_webpush)
    return counts


@pytest.mark.parametrize("n", [1, 300, 1000])
def test_size_report_reads_each_localization_a_constant_number_of_times(
    builds: dict[str, int], n: int
) -> None:
    localizations = _localizations(n)

    report = payload_size_report(PushContent(title="T", body="B", localizations=localizations))

    assert report == []
    # One APNs, three FCM (android, ios, web) and one web push build per language and
    # the default.
    assert builds == {"apns": n + 1, "fcm": 3 * (n + 1), "webpush": n + 1}
    # Indexed once when the content is made (each key and value read once), then the
    # languages listed once; no build scans the localizations.
    assert localizations.reads == 3 * n


def test_building_one_payload_reads_no_localization() -> None:
    localizations = _localizations(500)
    content = PushContent(title="T", body="B", localizations=localizations)
    localizations.reads = 0

    payload, _ = payloads.build_apns(content, Recipient(language="zz-0499"), now=NOW)
    message = payloads.build_fcm(content, Recipient(language="ZZ_0007"), now=NOW)

    assert payload["aps"]["alert"] == {"title": "T499", "body": "B"}
    assert message["notification"] == {"title": "T7", "body": "B"}
    assert localizations.reads == 0


# --- the index chooses exactly what a scan of every localization chose -----------------


def _scan_text(content: PushContent, language: str) -> tuple[str, str]:
    """The selection as it was before the index: a scan of every key per call."""

    def normalize(tag: str) -> str:
        return tag.strip().replace("_", "-").lower()

    candidates: list[Mapping[str, str]] = []
    wanted = normalize(language)
    if wanted:
        base = wanted.split("-", 1)[0]
        exact: Mapping[str, str] | None = None
        base_match: Mapping[str, str] | None = None
        for key, localization in content.localizations.items():
            normalized = normalize(key)
            if exact is None and normalized == wanted:
                exact = localization
            elif base_match is None and normalized == base:
                base_match = localization
        candidates = [loc for loc in (exact, base_match) if loc is not None]
    title = next((loc["title"] for loc in candidates if loc.get("title")), content.title)
    body = next((loc["body"] for loc in candidates if loc.get("body")), content.body)
    return title, body


# Tags chosen to collide after normalization (case, "_" vs "-", spaces, empty).
_tags = st.sampled_from(["pt", "PT", " pt", "pt_BR", "pt-br", "PT-BR ", "zh-Hant", "zh", "", "-"])
_texts = st.sampled_from(["", "a", "b", "c"])


@settings(max_examples=300, deadline=None)
@given(
    localizations=st.dictionaries(
        _tags, st.fixed_dictionaries({}, optional={"title": _texts, "body": _texts}), max_size=6
    ),
    language=_tags | st.sampled_from(["pt-PT", "zh-Hant-TW", "de", "_"]),
)
def test_select_text_matches_a_full_scan(
    localizations: dict[str, dict[str, str]], language: str
) -> None:
    content = PushContent(title="T", body="B", localizations=localizations)

    assert select_text(content, language) == _scan_text(content, language)
