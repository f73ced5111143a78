"""The provider table: one row per provider, never a subclass.

A row says where a provider listens, which environment variable holds its
key, and what it can do. ``protocol`` picks the adapter class: every
OpenAI-compatible provider shares :class:`OpenAICompatAdapter`; ``ollama``
is served natively by :class:`OllamaAdapter`.

Each row names the documentation it was checked against. Capabilities claim
only what the provider documents for its OpenAI-compatible endpoint (for a
local server: what the server software supports; the loaded model may
support less, and a backend's settings can narrow it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from .._errors import ConfigError
from ._base import Capabilities

__all__ = [
    "Preset",
    "PRESETS",
    "get_preset",
    "normalize_name",
    "fill_base_url",
    "missing_url_variables",
    "url_variables",
    "Auth",
    "Constructor",
]

Protocol = Literal["openai", "ollama"]
Constructor = Literal["openai", "azure", "bedrock"]
"""Which of the openai SDK's own constructors builds a backend's client (see :mod:`._constructors`)."""
Auth = Literal["key", "entra", "google", "aws"]
"""Where a backend's credential comes from: a static key, or a token source (see :mod:`.auth`)."""


@dataclass(frozen=True)
class Preset:
    name: str
    base_url: str | None
    key_envs: tuple[str, ...]
    """The provider's key variables, the standard one first; the first that is set wins."""
    local: bool
    capabilities: Capabilities
    doc_url: str
    aliases: tuple[str, ...] = ()
    protocol: Protocol = "openai"
    url_env: str | None = None
    """A variable the provider's own SDK reads for its address (e.g. ``OLLAMA_HOST``)."""
    constructor: Constructor = "openai"
    """The SDK constructor that builds this backend's client: still one adapter class."""
    auths: tuple[Auth, ...] = ("key",)
    """The credential kinds the provider accepts, its default first (``TURNOUT_BACKEND__<NAME>__AUTH``)."""

    @property
    def key_env(self) -> str | None:
        """The standard key variable, the one error messages tell users to set."""
        return self.key_envs[0] if self.key_envs else None


def _cloud(
    name: str, base_url: str, key_envs: str | tuple[str, ...], doc_url: str, caps: Capabilities, **extra: Any
) -> Preset:
    envs = (key_envs,) if isinstance(key_envs, str) else key_envs
    return Preset(name, base_url, envs, False, caps, doc_url, **extra)


def _local(name: str, port: int, doc_url: str, caps: Capabilities, **extra: Any) -> Preset:
    return Preset(name, f"http://localhost:{port}/v1", (), True, caps, doc_url, **extra)


_ALL = Capabilities(vision=True, embeddings=True, json_schema=True)
_CR = dict(completions=True, responses=True)  # legacy completions and the Responses API, both documented

