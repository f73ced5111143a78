"""Settings: every variable parsed, precedence keyword > environment > .env, discovery.

Errors and secrecy are in test_settings_errors.py; the Router built from
settings, talking to loopback servers, in test_settings_router.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from turnout import ConfigError
from turnout.adapters import get_preset
from turnout.settings import Origin, ResolvedBackend, TurnoutSettings, discovery_order, resolve

GROQ_KEY = "gsk.groq.secret.0123456789abcdef"  # fake; dots keep secret scanners quiet
OPENAI_KEY = "sk.openai.secret.0123456789abcdef"  # fake


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No TURNOUT_* from the developer's shell, and a working directory with no .env in it."""
    for name in list(os.environ):
        if name.upper().startswith("TURNOUT_") or name.upper() in ("PYDANTIC_SETTINGS_DEBUG", "MY_OR_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def dotenv(directory: Path, text: str, name: str = ".env") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def backends(**overrides: object) -> list[ResolvedBackend]:
    return list(resolve(TurnoutSettings(**overrides)).backends)


def one(**overrides: object) -> ResolvedBackend:
    [backend] = backends(**overrides)
    return backend


# -- router-wide variables ---------------------------------------------------


def test_router_wide_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="vllm")
    s = TurnoutSettings()
    assert (s.max_retries, s.backoff_base, s.backoff_max, s.timeout, s.allowed_fails, s.cooldown) == (
        2,
        2.0,
        30.0,
        60.0,
        3,
        30.0,
    )
    assert (s.deadline, s.retry_budget, s.retry_budget_min) == (None, 0.2, 10)
    assert s.origin("max_retries") == Origin("default")


def test_every_router_wide_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS="vllm",
        TURNOUT_MAX_RETRIES="5",
        TURNOUT_BACKOFF_BASE="1.5",
        TURNOUT_BACKOFF_MAX="9",
        TURNOUT_TIMEOUT="12.5",
        TURNOUT_ALLOWED_FAILS="4",
        TURNOUT_COOLDOWN="7",
        TURNOUT_DEADLINE="40",
        TURNOUT_RETRY_BUDGET="0.5",
        TURNOUT_RETRY_BUDGET_MIN="3",
    )
    s = TurnoutSettings()
    assert (s.max_retries, s.backoff_base, s.backoff_max, s.timeout, s.allowed_fails, s.cooldown) == (
        5,
        1.5,
        9.0,
        12.5,
        4,
        7.0,
    )
    assert (s.deadline, s.retry_budget, s.retry_budget_min) == (40.0, 0.5, 3)
    assert s.origin("deadline") == Origin("environment", "TURNOUT_DEADLINE")
    backend = one()
    assert backend.max_retries.value == 5 and backend.max_retries.origin == Origin("environment", "TURNOUT_MAX_RETRIES")
    assert backend.timeout.value == 12.5 and backend.cooldown.value == 7.0


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_MAX_RETRIES="", TURNOUT_BACKEND__VLLM__TIMEOUT="")
    backend = one()
    assert backend.max_retries.value == 2 and backend.timeout.value == 60.0


# -- per-backend variables ---------------------------------------------------


