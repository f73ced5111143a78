"""A ``TURNOUT_`` variable turnout does not read is an error naming it, where it was set, and what it probably meant.

From the environment and from ``.env``; a section for an unlisted backend
(legal, one warning); ``TURNOUT_STRICT=0`` (one warning per variable, and
the configuration works); the ``turnout config`` command.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional

import pytest

from tests.cli.test_cli import Run, turnout  # noqa: F401  (the CLI fixture: a subprocess in tmp_path)
from turnout import ConfigError
from turnout.settings import BackendSettings, TurnoutSettings, _names, from_env, resolve

GROQ_KEY = "gsk.groq.secret.0123456789abcdef"  # fake; dots keep secret scanners quiet
CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Path:
    """No TURNOUT_* from the developer's shell, no .env, and warnings as a fresh process would give them."""
    for name in list(os.environ):
        if name.upper().startswith("TURNOUT_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(_names, "_WARNED", set())
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="turnout")
    return tmp_path


def setenv(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def set_in(where: str, monkeypatch: pytest.MonkeyPatch, directory: Path, **variables: str) -> str:
    """Set ``variables`` in the environment or in ./.env; returns how errors name the place."""
    if where == "environment":
        setenv(monkeypatch, **variables)
        return "in the environment"
    path = directory / ".env"
    path.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
    return f"in {path.resolve()}"


def error_of(**overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        TurnoutSettings(**overrides)
    return str(caught.value)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and (r.name == "turnout" or r.name.startswith("turnout."))
    ]


# -- a misspelt variable -----------------------------------------------------------------------

MISSPELT = [
    ("TURNOUT_MAX_RETRYS", "TURNOUT_MAX_RETRIES"),
    ("TURNOUT_BACKOFF_MAXX", "TURNOUT_BACKOFF_MAX"),
    ("TURNOUT_BACKNDS", "TURNOUT_BACKENDS"),
    ("TURNOUT_RETRY_BUDGET_MN", "TURNOUT_RETRY_BUDGET_MIN"),
    ("TURNOUT_TIME_OUT", "TURNOUT_TIMEOUT"),
    ("TURNOUT_COOLDOWNS", "TURNOUT_COOLDOWN"),
    ("TURNOUT_ENVFILE", "TURNOUT_ENV_FILE"),
    ("TURNOUT_STRIKT", "TURNOUT_STRICT"),
]


@pytest.mark.parametrize("where", ["environment", "dotenv"])
@pytest.mark.parametrize(("misspelt", "meant"), MISSPELT)
def test_a_misspelt_variable_is_an_error_naming_it_its_place_and_the_likely_name(
    monkeypatch: pytest.MonkeyPatch, isolated: Path, where: str, misspelt: str, meant: str
) -> None:
    setenv(monkeypatch, TURNOUT_BACKENDS="vllm")
    place = set_in(where, monkeypatch, isolated, **{misspelt: "5"})
    assert error_of() == f"{misspelt} ({place}): is not a turnout variable; did you mean {meant}?"


def test_from_env_raises_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_MAX_RETRYS="5")
    with pytest.raises(
        ConfigError, match=r"^TURNOUT_MAX_RETRYS \(in the environment\): .*did you mean TURNOUT_MAX_RETRIES\?$"
    ):
        from_env()


