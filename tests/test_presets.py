"""The preset table: every row resolves to a working adapter, and keys go only where they belong."""

from __future__ import annotations

import pytest

from tests.loopback import OpenAIServer
from turnout import ConfigError
from turnout.adapters import PRESETS, OpenAICompatAdapter, get_preset

OPENAI_ROWS = [p for p in PRESETS.values() if p.protocol == "openai"]
REQUIRED = {
    "openai", "openrouter", "groq", "xai", "cerebras", "together", "fireworks", "deepseek", "mistral",
    "perplexity", "deepinfra", "gemini", "nvidia", "sambanova", "huggingface", "github",
    "llamacpp", "vllm", "tgi", "aphrodite", "localai", "lmstudio", "sglang", "llamafile", "koboldcpp",
    "tabbyapi", "textgen_webui", "jan", "ollama_openai", "ollama", "openai_compat",
}


def test_the_table_has_every_required_provider() -> None:
    assert REQUIRED <= set(PRESETS)


def test_rows_are_consistent() -> None:
    for p in PRESETS.values():
        assert p.doc_url.startswith("https://"), p.name
        assert p.local == (not p.key_envs) or p.name == "openai_compat", p.name
        if p.base_url:
            assert p.base_url.startswith("https://" if not p.local else "http://localhost:"), p.name


def test_only_whisper_style_providers_claim_transcription() -> None:
    claimed = {p.name for p in PRESETS.values() if p.capabilities.audio_transcription}
    assert claimed == {"openai", "groq", "together", "deepinfra", "vllm", "localai"}


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


@pytest.mark.parametrize("preset", OPENAI_ROWS, ids=lambda p: p.name)
async def test_every_row_resolves_to_a_working_adapter(preset, openai_server: OpenAIServer, monkeypatch) -> None:
    for i, var in enumerate(preset.key_envs):
        monkeypatch.setenv(var, f"key-for-{preset.name}-{i}")
    adapter = OpenAICompatAdapter(preset=preset.name, base_url=openai_server.base_url)
    assert adapter.name == preset.name and adapter.capabilities == preset.capabilities
    reply = await adapter.chat(model="test-model", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    expected = f"key-for-{preset.name}-0" if preset.key_envs else "sk-no-key-required"
    assert openai_server.requests[-1].header("Authorization") == f"Bearer {expected}"
    await adapter.aclose()


async def test_a_fallback_key_variable_is_read(openai_server: OpenAIServer, monkeypatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    adapter = OpenAICompatAdapter(preset="gemini", base_url=openai_server.base_url)
    await adapter.chat(model="test-model", messages=[{"role": "user", "content": "hi"}])
    assert openai_server.requests[-1].header("Authorization") == "Bearer g-key"
    await adapter.aclose()


def test_readme_matrix_lists_every_preset_with_its_address() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for p in PRESETS.values():
        assert f"| `{p.name}`" in readme, p.name
        if p.base_url:
            assert f"`{p.base_url}`" in readme, p.name
        for var in p.key_envs:
            assert f"`{var}`" in readme, var