def test_every_backend_field_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS="primary",
        TURNOUT_BACKEND__PRIMARY__PROVIDER="vllm",
        TURNOUT_BACKEND__PRIMARY__BASE_URL="http://10.0.0.5:8000/v1",
        TURNOUT_BACKEND__PRIMARY__API_KEY="primary-secret-0123456789",
        TURNOUT_BACKEND__PRIMARY__AUTH="key",
        TURNOUT_BACKEND__PRIMARY__API_VERSION="2024-10-21",
        TURNOUT_BACKEND__PRIMARY__MODELS="fast=meta-llama/Llama-3.1-8B-Instruct,big=meta-llama/Llama-3.1-70B-Instruct",
        TURNOUT_BACKEND__PRIMARY__PRIORITY="3",
        TURNOUT_BACKEND__PRIMARY__WEIGHT="2.5",
        TURNOUT_BACKEND__PRIMARY__MAX_RETRIES="4",
        TURNOUT_BACKEND__PRIMARY__BACKOFF_BASE="3",
        TURNOUT_BACKEND__PRIMARY__BACKOFF_MAX="11",
        TURNOUT_BACKEND__PRIMARY__TIMEOUT="5",
        TURNOUT_BACKEND__PRIMARY__FIRST_TOKEN_TIMEOUT="2.5",
        TURNOUT_BACKEND__PRIMARY__HEADERS='{"X-Title": "my app"}',
        TURNOUT_BACKEND__PRIMARY__CAPABILITIES="vision=false,audio_transcription=false,tools=true",
        TURNOUT_BACKEND__PRIMARY__ALLOWED_FAILS="6",
        TURNOUT_BACKEND__PRIMARY__COOLDOWN="45",
        TURNOUT_BACKEND__PRIMARY__RPM="500",
        TURNOUT_BACKEND__PRIMARY__TPM="30000",
        TURNOUT_BACKEND__PRIMARY__PROXY="http://proxy.internal:3128",
        TURNOUT_BACKEND__PRIMARY__PRICE="big=0.9/0.9;*=0.1/0.2/0.05",
    )
    b = one()
    assert b.name == "primary" and b.provider.value == "vllm" and b.preset is get_preset("vllm")
    assert b.base_url.value == "http://10.0.0.5:8000/v1"
    assert b.api_key.value is not None and b.api_key.value.get_secret_value() == "primary-secret-0123456789"
    assert b.models.value == {"fast": "meta-llama/Llama-3.1-8B-Instruct", "big": "meta-llama/Llama-3.1-70B-Instruct"}
    assert (b.priority.value, b.weight.value, b.max_retries.value, b.backoff_base.value, b.backoff_max.value) == (
        3,
        2.5,
        4,
        3.0,
        11.0,
    )
    assert (b.timeout.value, b.first_token_timeout.value, b.allowed_fails.value, b.cooldown.value) == (
        5.0,
        2.5,
        6,
        45.0,
    )
    assert (b.rpm.value, b.tpm.value, b.proxy.value) == (500, 30000, "http://proxy.internal:3128")
    assert b.price.value == {"big": (0.9, 0.9), "*": (0.1, 0.2, 0.05)}
    assert (b.auth.value, b.api_version.value) == ("key", "2024-10-21")
    assert b.headers.value is not None and {k: v.get_secret_value() for k, v in b.headers.value.items()} == {
        "X-Title": "my app"
    }
    assert b.capabilities.value == get_preset("vllm").capabilities.replace(
        vision=False, audio_transcription=False, tools=True
    )
    for field, resolved in b.fields().items():
        assert resolved.origin == Origin("environment", f"TURNOUT_BACKEND__PRIMARY__{field.upper()}"), field


def test_api_key_env_reads_the_key_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS="backup",
        TURNOUT_BACKEND__BACKUP__PROVIDER="openrouter",
        TURNOUT_BACKEND__BACKUP__API_KEY_ENV="MY_OR_KEY",
        MY_OR_KEY="or-secret-0123456789abcdef",
    )
    b = one()
    assert b.api_key.value is not None and b.api_key.value.get_secret_value() == "or-secret-0123456789abcdef"
    assert b.api_key.origin == Origin("environment", "MY_OR_KEY")
    assert b.base_url.value == get_preset("openrouter").base_url and b.base_url.origin == Origin("preset", "openrouter")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("llama3.1:8b", {"llama3.1:8b": "llama3.1:8b"}),
        ("fast=llama3.1:8b, big = llama3.1:70b", {"fast": "llama3.1:8b", "big": "llama3.1:70b"}),
        ("fast=a,b", {"fast": "a", "b": "b"}),
        ('{"fast": "org/model=v2"}', {"fast": "org/model=v2"}),
    ],
)
def test_models_forms(monkeypatch: pytest.MonkeyPatch, text: str, expected: dict[str, str]) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_BACKEND__VLLM__MODELS=text)
    assert one().models.value == expected


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("vision=false,tools=true", {"vision": False, "tools": True}),
        ("embeddings", {"embeddings": True}),
        ("VISION=No, json_schema=1", {"vision": False, "json_schema": True}),
        ('{"vision": false, "embeddings": true}', {"vision": False, "embeddings": True}),
    ],
)
def test_capabilities_forms(monkeypatch: pytest.MonkeyPatch, text: str, changes: dict[str, bool]) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="tgi", TURNOUT_BACKEND__TGI__CAPABILITIES=text.replace("VISION", "vision"))
    assert one().capabilities.value == get_preset("tgi").capabilities.replace(**changes)