def test_a_file_named_by_turnout_env_file_is_named(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    path = isolated / "prod.env"
    path.write_text("TURNOUT_BACKENDS=vllm\nTURNOUT_DEADLIN=30\n")
    setenv(monkeypatch, TURNOUT_ENV_FILE=str(path))
    assert (
        error_of()
        == f"TURNOUT_DEADLIN (in {path.resolve()}): is not a turnout variable; did you mean TURNOUT_DEADLINE?"
    )


def test_every_misspelt_variable_is_named_in_one_error(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    (isolated / ".env").write_text("TURNOUT_BACKOFF_MAXX=3\n")
    setenv(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_MAX_RETRYS="5")
    assert error_of() == (
        "2 configuration problems:\n"
        "  - TURNOUT_MAX_RETRYS (in the environment): is not a turnout variable; did you mean TURNOUT_MAX_RETRIES?\n"
        f"  - TURNOUT_BACKOFF_MAXX (in {(isolated / '.env').resolve()}): is not a turnout variable; "
        "did you mean TURNOUT_BACKOFF_MAX?"
    )


def test_a_section_variable_missing_its_double_underscores_suggests_the_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setenv(monkeypatch, TURNOUT_BACKENDS="groq", GROQ_API_KEY=GROQ_KEY, TURNOUT_BACKEND_GROQ_TIMEOUT="5")
    assert error_of().endswith("did you mean TURNOUT_BACKEND__GROQ__TIMEOUT?")


def test_with_nothing_close_the_error_lists_what_turnout_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_COLOUR_SCHEME="dark")
    message = error_of()
    assert message.startswith("TURNOUT_COLOUR_SCHEME (in the environment): is not a turnout variable")
    assert "did you mean" not in message
    assert "TURNOUT_STRICT=0" in message  # the way out for an environment shared with another turnout version
    assert message.endswith(
        "; accepted: TURNOUT_BACKENDS, TURNOUT_BACKEND, TURNOUT_MAX_RETRIES, TURNOUT_BACKOFF_BASE, "
        "TURNOUT_BACKOFF_MAX, TURNOUT_TIMEOUT, TURNOUT_FIRST_TOKEN_TIMEOUT, TURNOUT_ALLOWED_FAILS, TURNOUT_COOLDOWN, "
        "TURNOUT_DEADLINE, TURNOUT_RETRY_BUDGET, TURNOUT_RETRY_BUDGET_MIN, TURNOUT_STATEFUL_BACKEND, "
        "TURNOUT_RESPONSES_TTL, TURNOUT_FAILOVER_ON_CONTENT_FILTER, TURNOUT_RPM, TURNOUT_TPM, TURNOUT_STATE_URL, TURNOUT_STATE_PREFIX, "
        "TURNOUT_STATE_TIMEOUT, TURNOUT_STRATEGY, TURNOUT_AFFINITY, TURNOUT_AFFINITY_TTL, "
        "TURNOUT_HEDGE_AFTER, TURNOUT_MAX_HEDGES, TURNOUT_STRICT, TURNOUT_SERVE_HOST, TURNOUT_SERVE_PORT, "
        "TURNOUT_SERVE_API_KEYS, TURNOUT_SERVE_MAX_BODY, TURNOUT_SERVE_MAX_CONNECTIONS, "
        "TURNOUT_SERVE_HEADER_TIMEOUT, TURNOUT_SERVE_BODY_TIMEOUT, TURNOUT_SERVE_METRICS_OPEN, "
        "TURNOUT_ENV_FILE, TURNOUT_BACKEND__<NAME>__<FIELD>"
    )


def test_a_field_added_to_the_model_is_a_known_variable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    class Later(TurnoutSettings):
        later_setting: Optional[str] = None

    setenv(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_LATER_SETTING="on")
    assert Later().later_setting == "on"
    assert error_of().startswith("TURNOUT_LATER_SETTING (in the environment): is not a turnout variable")


def test_every_variable_the_readme_documents_is_read_and_every_one_read_is_documented() -> None:
    section = CONFIGURATION.read_text(encoding="utf-8")
    documented = {
        name for row in section.splitlines() if row.startswith("| ") for name in re.findall(r"`(TURNOUT_[A-Z_]+)`", row)
    }
    names = _names.Names.of(TurnoutSettings, BackendSettings)
    assert {n for n in documented if not names.reads(n)} == set()
    # TURNOUT_BACKEND (the sections as one JSON object) is documented as TURNOUT_BACKEND__<NAME>__<FIELD>
    assert set(names.variables) - documented == {"TURNOUT_BACKEND"}


# -- a misspelt field of a backend -------------------------------------------------------------


@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_a_misspelt_field_of_a_listed_backend_stays_an_error_with_the_likely_field(
    monkeypatch: pytest.MonkeyPatch, isolated: Path, where: str
) -> None:
    setenv(monkeypatch, TURNOUT_BACKENDS="groq", GROQ_API_KEY=GROQ_KEY)
    place = set_in(where, monkeypatch, isolated, TURNOUT_BACKEND__GROQ__TIMEOUTS="5")
    message = error_of()
    head = "TURNOUT_BACKEND__GROQ__TIMEOUTS" + ("" if where == "environment" else f" ({place})")
    assert message.startswith(f"{head}: is not a backend setting; accepted: PROVIDER, BASE_URL")
    assert message.endswith("; did you mean TURNOUT_BACKEND__GROQ__TIMEOUT?")


def test_the_likely_field_is_named_as_the_misspelt_one_was_set(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, TURNOUT_BACKENDS='[{"name": "box", "provider": "vllm", "timeouts": 5}]')
    assert error_of().endswith("did you mean TURNOUT_BACKENDS[0].timeout?")
    as_keyword = error_of(_env_file=None, backends="box", backend={"box": {"provider": "vllm", "max_retry": 5}})
    assert as_keyword.endswith("did you mean backend.box.max_retries?")


# -- a section for a backend that is not listed -------------------------------------------------


@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_a_section_for_an_unlisted_backend_is_one_warning_with_the_likely_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, isolated: Path, where: str
) -> None:
    place = set_in(
        where,
        monkeypatch,
        isolated,
        TURNOUT_BACKENDS="groq,local",
        GROQ_API_KEY=GROQ_KEY,
        TURNOUT_BACKEND__LOCAL__PROVIDER="vllm",
        TURNOUT_BACKEND__GORQ__TIMEOUT="5",
    )
    routers = [from_env(), from_env()]  # a program building two clients
    assert [[b.name for b in router.backends] for router in routers] == [["groq", "local"]] * 2
    named = "" if where == "environment" else f" ({place})"
    assert warnings(caplog) == [
        f"TURNOUT_BACKEND__GORQ__TIMEOUT{named} configures backend 'gorq', which "
        f"TURNOUT_BACKENDS{named} does not list (groq, local): ignored; did you mean GROQ?"
    ]


