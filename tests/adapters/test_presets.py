"""The preset table: every row resolves to a working adapter, and keys go only where they belong."""

from __future__ import annotations

import pytest

import turnout
from tests.support.loopback import OpenAIServer
from turnout import ConfigError
from turnout.adapters import PRESETS, Capabilities, OpenAICompatAdapter, get_preset
from turnout.adapters.presets import fill_base_url

OPENAI_ROWS = [p for p in PRESETS.values() if p.protocol == "openai"]
KEYED_ROWS = [p for p in OPENAI_ROWS if "key" in p.auths]  # Vertex takes tokens only: tests/adapters/test_clouds.py
REQUIRED = {
    "openai",
    "openrouter",
    "groq",
    "xai",
    "cerebras",
    "together",
    "fireworks",
    "deepseek",
    "mistral",
    "perplexity",
    "deepinfra",
    "gemini",
    "nvidia",
    "sambanova",
    "huggingface",
    "github",
    "llamacpp",
    "vllm",
    "tgi",
    "aphrodite",
    "localai",
    "lmstudio",
    "sglang",
    "llamafile",
    "koboldcpp",
    "tabbyapi",
    "textgen_webui",
    "jan",
    "ollama_openai",
    "ollama",
    "openai_compat",
    "azure",
    "anthropic",
    "bedrock",
    "vertex",
}


def test_the_table_has_every_required_provider() -> None:
    assert REQUIRED <= set(PRESETS)


def test_rows_are_consistent() -> None:
    for p in PRESETS.values():
        assert p.doc_url.startswith("https://"), p.name
        assert p.local == (not p.key_envs) or p.name == "openai_compat" or "key" not in p.auths, p.name
        if p.base_url:
            url = fill_base_url(p.name, p.base_url, lambda var: "https://res.example" if "ENDPOINT" in var else "x")
            assert url.startswith("https://" if not p.local else "http://localhost:"), p.name


def claiming(flag: str) -> set[str]:
    return {p.name for p in PRESETS.values() if getattr(p.capabilities, flag) is True}


def test_only_whisper_style_providers_claim_transcription() -> None:
    """A claim sends audio there; README: only a Whisper-style /audio/transcriptions on the row's base URL."""
    assert claiming("audio_transcription") == {
        "openai",
        "groq",
        "together",
        "mistral",
        "deepinfra",
        "vllm",
        "localai",
        "textgen_webui",
        "azure",
    }


def test_only_documented_providers_claim_moderations_and_image_generation() -> None:
    assert claiming("moderations") == {"openai", "localai", "textgen_webui"}
    assert claiming("image_generation") == {
        "openai",
        "xai",
        "together",
        "deepinfra",
        "gemini",
        "localai",
        "textgen_webui",
        "azure",
    }


def test_provider_rows_say_yes_or_no_and_the_generic_row_is_unknown() -> None:
    """A named provider's row is checked against its docs: no flag is left unknown, but where its builds
    differ (llama.cpp's /v1/responses is in recent llama-server builds only) or the model decides (Bedrock
    serves many vendors' models behind one endpoint). A server nobody named does
    chat, streams, tools and JSON mode (every OpenAI-compatible server does); the rest is unknown."""
    for p in PRESETS.values():
        if p.name != "openai_compat":
            unknown = {f for f in Capabilities.names() if getattr(p.capabilities, f) is None}
            expected = {"llamacpp": {"responses"}, "bedrock": {"vision", "json_schema"}}.get(p.name, set())
            assert unknown == expected, p.name
    every_server = {"chat", "streaming", "tools", "json_mode"}
    generic = PRESETS["openai_compat"].capabilities
    assert generic == Capabilities.unknown()
    assert {f: getattr(generic, f) for f in Capabilities.names()} == {
        f: True if f in every_server else None for f in Capabilities.names()
    }


def test_aliases_and_spelling() -> None:
    assert get_preset("grok").name == "xai"
    assert get_preset("TextGen-WebUI").name == "textgen_webui"
    assert get_preset("llama.cpp").name == "llamacpp"


def test_an_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError) as caught:
        get_preset("nosuch")
    message = str(caught.value)
    assert "'nosuch'" in message and all(name in message for name in PRESETS)


def test_a_cloud_preset_without_its_key_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="set GROQ_API_KEY"):
        OpenAICompatAdapter(preset="groq")


def test_the_generic_row_needs_a_base_url() -> None:
    with pytest.raises(ConfigError, match="needs a base_url"):
        OpenAICompatAdapter("mine")


def test_a_malformed_base_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="must start with http"):
        OpenAICompatAdapter("mine", base_url="localhost:8080")


def test_preset_base_urls_are_the_defaults() -> None:
    assert OpenAICompatAdapter(preset="vllm").base_url == "http://localhost:8000/v1"
    assert OpenAICompatAdapter(preset="lmstudio").base_url == "http://localhost:1234/v1"


def test_openai_base_url_variable_is_honoured(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert OpenAICompatAdapter(preset="openai").base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("preset", KEYED_ROWS, ids=lambda p: p.name)
async def test_every_row_resolves_to_a_working_adapter(
    preset, openai_server: OpenAIServer, monkeypatch, client_over
) -> None:
    for i, var in enumerate(preset.key_envs):
        monkeypatch.setenv(var, f"key-for-{preset.name}-{i}")
    adapter = OpenAICompatAdapter(preset=preset.name, base_url=openai_server.base_url)
    assert adapter.name == preset.name and adapter.capabilities == preset.capabilities
    reply = await client_over(adapter).chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "echo: hi" and turnout.served_by(reply) == preset.name
    expected = f"key-for-{preset.name}-0" if preset.key_envs else "sk-no-key-required"
    assert openai_server.requests[-1].header("Authorization") == f"Bearer {expected}"


async def test_a_fallback_key_variable_is_read(openai_server: OpenAIServer, monkeypatch, client_over) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    client = client_over(OpenAICompatAdapter(preset="gemini", base_url=openai_server.base_url))
    await client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
    assert openai_server.requests[-1].header("Authorization") == "Bearer g-key"


def test_readme_matrix_lists_every_preset_with_its_address() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "docs" / "providers.md").read_text()
    for p in PRESETS.values():
        assert f"| `{p.name}`" in readme, p.name
        if p.base_url:
            assert f"`{p.base_url}`" in readme, p.name
        for var in p.key_envs:
            assert f"`{var}`" in readme, var


def test_readme_matrix_says_what_each_preset_can_do_beyond_chat() -> None:
    """The matrix's "can do" column names exactly the endpoints a preset claims, so docs/providers.md tells the truth."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "docs" / "providers.md").read_text()
    words = {
        "audio_transcription": "audio",
        "completions": "completions",
        "moderations": "moderations",
        "image_generation": "images",
        "responses": "Responses",
    }
    for p in PRESETS.values():
        if p.name in ("ollama", "openai_compat"):
            continue
        row = next(line for line in readme.splitlines() if re.match(rf"^\| \[[^\]]*\]\([^)]*\) \| `{p.name}`", line))
        said = {w.strip() for w in row.split(" | ")[4].split(" (")[0].split(",")}
        claimed = {word for flag, word in words.items() if getattr(p.capabilities, flag)}
        assert said & set(words.values()) == claimed, p.name
