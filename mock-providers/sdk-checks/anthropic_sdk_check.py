"""The official `anthropic` Python SDK, unchanged, against the mock (only base_url set).

Run (see mock-providers/README.md): start the mock with sdk-checks/anthropic.toml, then
`python anthropic_sdk_check.py http://127.0.0.1:PORT` in a venv with `pip install anthropic`.
"""
import sys, time, json, urllib.request, anthropic

base = sys.argv[1]
def stats(model):
    with urllib.request.urlopen(base + "/_mock/stats") as r:
        return json.load(r)["keys"]["anthropic/" + model]
c = anthropic.Anthropic(api_key="sk-ant-test", base_url=base)
print("sdk", anthropic.__version__)

m = c.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=64,
                      system="Be brief.", messages=[{"role": "user", "content": "Hello"}])
print("create:", type(m).__name__, m.id, m.stop_reason, m.usage.input_tokens, m.usage.output_tokens, repr(m.content[0].text[:40]))

raw = c.messages.with_raw_response.create(model="claude-sonnet-4-5-20250929", max_tokens=8,
                      messages=[{"role": "user", "content": "Hi"}])
print("raw headers:", {k: v for k, v in raw.headers.items() if k.startswith("anthropic-ratelimit-requests") or k == "request-id"})

with c.messages.stream(model="claude-sonnet-4-5-20250929", max_tokens=64,
                       messages=[{"role": "user", "content": "Stream"}]) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
print("stream:", repr(text[:40]), final.stop_reason, final.usage.input_tokens, final.usage.output_tokens, text == final.content[0].text)

events = []
for ev in c.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=3, stream=True,
                            messages=[{"role": "user", "content": "raw"}]):
    events.append(ev.type)
print("raw stream events:", events)

n = c.messages.count_tokens(model="claude-sonnet-4-5-20250929", system="Be brief.",
                            messages=[{"role": "user", "content": "Hello"}])
print("count_tokens:", n.input_tokens, "== create input:", n.input_tokens == m.usage.input_tokens)

ids = [x.id for x in c.models.list(limit=2)]
print("models.list (auto-paging, limit=2):", ids)
print("models.retrieve:", c.models.retrieve("claude-haiku-4-5-20251001").display_name)

try:
    c.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
except anthropic.NotFoundError as e:
    print("404:", type(e).__name__, e.status_code, e.body["error"], e.request_id)

bearer = anthropic.Anthropic(auth_token="sk-ant-oat-x", base_url=base)
print("bearer:", bearer.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=5,
      messages=[{"role": "user", "content": "x"}]).stop_reason)

# 429: claude-paced at 60 RPM enforced as 1/s; the second call at once gets 429 retry-after 1.
c.messages.create(model="claude-paced", max_tokens=5, messages=[{"role": "user", "content": "a"}])
t0 = time.monotonic()
r = c.messages.create(model="claude-paced", max_tokens=5, messages=[{"role": "user", "content": "b"}])
dt = time.monotonic() - t0
st = stats("claude-paced")
print("429 retry: admitted", st["admitted"], "throttled", st["throttled_requests"], "elapsed %.2fs" % dt, "->", r.stop_reason)
try:
    c.with_options(max_retries=0).messages.create(model="claude-paced", max_tokens=5,
        messages=[{"role": "user", "content": "c"}])
except anthropic.RateLimitError as e:
    print("429 no retry:", type(e).__name__, e.status_code, e.response.headers.get("retry-after"), e.body["error"]["message"][:80])

# 529: every attempt overloaded: the SDK tries 3 times, then raises OverloadedError.
t0 = time.monotonic()
try:
    c.messages.create(model="claude-overloaded", max_tokens=5, messages=[{"role": "user", "content": "x"}])
except anthropic.APIStatusError as e:
    print("529:", type(e).__name__, e.status_code, e.body, "attempts (faults_529)", stats("claude-overloaded")["faults_529"], "elapsed %.2fs" % (time.monotonic() - t0))

# overloaded_error event inside a 200 stream.
try:
    with c.messages.stream(model="claude-stream-overload", max_tokens=64,
                           messages=[{"role": "user", "content": "x"}]) as s:
        got = "".join(s.text_stream)
except anthropic.APIStatusError as e:
    print("stream overload:", type(e).__name__, e.status_code, getattr(e, "type", None), str(e)[:160], "attempts (admitted)", stats("claude-stream-overload")["admitted"])