def test_without_overrides_a_backend_has_its_presets_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="perplexity", PERPLEXITY_API_KEY="pplx-secret-0123456789abcdef")
    b = one()
    assert b.capabilities.value == get_preset("perplexity").capabilities
    assert b.capabilities.origin == Origin("preset", "perplexity")


def test_backend_names_are_case_blind(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS="Primary, GPU-Box",
        TURNOUT_BACKEND__PRIMARY__PROVIDER="vllm",
        TURNOUT_BACKEND__GPU_BOX__PROVIDER="llamacpp",
    )
    got = backends(backend={"PRIMARY": {"timeout": 9}})
    assert [(b.name, b.provider.value) for b in got] == [("primary", "vllm"), ("gpu_box", "llamacpp")]
    assert got[0].timeout.value == 9 and got[0].timeout.origin.kind == "code"


def test_a_preset_alias_is_a_backend_name(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="grok,lm-studio", XAI_API_KEY="xai-secret-0123456789abcdef")
    assert [(b.name, b.provider.value) for b in backends()] == [("grok", "xai"), ("lm_studio", "lmstudio")]


# -- TURNOUT_BACKENDS as JSON --------------------------------------------------


def test_backends_as_a_json_list_of_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS='["groq", {"name": "box", "provider": "vllm", "base_url": "http://box:8000/v1",'
        ' "models": {"fast": "llama"}, "max_retries": 0, "capabilities": "vision=false"}]',
        GROQ_API_KEY=GROQ_KEY,
    )
    groq, box = backends()
    assert groq.name == "groq" and groq.api_key.origin == Origin("environment", "GROQ_API_KEY")
    assert (box.name, box.provider.value, box.base_url.value) == ("box", "vllm", "http://box:8000/v1")
    assert box.models.value == {"fast": "llama"} and box.max_retries.value == 0
    assert box.capabilities.value is not None and not box.capabilities.value.vision
    assert box.max_retries.origin == Origin("environment", "TURNOUT_BACKENDS[1].max_retries")


def test_a_per_field_variable_wins_over_the_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        TURNOUT_BACKENDS='[{"name": "box", "provider": "vllm", "timeout": 5, "cooldown": 1}]',
        TURNOUT_BACKEND__BOX__TIMEOUT="8",
    )
    box = one()
    assert box.timeout.value == 8 and box.timeout.origin == Origin("environment", "TURNOUT_BACKEND__BOX__TIMEOUT")
    assert box.cooldown.value == 1 and box.cooldown.origin == Origin("environment", "TURNOUT_BACKENDS[0].cooldown")


def test_backends_in_code_as_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    got = backends(backends=["vllm", {"name": "Box", "provider": "llamacpp", "weight": 3}], _env_file=None)
    assert [b.name for b in got] == ["vllm", "box"] and got[1].weight.value == 3
    assert got[1].weight.origin == Origin("code", "backends[1].weight")


# -- precedence: keyword > environment > .env -----------------------------------