def test_a_section_for_an_unlisted_backend_far_from_any_name_is_a_plain_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    setenv(
        monkeypatch,
        TURNOUT_BACKENDS="groq",
        GROQ_API_KEY=GROQ_KEY,
        TURNOUT_BACKEND__SPARE__BASE_URL="http://10.0.0.9/v1",
    )
    from_env()
    assert warnings(caplog) == [
        "TURNOUT_BACKEND__SPARE__BASE_URL configures backend 'spare', which TURNOUT_BACKENDS "
        "does not list (groq): ignored"
    ]


# -- TURNOUT_STRICT=0 ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_strict_off_warns_once_per_variable_and_carries_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, isolated: Path, where: str
) -> None:
    setenv(
        monkeypatch,
        TURNOUT_BACKENDS="box",
        TURNOUT_BACKEND__BOX__PROVIDER="vllm",
        TURNOUT_BACKEND__BOX__BASE_URL="http://127.0.0.1:8000/v1",
        TURNOUT_BACKEND__BOX__TIMEOUT="7",
    )
    place = set_in(
        where, monkeypatch, isolated, TURNOUT_STRICT="0", TURNOUT_MAX_RETRYS="5", TURNOUT_BACKEND__BOX__BURST="60"
    )  # BURST: a field of a newer turnout
    settings = [TurnoutSettings(), TurnoutSettings()]
    assert settings[0].max_retries == 2  # the misspelt value is not in force, and nothing pretends it is
    assert settings[0].backend["box"].timeout == 7  # the section's real fields are, beside the unknown one
    assert [b.name for b in from_env().backends] == ["box"]
    rpm = "TURNOUT_BACKEND__BOX__BURST" + ("" if where == "environment" else f" ({place})")
    assert warnings(caplog) == [
        f"TURNOUT_MAX_RETRYS ({place}): is not a turnout variable; did you mean TURNOUT_MAX_RETRIES? "
        "(ignored: TURNOUT_STRICT is off)",
        f"{rpm}: is not a backend setting; accepted: PROVIDER, BASE_URL, API_KEY, API_KEY_ENV, AUTH, API_VERSION, PROXY, MODELS, "
        "PRIORITY, WEIGHT, MAX_RETRIES, BACKOFF_BASE, BACKOFF_MAX, TIMEOUT, FIRST_TOKEN_TIMEOUT, HEADERS, CAPABILITIES, ALLOWED_FAILS, COOLDOWN, "
        "RPM, TPM, PRICE (ignored: TURNOUT_STRICT is off)",
    ]
    assert resolve(settings[0]).notes == tuple(warnings(caplog))  # what turnout config shows