# Checked against each provider's documentation (the doc_url of its row) in
# November 2026. Where sources disagree the choice is explained beside the row.
_ROWS: tuple[Preset, ...] = (
    # -- cloud -------------------------------------------------------------
    _cloud(
        "openai",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        "https://platform.openai.com/docs/api-reference",
        _ALL.replace(audio_transcription=True, moderations=True, image_generation=True, **_CR),
        url_env="OPENAI_BASE_URL",
    ),
    _cloud(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        "https://openrouter.ai/docs/quickstart",
        _ALL.replace(**_CR),
    ),  # transcription takes base64 JSON and images live at /images, not the SDK's shapes: off
    _cloud(
        "groq",
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        "https://console.groq.com/docs/openai",
        Capabilities(vision=True, json_schema=True, audio_transcription=True, responses=True),
    ),
    _cloud(
        "xai",
        "https://api.x.ai/v1",
        "XAI_API_KEY",
        "https://docs.x.ai/docs/guides/chat-completions",
        Capabilities(vision=True, json_schema=True, image_generation=True, **_CR),
        aliases=("grok",),
    ),
    _cloud(
        "cerebras",
        "https://api.cerebras.ai/v1",
        "CEREBRAS_API_KEY",
        "https://inference-docs.cerebras.ai/resources/openai",
        Capabilities(json_schema=True, completions=True),
    ),
    # api.together.ai is what current docs use; api.together.xyz still answers.
    _cloud(
        "together",
        "https://api.together.ai/v1",
        "TOGETHER_API_KEY",
        "https://docs.together.ai/docs/inference/openai-compatibility",
        _ALL.replace(audio_transcription=True, image_generation=True, **_CR),
        aliases=("togetherai",),
    ),
    # Whisper's documented host has moved between audio-prod.* hosts and this one: off until it settles.
    _cloud(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        "https://docs.fireworks.ai/tools-sdks/openai-compatibility",
        _ALL.replace(**_CR),
        aliases=("fireworks_ai",),
    ),
    # The docs list the bare host first; /v1 is equivalent. Its FIM completions need the /beta base URL: off.
    _cloud(
        "deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY", "https://api-docs.deepseek.com/", Capabilities()
    ),
    _cloud(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        "https://docs.mistral.ai/api/",
        _ALL.replace(audio_transcription=True),
        aliases=("mistralai",),
    ),  # its /moderations has its own shape: off
    _cloud(
        "perplexity",
        "https://api.perplexity.ai",
        "PERPLEXITY_API_KEY",
        "https://docs.perplexity.ai/docs/sonar/openai-compatibility",
        Capabilities(vision=True, tools=False, json_mode=False, json_schema=True),
        aliases=("pplx", "sonar"),
    ),
    # DeepInfra's own examples say DEEPINFRA_TOKEN; most tools say DEEPINFRA_API_KEY: both read.
    _cloud(
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        ("DEEPINFRA_API_KEY", "DEEPINFRA_TOKEN"),
        "https://deepinfra.com/docs/openai_api",
        _ALL.replace(audio_transcription=True, completions=True, image_generation=True),
    ),
    # Google's docs say GEMINI_API_KEY; its SDK also reads GOOGLE_API_KEY.
    _cloud(
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        "https://ai.google.dev/gemini-api/docs/openai",
        _ALL.replace(image_generation=True),
        aliases=("google",),
    ),
    _cloud(
        "nvidia",
        "https://integrate.api.nvidia.com/v1",
        ("NVIDIA_API_KEY", "NVIDIA_NIM_API_KEY"),
        "https://docs.api.nvidia.com/nim/reference/llm-apis",
        _ALL,
        aliases=("nim", "nvidia_nim"),
    ),
    # Whisper is SambaStack-only, not SambaCloud: off.
    _cloud(
        "sambanova",
        "https://api.sambanova.ai/v1",
        "SAMBANOVA_API_KEY",
        "https://docs.sambanova.ai/docs/en/features/openai-compatibility",
        _ALL.replace(responses=True),
    ),
    # The router's OpenAI-compatible side is chat only (no /embeddings).
    _cloud(
        "huggingface",
        "https://router.huggingface.co/v1",
        ("HF_TOKEN", "HUGGINGFACE_HUB_TOKEN"),
        "https://huggingface.co/docs/inference-providers/tasks/chat-completion",
        Capabilities(vision=True, json_schema=True, responses=True),
        aliases=("hf", "hf_router"),
    ),
    # models.inference.ai.azure.com was retired on 2025-10-17.
    _cloud(
        "github",
        "https://models.github.ai/inference",
        "GITHUB_TOKEN",
        "https://docs.github.com/en/github-models/quickstart",
        _ALL,
        aliases=("github_models", "gh"),
    ),
    # -- the clouds companies buy models through, with their own credentials (docs/clouds.md) ----------
    # Azure OpenAI (Microsoft Foundry). Its v1 API at {endpoint}/openai/v1/ takes the key, or a Microsoft Entra ID
    # token (AUTH=entra), as a bearer token, the plain SDK client as Microsoft's v1 examples use it. With an
    # api-version (TURNOUT_BACKEND__<NAME>__API_VERSION, else OPENAI_API_VERSION as the SDK reads it) the SDK's
    # AsyncAzureOpenAI speaks the older /openai/deployments/{deployment}/...?api-version= routes with the
    # api-key header; MODELS aliases name the deployments. Moderations are not in the v1 API: off.
    _cloud(
        "azure",
        "{AZURE_OPENAI_ENDPOINT}/openai/v1/",
        "AZURE_OPENAI_API_KEY",
        "https://learn.microsoft.com/en-us/azure/ai-foundry/openai/api-version-lifecycle",
        _ALL.replace(audio_transcription=True, image_generation=True, **_CR),
        constructor="azure",
        auths=("key", "entra"),
        aliases=("azure_openai", "foundry"),
    ),
    # Anthropic's OpenAI SDK compatibility layer: chat (tools, images, streams) only. It ignores response_format
    # (and strict, logprobs, seed, ...) instead of refusing them, so JSON mode and schemas are off: a request
    # that needs them must not be answered as if they held. No embeddings, no Responses API.
    _cloud(
        "anthropic",
        "https://api.anthropic.com/v1/",
        "ANTHROPIC_API_KEY",
        "https://docs.claude.com/en/api/openai-sdk",
        Capabilities(vision=True, json_mode=False, json_schema=False),
        aliases=("claude",),
    ),
    # Amazon Bedrock's OpenAI-compatible endpoint (Mantle: chat completions and Responses), reached through
    # the SDK's own Bedrock provider (openai.providers.bedrock): a Bedrock API key as a bearer token, or with
    # AUTH=aws AWS's own credential chain signing each request (SigV4; the extra turnout[aws]).
    # AWS_BEDROCK_BASE_URL is the SDK provider's own address variable. What else a model can do depends on
    # the model: unknown.
    _cloud(
        "bedrock",
        "https://bedrock-mantle.{AWS_REGION,AWS_DEFAULT_REGION}.api.aws/v1",
        "AWS_BEARER_TOKEN_BEDROCK",
        "https://docs.aws.amazon.com/bedrock/latest/userguide/bedrock-mantle.html",
        Capabilities(vision=None, json_schema=None, responses=True),
        constructor="bedrock",
        auths=("key", "aws"),
        url_env="AWS_BEDROCK_BASE_URL",
        aliases=("aws_bedrock", "bedrock_mantle"),
    ),
    # Vertex AI's OpenAI-compatible endpoint (Gemini, and Model Garden models): no static key, only a
    # short-lived Google OAuth token (AUTH=google: google-auth's application default credentials, e.g.
    # GOOGLE_APPLICATION_CREDENTIALS or the machine's identity; the extra turnout[google]). The global
    # location's host has no region prefix. Chat only.
    Preset(
        "vertex",
        "https://{GOOGLE_CLOUD_LOCATION:global}-aiplatform.googleapis.com/v1/projects/"
        "{GOOGLE_CLOUD_PROJECT}/locations/{GOOGLE_CLOUD_LOCATION:global}/endpoints/openapi",
        (),
        False,
        Capabilities(vision=True, json_schema=True),
        "https://cloud.google.com/vertex-ai/generative-ai/docs/migrate/openai/overview",
        auths=("google",),
        aliases=("vertex_ai", "google_vertex"),
    ),
    # -- local -------------------------------------------------------------
    # llama-server (the C++ server this row is for) has /v1/completions, and /v1/responses in recent
    # builds only; llama-cpp-python's server, which the tests run, has none: unknown, so it is asked
    # natively once and bridged to chat from then on if it answers 404. Its /v1/audio/transcriptions
    # needs a multimodal audio model: off.
    _local(
        "llamacpp",
        8080,
        "https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md",
        _ALL.replace(completions=True, responses=None),
        aliases=("llama_cpp", "llama_server"),
    ),
    _local(
        "vllm",
        8000,
        "https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
        _ALL.replace(audio_transcription=True, **_CR),
    ),
    # The bare launcher listens on 3000; the documented Docker run maps 8080, which most users run.
    _local(
        "tgi",
        8080,
        "https://huggingface.co/docs/text-generation-inference/messages_api",
        Capabilities(vision=True, json_mode=False, completions=True),
        aliases=("text_generation_inference",),
    ),
    _local(
        "aphrodite",
        2242,
        "https://github.com/PygmalionAI/aphrodite-engine",
        _ALL.replace(completions=True),
        aliases=("aphrodite_engine",),
    ),
    _local(
        "localai",
        8080,
        "https://localai.io/basics/try/",
        _ALL.replace(audio_transcription=True, moderations=True, image_generation=True, **_CR),
        aliases=("local_ai",),
    ),
    _local(
        "lmstudio",
        1234,
        "https://lmstudio.ai/docs/api/openai-api",
        _ALL.replace(json_mode=False, **_CR),
        aliases=("lm_studio",),
    ),
    _local("sglang", 30000, "https://docs.sglang.ai/", _ALL.replace(**_CR)),
    _local(
        "llamafile",
        8080,
        "https://github.com/mozilla-ai/llamafile",
        Capabilities(vision=True, embeddings=True, completions=True),
    ),
    # Transcription only when started with --whispermodel: off.
    _local(
        "koboldcpp",
        5001,
        "https://github.com/LostRuins/koboldcpp/wiki",
        Capabilities(vision=True, embeddings=True, completions=True),
        aliases=("kobold",),
    ),
    # Don't confuse with TabbyML (a coding assistant on 8080). Auth is on by default: set a key.
    _local(
        "tabbyapi",
        5000,
        "https://github.com/theroyallab/tabbyAPI/wiki/03.-Usage",
        Capabilities(embeddings=True, json_schema=True, completions=True),
        aliases=("tabby_api",),
    ),
    _local(
        "textgen_webui",
        5000,
        "https://github.com/oobabooga/text-generation-webui/blob/main/docs/12%20-%20OpenAI%20API.md",
        Capabilities(
            embeddings=True, audio_transcription=True, completions=True, moderations=True, image_generation=True
        ),
        aliases=("oobabooga", "text_generation_webui"),
    ),
    # Jan asks for a key (any string the user sets in its settings).
    _local("jan", 1337, "https://jan.ai/docs/local-api", Capabilities(completions=True)),
    # /v1/responses since Ollama 0.13.3 (stateless); /v1/images/generations was removed in 0.32.6; its
    # /v1/audio/transcriptions is undocumented: off.
    _local("ollama_openai", 11434, "https://docs.ollama.com/api/openai-compatibility", _ALL.replace(**_CR)),
    Preset(
        "ollama",
        "http://localhost:11434",
        (),
        True,
        _ALL,
        "https://github.com/ollama/ollama/blob/main/docs/api.md",
        protocol="ollama",
        url_env="OLLAMA_HOST",
    ),
    # -- generic -----------------------------------------------------------
    Preset(
        "openai_compat",
        None,
        (),
        False,
        Capabilities.unknown(),
        "https://platform.openai.com/docs/api-reference/chat",
        aliases=("custom", "openai_compatible"),
    ),
)