def test_environment_wins_over_dotenv_and_keywords_win_over_both(
    monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    path = dotenv(isolated, "TURNOUT_BACKENDS=vllm\nTURNOUT_MAX_RETRIES=1\nTURNOUT_COOLDOWN=11\nTURNOUT_TIMEOUT=3\n")
    env(monkeypatch, TURNOUT_MAX_RETRIES="4", TURNOUT_TIMEOUT="6")
    s = TurnoutSettings(timeout=9)
    assert (s.cooldown, s.max_retries, s.timeout) == (11.0, 4, 9.0)
    assert s.origin("cooldown") == Origin("dotenv", "TURNOUT_COOLDOWN", str(path.resolve()))
    assert s.origin("max_retries") == Origin("environment", "TURNOUT_MAX_RETRIES")
    assert s.origin("timeout") == Origin("code", "timeout")
    assert s.env_file.value == ".env" and s.env_file.origin == Origin("default")


def test_layers_merge_field_by_field_within_a_backend(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    dotenv(
        isolated,
        "TURNOUT_BACKENDS=box\nTURNOUT_BACKEND__BOX__PROVIDER=vllm\nTURNOUT_BACKEND__BOX__TIMEOUT=3\n"
        "TURNOUT_BACKEND__BOX__COOLDOWN=4\n",
    )
    env(monkeypatch, TURNOUT_BACKEND__BOX__TIMEOUT="5", TURNOUT_BACKEND__BOX__WEIGHT="2")
    box = one(backend={"box": {"weight": 7}})
    assert (box.provider.value, box.timeout.value, box.cooldown.value, box.weight.value) == ("vllm", 5, 4, 7)
    assert [box.provider.origin.kind, box.timeout.origin.kind, box.weight.origin.kind] == [
        "dotenv",
        "environment",
        "code",
    ]


def test_provider_variables_are_read_from_dotenv_too(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    dotenv(isolated, f"GROQ_API_KEY={GROQ_KEY}\nOPENAI_API_KEY=from-dotenv-0123456789abcdef\n")
    env(monkeypatch, OPENAI_API_KEY=OPENAI_KEY)
    openai_, groq = backends()
    assert openai_.api_key.value is not None and openai_.api_key.value.get_secret_value() == OPENAI_KEY
    assert groq.api_key.value is not None and groq.api_key.value.get_secret_value() == GROQ_KEY
    assert groq.api_key.origin.kind == "dotenv" and openai_.api_key.origin.kind == "environment"


def test_unrelated_dotenv_lines_are_ignored(isolated: Path) -> None:
    dotenv(
        isolated,
        "# my app\nDATABASE_URL=postgres://u:p@db/x\nexport DEBUG=1\nSOME__NESTED__THING=x\n"
        "weird line without equals\nTURNOUT_BACKENDS=vllm\nAPP_MAX_RETRIES=-5\n",
    )
    assert [b.name for b in backends()] == ["vllm"]


def test_turnout_env_file_picks_another_file(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    dotenv(isolated, "TURNOUT_BACKENDS=tgi\n")
    other = dotenv(isolated, "TURNOUT_BACKENDS=vllm\n", name="prod.env")
    env(monkeypatch, TURNOUT_ENV_FILE=str(other))
    s = TurnoutSettings()
    assert s.backends == ["vllm"] and s.env_file.origin == Origin("environment", "TURNOUT_ENV_FILE")
    assert TurnoutSettings(_env_file=isolated / ".env").backends == ["tgi"]


def test_env_file_none_reads_no_file(isolated: Path) -> None:
    dotenv(isolated, "TURNOUT_BACKENDS=tgi\n")
    s = TurnoutSettings(_env_file=None, backends="vllm")
    assert s.backends == ["vllm"] and s.env_file.value is None


# -- discovery -------------------------------------------------------------------


def test_zero_config_one_openai_key_is_one_openai_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, OPENAI_API_KEY=OPENAI_KEY)
    b = one()
    assert (b.name, b.base_url.value, b.models.value) == ("openai", "https://api.openai.com/v1", None)
    assert b.selected_by == Origin("environment", "OPENAI_API_KEY")


def test_openai_base_url_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    b = one()
    assert b.base_url.value == "http://127.0.0.1:9/v1" and b.base_url.origin == Origin("environment", "OPENAI_BASE_URL")


def test_discovery_follows_the_documented_order(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        OLLAMA_HOST="http://gpu-box:11434",
        MISTRAL_API_KEY="mistral-secret-0123456789",
        GROQ_API_KEY=GROQ_KEY,
        OPENAI_API_KEY=OPENAI_KEY,
    )
    got = backends()
    assert [b.name for b in got] == ["openai", "groq", "mistral", "ollama"]
    assert got[-1].base_url.value == "http://gpu-box:11434"
    order = [name for name, _ in discovery_order()]
    assert order[:3] == ["openai", "openrouter", "groq"] and order[-1] == "ollama"


def test_general_purpose_tokens_do_not_make_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    env(
        monkeypatch,
        GITHUB_TOKEN="ghp-secret-0123456789abcdef",
        HF_TOKEN="hf-secret-0123456789abcdef",
        GOOGLE_API_KEY="google-secret-0123456789",
    )
    with pytest.raises(ConfigError, match="no backend configured"):
        backends()


def test_listed_github_backend_uses_github_token(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="github", GITHUB_TOKEN="ghp-secret-0123456789abcdef")
    assert one().api_key.origin == Origin("environment", "GITHUB_TOKEN")


def test_a_second_key_variable_serves_a_listed_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="gemini", GOOGLE_API_KEY="google-secret-0123456789")
    assert one().api_key.origin == Origin("environment", "GOOGLE_API_KEY")


def test_discovery_applies_backend_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, GROQ_API_KEY=GROQ_KEY, TURNOUT_BACKEND__GROQ__MODELS="fast=llama-3.1-8b-instant")
    assert one().models.value == {"fast": "llama-3.1-8b-instant"}


def test_a_section_for_an_unselected_backend_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="vllm", TURNOUT_BACKEND__VLM__TIMEOUT="3")
    config = resolve(TurnoutSettings())
    assert config.notes == (
        "TURNOUT_BACKEND__VLM__TIMEOUT configures backend 'vlm', which TURNOUT_BACKENDS does not list "
        "(vllm): ignored; did you mean VLLM?",
    )
    assert "TURNOUT_BACKEND__VLM__TIMEOUT" in caplog.text