def test_strict_off_as_a_keyword_argument(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    setenv(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_MAX_RETRYS="5")
    assert TurnoutSettings(strict=False).max_retries == 2
    assert [w.split(":")[0] for w in warnings(caplog)] == ["TURNOUT_MAX_RETRYS (in the environment)"]


def test_strict_off_still_checks_keyword_arguments() -> None:
    """They are this program's own, not an environment shared with another turnout."""
    message = error_of(_env_file=None, strict=False, backends="box", backend={"box": {"provider": "vllm", "burst": 60}})
    assert message.startswith("keyword argument backend.box.burst: is not a backend setting")


def test_strict_takes_only_a_yes_or_no(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_STRICT="sometimes", TURNOUT_MAX_RETRYS="5")
    assert error_of().startswith("TURNOUT_STRICT='sometimes': is not true or false; accepted: 1 (")


# -- what must pass quietly ----------------------------------------------------------------------


def test_a_correct_configuration_among_other_programs_variables_raises_and_warns_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, isolated: Path
) -> None:
    (isolated / ".env").write_text(
        "# my app\n"
        "DATABASE_URL=postgres://app@127.0.0.1/app\n"
        "export DJANGO_SETTINGS_MODULE=app.settings\n"
        "TURNOUTS_PER_ELECTION=3\n"  # not our prefix
        f"GROQ_API_KEY={GROQ_KEY}\n"
        "TURNOUT_BACKEND__BOX__PROVIDER=vllm\n"
        "TURNOUT_BACKEND__BOX__BASE_URL=http://127.0.0.1:8000/v1\n"
        'TURNOUT_BACKEND__BOX__HEADERS={"X-Title": "app"}\n'
        "TURNOUT_BACKEND__GROQ__MODELS=fast=llama-3.1-8b-instant\n"
        "TURNOUT_COOLDOWN=10\n"
        "TURNOUT_MAX_RETRIES=\n"
    )  # empty: unset
    setenv(
        monkeypatch,
        OPENAI_API_KEY="sk.openai.secret.0123456789abcdef",
        TURNOUT_BACKENDS="box,groq",
        TURNOUT_MAX_RETRIES="3",
        TURNOUT_BACKOFF_BASE="1.5",
        TURNOUT_BACKOFF_MAX="8",
        TURNOUT_TIMEOUT="20",
        TURNOUT_ALLOWED_FAILS="5",
        TURNOUT_DEADLINE="60",
        TURNOUT_RETRY_BUDGET="0.3",
        TURNOUT_RETRY_BUDGET_MIN="4",
        TURNOUT_STRICT="1",
        TURNOUT_ENV_FILE=str(isolated / ".env"),
        TURNOUT_BACKEND__GROQ__TIMEOUT="7",
    )
    router = from_env()
    assert [b.name for b in router.backends] == ["box", "groq"]
    assert warnings(caplog) == []


# -- turnout config ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_config_prints_the_error_and_exits_2(turnout: Run, tmp_path: Path, where: str) -> None:  # noqa: F811
    env = {"TURNOUT_BACKENDS": "vllm"}
    if where == "environment":
        env["TURNOUT_MAX_RETRYS"] = "5"
    else:
        (tmp_path / ".env").write_text("TURNOUT_MAX_RETRYS=5\n")
    done = turnout("config", env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert "TURNOUT_MAX_RETRYS" in done.stderr and "did you mean TURNOUT_MAX_RETRIES?" in done.stderr
    assert ("in the environment" if where == "environment" else ".env") in done.stderr


def test_config_with_strict_off_shows_the_warnings_once_as_notes(turnout: Run) -> None:  # noqa: F811
    done = turnout(
        "config",
        env={
            "TURNOUT_BACKENDS": "vllm",
            "TURNOUT_STRICT": "0",
            "TURNOUT_MAX_RETRYS": "5",
            "TURNOUT_BACKEND__VLM__TIMEOUT": "5",
        },
    )
    assert done.returncode == 0, done.stderr
    assert (
        "note: TURNOUT_MAX_RETRYS (in the environment): is not a turnout variable; did you mean "
        "TURNOUT_MAX_RETRIES? (ignored: TURNOUT_STRICT is off)"
    ) in done.stdout.splitlines()
    assert (
        "note: TURNOUT_BACKEND__VLM__TIMEOUT configures backend 'vlm', which TURNOUT_BACKENDS does not list "
        "(vllm): ignored; did you mean VLLM?"
    ) in done.stdout.splitlines()
    assert "TURNOUT_MAX_RETRYS" not in done.stderr  # the report says it; no second copy in the log
