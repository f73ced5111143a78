"""Plain OpenAI SDK example code, as users write it. The drop-in tests run this file
unmodified against the SDK, and with only its import line changed against turnout."""

import json

import openai
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel

MODEL = "test-model"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


async def chat():
    client = AsyncOpenAI()
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
    )
    await client.close()
    return completion.choices[0].message.content, completion.usage.total_tokens


async def streaming():
    client = AsyncOpenAI()
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage.total_tokens
    await client.close()
    return text, usage


async def tool_round_trip():
    client = AsyncOpenAI()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    args = json.loads(call.function.arguments)
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": f"sunny in {args['city']}"})
    second = await client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    await client.close()
    return call.function.name, first.choices[0].finish_reason, second.choices[0].message.content


async def json_mode():
    client = AsyncOpenAI()
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Reply in JSON"}],
        response_format={"type": "json_object"},
    )
    await client.close()
    return json.loads(completion.choices[0].message.content)


class CityWeather(BaseModel):
    city: str
    celsius: int


async def structured_output():
    client = AsyncOpenAI()
    completion = await client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo"}],
        response_format=CityWeather,
    )
    await client.close()
    weather = completion.choices[0].message.parsed
    return type(weather).__name__, weather.model_dump()


async def stream_helper():
    client = AsyncOpenAI()
    text = ""
    async with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Stream with the helper"}],
    ) as stream:
        async for event in stream:
            if event.type == "content.delta":
                text += event.delta
        final = await stream.get_final_completion()
    await client.close()
    return text, final.choices[0].message.content


async def raw_response():
    client = AsyncOpenAI()
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Raw please"}],
    )
    completion = raw.parse()
    await client.close()
    return (
        raw.status_code,
        raw.headers["content-type"],
        raw.request_id is not None,
        completion.choices[0].message.content,
    )


async def streaming_response():
    client = AsyncOpenAI()
    async with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Stream the body"}],
        stream=True,
    ) as response:
        lines = [line async for line in response.iter_lines() if line.startswith("data:")]
    await client.close()
    return response.status_code, lines[-1], len(lines) > 1


async def legacy_completion():
    client = AsyncOpenAI()
    completion = await client.completions.create(model=MODEL, prompt="Say this is a test", max_tokens=16)
    await client.close()
    return completion.choices[0].text


async def embeddings():
    client = AsyncOpenAI()
    result = await client.embeddings.create(model=MODEL, input=["first text", "second text"])
    await client.close()
    return [len(item.embedding) for item in result.data], result.usage.prompt_tokens


async def list_models():
    client = AsyncOpenAI()
    ids = [model.id async for model in client.models.list()]
    page = await client.models.list()
    await client.close()
    return ids, [model.id for model in page.data]


async def error_handling():
    client = AsyncOpenAI()
    try:
        await client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as err:
        return type(err).__name__, err.status_code
    finally:
        await client.close()


def sync_chat_and_stream():
    client = OpenAI()
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi sync"}])
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Stream sync"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    client.close()
    return completion.choices[0].message.content, text


def sync_error_handling():
    client = OpenAI()
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError as err:
        return err.status_code
    finally:
        client.close()
