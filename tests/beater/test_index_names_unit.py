"""Which index names Beater serves: what the engine accepts, within ESTROM_INDEX_PATTERNS."""

from __future__ import annotations

import pytest

from beater.indexes import InvalidIndex, check_index


@pytest.mark.parametrize(
    "name, reason",
    [
        ("\x1b[2Jevents", "control or invisible characters"),
        ("a\u200bb", "control or invisible characters"),
        (".hidden", "must not start with"),
        ("estrom-queries-events", "are estrom's own"),
        ("Events", "lowercase"),
        ("a b", "must not contain"),
        ("x" * 300, "too long"),
        ("", "missing"),
    ],
)
def test_names_the_engine_would_refuse_or_that_hide_are_refused(name, reason):
    with pytest.raises(InvalidIndex, match=reason) as raised:
        check_index(name)
    assert "\x1b" not in str(raised.value)  # never echoed back raw


def test_only_the_configured_patterns_are_served():
    patterns = ("logs-*", "events")
    assert check_index("logs-web", patterns) == "logs-web"
    assert check_index("events", patterns) == "events"
    with pytest.raises(InvalidIndex, match=r"not served here \(allowed: logs-\*, events\)"):
        check_index("metrics", patterns)