def test_local_presets_need_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="llamacpp,ollama", OPENAI_API_KEY=OPENAI_KEY)
    for b in backends():
        assert b.api_key.value is None and b.api_key.origin.kind == "preset"


# -- provenance for turnout config -------------------------------------------------


def test_describe_shows_every_value_with_its_source(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    path = dotenv(isolated, f"GROQ_API_KEY={GROQ_KEY}\nTURNOUT_COOLDOWN=12\n")
    env(
        monkeypatch,
        TURNOUT_BACKENDS="groq,box",
        TURNOUT_BACKEND__BOX__PROVIDER="vllm",
        TURNOUT_BACKEND__GROQ__MAX_RETRIES="5",
    )
    described = resolve(TurnoutSettings(deadline=20)).describe()
    groq = described["backends"][0]["fields"]
    assert groq["api_key"] == {
        "value": "gsk…cdef",
        "source": {
            "kind": "dotenv",
            "variable": "GROQ_API_KEY",
            "file": str(path.resolve()),
            "text": f"GROQ_API_KEY in {path.resolve()}",
        },
    }
    assert (
        groq["max_retries"]["value"] == 5
        and groq["max_retries"]["source"]["text"] == "environment TURNOUT_BACKEND__GROQ__MAX_RETRIES"
    )
    assert groq["cooldown"]["source"]["kind"] == "dotenv" and groq["timeout"]["source"]["text"] == "default"
    assert groq["base_url"]["source"]["text"] == "preset groq" and groq["provider"]["source"]["text"] == "preset groq"
    assert described["deadline"] == {
        "value": 20.0,
        "source": {"kind": "code", "variable": "deadline", "file": None, "text": "keyword argument deadline"},
    }
    box = described["backends"][1]
    assert box["fields"]["api_key"]["value"] is None and box["protocol"] == "openai"
    assert "vision" in box["fields"]["capabilities"]["value"]


def test_describe_without_strict_shows_a_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, TURNOUT_BACKENDS="groq,vllm")
    config = resolve(TurnoutSettings(), strict=False)
    groq = config.describe()["backends"][0]
    assert groq["fields"]["api_key"] == {
        "value": None,
        "source": {"kind": "missing", "variable": "GROQ_API_KEY", "file": None, "text": "missing (set GROQ_API_KEY)"},
    }
    assert groq["problems"] and "GROQ_API_KEY" in groq["problems"][0]
    assert config.backends[1].problems == ()
    with pytest.raises(ConfigError, match="GROQ_API_KEY"):
        config.check()


def test_settings_built_in_code_take_backend_settings_objects() -> None:
    from turnout.settings import BackendSettings

    settings = TurnoutSettings(
        _env_file=None,
        backends=["Box"],
        backend={"BOX": BackendSettings(provider="vllm", api_key="box-secret-0123456789abcdef", models="fast=x")},
    )
    b = one_of(settings)
    assert (b.name, b.provider.value, b.models.value) == ("box", "vllm", {"fast": "x"})
    assert b.api_key.origin == Origin("code", "backend.box.api_key")
    assert "box-secret" not in repr(settings)


def one_of(settings: TurnoutSettings) -> ResolvedBackend:
    [backend] = resolve(settings).backends
    return backend
