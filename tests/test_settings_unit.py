"""Settings from flags and ESTROM_* variables (estrom/settings.py), as `python -m beater` reads them."""

from __future__ import annotations

import dataclasses
import re

import pytest

from beater.settings import BeaterSettings
from dev.stack import ENGINE_NAMES, ENGINES, ROOT
from estrom.settings import env_of, load
from tailor.settings import TailorSettings


def test_a_flag_wins_over_the_environment_which_wins_over_the_default(monkeypatch):
    assert load(BeaterSettings, []).max_body_bytes == 10 * 1024 * 1024
    monkeypatch.setenv("ESTROM_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("ESTROM_STORE", "yes")
    assert (load(BeaterSettings, []).max_body_bytes, load(BeaterSettings, []).store) == (2048, True)
    assert load(BeaterSettings, ["--max-body-bytes", "4096"]).max_body_bytes == 4096


@pytest.mark.parametrize("cls", [BeaterSettings, TailorSettings])
def test_help_works_whatever_the_environment_says(cls, monkeypatch, capsys):
    monkeypatch.setenv("ESTROM_MAX_BODY_BYTES", "ten")
    monkeypatch.setenv("ESTROM_MAX_PENDING_HITS", "many")
    with pytest.raises(SystemExit) as ended:
        load(cls, ["--help"])
    assert ended.value.code == 0
    assert "ESTROM_ACCESS_LOG" in capsys.readouterr().out  # whose help says "7 %"


def test_a_bad_value_names_its_flag_and_variable(monkeypatch, capsys):
    monkeypatch.setenv("ESTROM_MAX_BODY_BYTES", "ten")
    with pytest.raises(SystemExit) as ended:
        load(BeaterSettings, [])
    assert ended.value.code == 2
    assert "'ten' is not a valid int (--max-body-bytes or $ESTROM_MAX_BODY_BYTES)" in capsys.readouterr().err
    # The flag mends it.
    assert load(BeaterSettings, ["--max-body-bytes", "10"]).max_body_bytes == 10


def test_make_up_names_the_engine_it_starts():
    assert set(ENGINE_NAMES) == set(ENGINES)


def _documented() -> dict[str, list[str]]:
    """docs/configuration.md's table: each variable, and the defaults its row gives (in order,
    a row naming two variables gives two defaults; a default a service has of its own is
    written `value` (Service))."""
    rows: dict[str, list[str]] = {}
    text = (ROOT / "docs" / "configuration.md").read_text()
    for line in text.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `ESTROM_") or len(cells) < 3:
            continue
        names = re.findall(r"`(ESTROM_\w+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1])
        for number, name in enumerate(names):
            rows[name] = defaults[number : number + 1] if len(defaults) == len(names) else defaults
    return rows


@pytest.mark.parametrize("cls", [BeaterSettings, TailorSettings], ids=["beater", "tailor"])
def test_the_configuration_reference_has_every_setting_with_its_default(cls):
    # docs/configuration.md is written by hand: every variable `--help` lists is in it, with
    # the default --help gives (a secret's, and an unset one's, as "(none)").
    documented = _documented()
    for field in dataclasses.fields(cls):
        env = env_of(field)
        assert env in documented, f"{env} (--help of {cls.__name__}) is not in docs/configuration.md"
        if field.metadata["secret"] or field.default in ("", None):
            continue
        default = str(field.default).lower() if isinstance(field.default, bool) else str(field.default)
        assert any(_same(default, given) for given in documented[env]), (
            f"{env}: --help says {default}, docs/configuration.md {documented[env]}"
        )


def _same(value: str, written: str) -> bool:
    """``10.0`` is written ``10``."""
    try:
        return float(value) == float(written)
    except ValueError:
        return value == written


def test_the_configuration_reference_lists_no_setting_that_is_gone():
    known = {env_of(field) for cls in (BeaterSettings, TailorSettings) for field in dataclasses.fields(cls)}
    elsewhere = {  # read by make up, estrom tail and token, or the router, not a service's settings
        "ESTROM_ELASTICSEARCH_URL",
        "ESTROM_BEATER_SECRET",
        "ESTROM_TAILOR_SECRET",
        "ESTROM_TAILOR_URL",
        "ESTROM_TOKEN",
        "ESTROM_ALLOWED_ORIGINS",
    }
    assert sorted(set(_documented()) - known - elsewhere) == []
