"""Bad configuration: one ConfigError naming the variable, the value (masked) and what is accepted.
Secrets never reach a repr, a log line or an error message."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.settings.test_settings import GROQ_KEY, OPENAI_KEY, dotenv, env, isolated  # noqa: F401  (autouse fixture)
from turnout import ConfigError
from turnout.settings import TurnoutSettings, from_env, resolve

SECRET = "sk.very.secret.value.0123456789"  # fake; dots keep secret scanners quiet


def error(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    env(monkeypatch, **variables)
    with pytest.raises(ConfigError) as caught:
        resolve(TurnoutSettings())
    assert isinstance(caught.value, ValueError)
    hidden = caught.value.__context__ is None or caught.value.__suppress_context__
    assert caught.value.__cause__ is None and hidden  # pydantic's error, which echoes input, stays out of tracebacks
    return str(caught.value)


def test_nothing_configured_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch)
    assert message.startswith("no backend configured: set TURNOUT_BACKENDS")
    assert "OPENAI_API_KEY" in message and "GROQ_API_KEY" in message and "OLLAMA_HOST" in message


def test_unknown_provider_lists_the_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="primary", TURNOUT_BACKEND__PRIMARY__PROVIDER="vllmm")
    assert message.startswith("TURNOUT_BACKEND__PRIMARY__PROVIDER='vllmm': unknown provider 'vllmm'; known providers: ")
    assert "openrouter" in message and "vllm," in message


def test_a_listed_name_that_is_no_provider_needs_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="groq,primary", GROQ_API_KEY=GROQ_KEY)
    assert message.startswith(
        "TURNOUT_BACKENDS lists 'primary', which is not a provider: set TURNOUT_BACKEND__PRIMARY__PROVIDER to one of: "
    )
    assert "vllm" in message


def test_a_cloud_preset_without_its_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="groq")
    assert message == (
        "backend 'groq' (provider groq) has no API key: set GROQ_API_KEY (or TURNOUT_BACKEND__GROQ__API_KEY, "
        "or TURNOUT_BACKEND__GROQ__API_KEY_ENV naming the variable that holds it)"
    )


def test_another_providers_key_is_never_borrowed(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="groq", OPENAI_API_KEY=OPENAI_KEY)
    assert "set GROQ_API_KEY" in message and OPENAI_KEY not in message


def test_a_backend_named_for_openai_with_another_provider_takes_that_providers_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = error(
        monkeypatch, TURNOUT_BACKENDS="openai", TURNOUT_BACKEND__OPENAI__PROVIDER="groq", OPENAI_API_KEY=OPENAI_KEY
    )
    assert "set GROQ_API_KEY" in message


def test_api_key_env_naming_an_unset_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(
        monkeypatch,
        TURNOUT_BACKENDS="backup",
        TURNOUT_BACKEND__BACKUP__PROVIDER="openrouter",
        TURNOUT_BACKEND__BACKUP__API_KEY_ENV="MY_OR_KEY",
    )
    assert message.startswith("TURNOUT_BACKEND__BACKUP__API_KEY_ENV='MY_OR_KEY': names a variable that is set neither")


def test_api_key_and_api_key_env_together_are_ambiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(
        monkeypatch,
        TURNOUT_BACKENDS="groq",
        TURNOUT_BACKEND__GROQ__API_KEY=SECRET,
        TURNOUT_BACKEND__GROQ__API_KEY_ENV="MY_OR_KEY",
        MY_OR_KEY=GROQ_KEY,
    )
    assert message == (
        "TURNOUT_BACKEND__GROQ__API_KEY and TURNOUT_BACKEND__GROQ__API_KEY_ENV are both set: "
        "the key or the variable holding it, not both"
    )


def test_api_key_env_must_be_a_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="groq", TURNOUT_BACKEND__GROQ__API_KEY_ENV="my key")
    assert message.startswith(
        "TURNOUT_BACKEND__GROQ__API_KEY_ENV='my key': is not a variable name; accepted: the name of"
    )


@pytest.mark.parametrize("url", ["ftp://box/v1", "box:8000/v1", "http://", "http://box:99999/v1", "http://a b/v1"])
def test_a_malformed_base_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    message = error(
        monkeypatch, TURNOUT_BACKENDS="box", TURNOUT_BACKEND__BOX__PROVIDER="vllm", TURNOUT_BACKEND__BOX__BASE_URL=url
    )
    assert message.startswith(f"TURNOUT_BACKEND__BOX__BASE_URL={url!r}: ")
    assert message.endswith("accepted: an http:// or https:// URL")


def test_a_malformed_openai_base_url_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL="localhost:8000")
    assert message.startswith("OPENAI_BASE_URL='localhost:8000': is not an http:// or https:// URL")


def test_ollama_host_may_be_a_bare_host(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, OLLAMA_HOST="gpu-box:11434")
    [backend] = resolve(TurnoutSettings()).backends
    assert backend.base_url.value == "gpu-box:11434"


def test_a_custom_server_needs_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="mine", TURNOUT_BACKEND__MINE__PROVIDER="custom")
    assert message.startswith(
        "backend 'mine': provider 'openai_compat' has no default address; set TURNOUT_BACKEND__MINE__BASE_URL"
    )


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("TURNOUT_BACKEND__VLLM__MAX_RETRIES", "-1", "a whole number >= 0"),
        ("TURNOUT_MAX_RETRIES", "-1", "a whole number >= 0"),
        ("TURNOUT_MAX_RETRIES", "two", "a whole number >= 0"),
        ("TURNOUT_BACKEND__VLLM__TIMEOUT", "-0.5", "seconds >= 0"),
        ("TURNOUT_BACKOFF_MAX", "-3", "seconds >= 0"),
        ("TURNOUT_ALLOWED_FAILS", "0", "a whole number >= 1"),
        ("TURNOUT_BACKEND__VLLM__WEIGHT", "0", "a number > 0"),
        ("TURNOUT_BACKEND__VLLM__PRIORITY", "first", "a whole number; lower is tried first"),
        ("TURNOUT_DEADLINE", "-5", "seconds > 0"),
        ("TURNOUT_RETRY_BUDGET", "lots", "a share >= 0, like 0.2"),
    ],
)
def test_a_bad_number_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="vllm", **{variable: value})
    assert message.startswith(f"{variable}={value!r}: ") and message.endswith(f"; accepted: {accepted}")


def test_a_bad_value_in_dotenv_names_the_file(isolated: Path) -> None:  # noqa: F811
    path = dotenv(isolated, "TURNOUT_BACKENDS=groq\nTURNOUT_BACKEND__GROQ__MAX_RETRIES=-1\n")
    with pytest.raises(ConfigError) as caught:
        TurnoutSettings()
    assert str(caught.value).startswith(f"TURNOUT_BACKEND__GROQ__MAX_RETRIES (in {path.resolve()})='-1': ")


def test_a_bad_keyword_argument_names_it() -> None:
    with pytest.raises(ConfigError, match=r"^keyword argument backend\.box\.timeout=-1: "):
        TurnoutSettings(backends="box", backend={"box": {"timeout": -1}})


def test_a_misspelt_keyword_argument_is_reported() -> None:
    with pytest.raises(ConfigError, match="unknown setting max_retrys; accepted: backends, backend, max_retries"):
        from_env(max_retrys=3)


def test_a_misspelt_backend_field_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_BACKEND__VLLM__MAX_RETRYS="3")
    assert message.startswith(
        "TURNOUT_BACKEND__VLLM__MAX_RETRYS: is not a backend setting; accepted: PROVIDER, BASE_URL"
    )


@pytest.mark.parametrize("models", ["=llama", "fast=", "a,,b", "fast=a,fast=b", "a,"])
def test_a_models_entry_without_a_name(monkeypatch: pytest.MonkeyPatch, models: str) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_BACKEND__VLLM__MODELS=models)
    assert message.startswith(f"TURNOUT_BACKEND__VLLM__MODELS={models!r}: ")
    assert message.endswith("accepted: alias=model,alias2=model2 (a bare model means alias == model), or a JSON object")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("visoin=false", "unknown capability 'visoin'"),
        ("vision=maybe", "vision='maybe' is not true or false"),
        ("[1]", "unknown capability '[1]'"),
        ('{"vision": "x"}', "vision='x' is not true or false"),
    ],
)
def test_bad_capabilities(monkeypatch: pytest.MonkeyPatch, text: str, problem: str) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_BACKEND__VLLM__CAPABILITIES=text)
    assert message.startswith(f"TURNOUT_BACKEND__VLLM__CAPABILITIES={text!r}: {problem}; accepted: ")
    assert "audio_transcription" in message


def test_bad_headers_json_is_reported_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '{"Authorization": "Bearer ' + SECRET + '"'
    message = error(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_BACKEND__VLLM__HEADERS=text)
    assert message.startswith("TURNOUT_BACKEND__VLLM__HEADERS='{\"A…789\"': HEADERS is not valid JSON (Expecting")
    assert SECRET not in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("groq,,vllm", "has an empty name"),
        ("vllm,VLLM", "lists vllm more than once"),
    ],
)
def test_bad_backend_lists(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS=value)
    assert message.startswith(f"TURNOUT_BACKENDS={value!r}: {problem}")


def test_backends_json_that_does_not_parse_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS='[{"name": "box", "api_key": "' + SECRET + '"')
    assert message.startswith("TURNOUT_BACKENDS: the value is not valid JSON (")
    assert SECRET not in message


def test_a_backends_json_object_needs_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS='[{"provider": "vllm", "api_key": "' + SECRET + '"}]')
    assert message.startswith('TURNOUT_BACKENDS: entry 0 must be a name or an object with a "name"')
    assert SECRET not in message


def test_an_empty_list_in_code() -> None:
    with pytest.raises(ConfigError, match=r"^keyword argument backends=\[\]: lists no backend"):
        resolve(TurnoutSettings(backends=[], _env_file=None))


def test_a_missing_env_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(monkeypatch, TURNOUT_ENV_FILE="/nowhere/prod.env")
    assert message == "TURNOUT_ENV_FILE='/nowhere/prod.env': no such file; accepted: the path of a .env file"


def test_several_problems_come_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error(
        monkeypatch, TURNOUT_BACKENDS="groq,primary,vllm", TURNOUT_BACKEND__VLLM__TIMEOUT="-1", TURNOUT_MAX_RETRIES="-2"
    )
    assert message.startswith("2 configuration problems:\n  - ")
    assert "TURNOUT_BACKEND__VLLM__TIMEOUT='-1'" in message and "TURNOUT_MAX_RETRIES='-2'" in message
    message = error(monkeypatch, TURNOUT_BACKEND__VLLM__TIMEOUT="1", TURNOUT_MAX_RETRIES="1")
    assert "GROQ_API_KEY" in message and "TURNOUT_BACKEND__PRIMARY__PROVIDER" in message


# -- secrets ---------------------------------------------------------------------


def test_no_secret_in_repr_logs_errors_or_describe(
    monkeypatch: pytest.MonkeyPatch,
    isolated: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    dotenv(isolated, f"GROQ_API_KEY={GROQ_KEY}\n")
    header_secret = "hdr-secret-0123456789abcdef"
    env(
        monkeypatch,
        PYDANTIC_SETTINGS_DEBUG="1",
        TURNOUT_BACKENDS='["groq", "box", {"name": "json", "provider": "vllm", "api_key": "json-secret-0123456789abcdef"}]',
        TURNOUT_BACKEND__BOX__PROVIDER="vllm",
        TURNOUT_BACKEND__BOX__API_KEY=SECRET,
        TURNOUT_BACKEND__BOX__HEADERS=json.dumps({"Authorization": f"Bearer {header_secret}"}),
        TURNOUT_SERVE_API_KEYS="serve-secret-0123456789abcdef,serve-other-0123456789abcdef",
        OPENAI_API_KEY=OPENAI_KEY,
    )
    secrets = [
        GROQ_KEY,
        SECRET,
        header_secret,
        "json-secret-0123456789abcdef",
        OPENAI_KEY,
        "serve-secret-0123456789abcdef",
        "serve-other-0123456789abcdef",
    ]
    caplog.set_level(logging.DEBUG)
    settings = TurnoutSettings()
    config = resolve(settings)
    router = from_env()
    texts = [
        repr(settings),
        str(settings),
        repr(config),
        json.dumps(config.describe()),
        repr(router.backends),
        settings.model_dump_json(),
        caplog.text,
    ]
    assert "Resolving settings" in caplog.text  # pydantic-settings' own debug log was on
    assert "backend box: " in caplog.text  # and ours
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "sk.…6789" in json.dumps(config.describe(), ensure_ascii=False)


@pytest.mark.parametrize(
    "variables",
    [
        {"TURNOUT_BACKEND__VLLM__API_KEY": SECRET, "TURNOUT_BACKEND__VLLM__TIMEOUT": "-1"},
        {"TURNOUT_BACKEND__VLLM__HEADERS": '{"X-Key": 5, "Y": "' + SECRET + '"}'},
        {"TURNOUT_BACKEND__VLLM__HEADERS": '["' + SECRET + '"]'},
        {"TURNOUT_BACKEND__VLLM__API_KEY": SECRET, "TURNOUT_BACKEND__VLLM__API_KEY_ENV": "NOT_SET_ANYWHERE"},
    ],
)
def test_no_secret_in_error_messages(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="vllm", **variables)
    with pytest.raises(ConfigError) as caught:
        resolve(TurnoutSettings())
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_credentials_inside_a_base_url_are_never_shown(monkeypatch, tmp_path) -> None:
    from turnout.adapters import OpenAICompatAdapter
    from turnout.settings import TurnoutSettings, resolve

    monkeypatch.chdir(tmp_path)
    url = "https://bob:hunter2-token@proxy.example/v1"
    settings = TurnoutSettings(_env_file=None, backends=["box"], backend={"box": {"provider": "vllm", "base_url": url}})
    shown = str(resolve(settings, strict=False).describe())
    assert "hunter2-token" not in shown and "https://bob:****@proxy.example/v1" in shown
    assert "hunter2-token" not in repr(OpenAICompatAdapter("box", preset="vllm", base_url=url))


def test_a_stateful_backend_that_is_not_listed_names_the_variable_and_the_backends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = error(monkeypatch, TURNOUT_BACKENDS="vllm,llamacpp", TURNOUT_STATEFUL_BACKEND="vlm")
    assert message == (
        "stateful_backend 'vlm' (environment TURNOUT_STATEFUL_BACKEND) is not a listed backend; "
        "accepted: one of vllm, llamacpp"
    )
