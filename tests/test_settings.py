"""Settings from flags and ESTROM_* variables (estrom/settings.py), as `python -m beater` reads them."""

from __future__ import annotations

import pytest

from beater.settings import BeaterSettings
from dev.stack import ENGINE_NAMES, ENGINES
from estrom.settings import load
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
