"""Drives the relay with the official OpenAI and Anthropic Python SDKs and prints what they got,
as JSON, for end2end/tests/sdk.spec.ts to check. Environment: RELAY_URL, RELAY_KEY."""
import json
import os

import anthropic
import openai

relay, key = os.environ["RELAY_URL"], os.environ["RELAY_KEY"]
out = {}

oa = openai.OpenAI(base_url=f"{relay}/openai/v1", api_key=key, max_retries=0)
chat = oa.chat.completions.create(
    model="claude-sonnet-4-5-20250929",
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
)
out["chat"] = {"text": chat.choices[0].message.content, "completion_tokens": chat.usage.completion_tokens}

text, usage = "", None
for chunk in oa.chat.completions.create(
    model="claude-sonnet-4-5-20250929",
    messages=[{"role": "user", "content": "Hi again"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["chat_stream"] = {"text": text, "completion_tokens": usage}

gpt = oa.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "Hi"}])
out["chat_gpt"] = {"text": gpt.choices[0].message.content}

resp = oa.responses.create(model="gpt-5", input="Hi")
out["responses"] = {"text": resp.output_text, "output_tokens": resp.usage.output_tokens}

text, completed = "", False
with oa.responses.stream(model="gpt-5", input="Hi") as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            completed = True
out["responses_stream"] = {"text": text, "completed": completed}

out["models"] = [m.id for m in oa.models.list().data]

an = anthropic.Anthropic(base_url=relay, api_key=key, max_retries=0)
msg = an.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=64, messages=[{"role": "user", "content": "Hi"}])
out["anthropic"] = {"text": msg.content[0].text, "output_tokens": msg.usage.output_tokens}
with an.messages.stream(model="claude-sonnet-4-5-20250929", max_tokens=64, messages=[{"role": "user", "content": "Stream"}]) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
out["anthropic_stream"] = {"text": streamed, "output_tokens": final.usage.output_tokens}

try:
    oa.chat.completions.create(model="gpt-5", messages=[])
except openai.BadRequestError as e:
    out["bad_request"] = {"status": e.status_code, "message": e.message}

print(json.dumps(out))