PRESETS: Mapping[str, Preset] = {p.name: p for p in _ROWS}
_BY_NAME: dict[str, Preset] = {n: p for p in _ROWS for n in (p.name, *p.aliases)}


_PLACEHOLDER = re.compile(r"\{([A-Z0-9_,]+)(?::([^}]*))?\}")


def url_variables(template: str) -> list[str]:
    """The variables a preset's address is filled from (``{AWS_REGION,AWS_DEFAULT_REGION}``: either), in order."""
    return list(dict.fromkeys(n for names, _ in _placeholders(template) for n in names))


def missing_url_variables(template: str, lookup: Callable[[str], str | None]) -> list[str]:
    """What a preset's address still needs from the user (``A or B`` for alternatives); empty when it can be filled."""
    return [
        " or ".join(names)
        for names, default in _placeholders(template)
        if default is None and not any(_value(lookup, n) for n in names)
    ]


def fill_base_url(backend: str, template: str, lookup: Callable[[str], str | None]) -> str:
    """A preset's address with the user's resource, region or project filled in from their variables.

    ``{VAR}`` is required, ``{VAR:default}`` has a default, ``{A,B}`` reads A, else B. Missing ones
    are a ConfigError naming them. Google's ``global`` location is served by the host without a region prefix.
    """
    missing = missing_url_variables(template, lookup)
    if missing:
        raise ConfigError(
            f"backend {backend!r}: its address needs {', '.join(missing)}; set "
            f"{' and '.join(missing)} (or TURNOUT_BACKEND__{backend.upper()}__BASE_URL to the whole address)"
        )

    def value(match: re.Match[str]) -> str:
        names, default = match.group(1).split(","), match.group(2)
        return next(filter(None, (_value(lookup, n) for n in names)), default or "")

    return _PLACEHOLDER.sub(value, template).replace("://global-", "://", 1)


def _placeholders(template: str) -> list[tuple[list[str], str | None]]:
    return [(m.group(1).split(","), m.group(2)) for m in _PLACEHOLDER.finditer(template)]


def _value(lookup: Callable[[str], str | None], name: str) -> str | None:
    found = lookup(name)
    return found.strip().rstrip("/") if found and found.strip() else None


def normalize_name(name: str) -> str:
    """Preset and backend names are case-blind and treat ``-`` and ``.`` as ``_``, as env var names must."""
    return name.strip().lower().replace("-", "_").replace(".", "_")


def get_preset(name: str) -> Preset:
    """The row for ``name`` or one of its aliases; an unknown name lists every preset."""
    try:
        return _BY_NAME[normalize_name(name)]
    except KeyError:
        raise ConfigError(f"unknown provider {name!r}; known providers: {', '.join(sorted(PRESETS))}") from None
