"""``UpstreamEngine``: the engine protocol answered by vLLM servers (OpenAI-compatible), for
base models the operator registered with upstream URLs instead of serving them here.

A request goes to one of its base model's upstreams: the healthy ones first, the one with
the fewest requests in flight first among them; an upstream that refuses the connection (or
times out connecting) before the first byte is marked down and the next one is tried, and
when none answers the request fails with :class:`EngineUnavailable` (the edge's 503). A
background check (``GET /health``) marks upstreams up and down between requests. Closing the
iterator (the client left) closes the upstream stream, which makes vLLM abort the request.

Adapters are served under their content key (a hash of the adapter's files, so a re-trained
adapter never answers under a stale name): before an upstream first serves one, the engine
loads it there with vLLM's runtime LoRA API (``POST /v1/load_lora_adapter``, which needs
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and a path vLLM can read); an upstream that lost it
(restarted) answers 404 for the name, and the engine loads it again and retries once. An
adapter that cannot be loaded is :class:`AdapterLoadError`, never an answer from the base model.

Requests are sent as vLLM's chat or text completions, always streamed, with usage from
vLLM's own counts. Tools are rendered in the default tool format
(:mod:`arkor.engine.tool_format`) as the local engine renders them for a template without
tools; grammars (structured outputs, tool calls) go as vLLM's ``structured_outputs``.
Nothing here imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from arkor.contract.artifacts import ADAPTER_FILES
from arkor.engine.base import (
    AdapterLoadError,
    AdapterRef,
    ChatMessage,
    Engine,
    EngineOverloaded,
    EngineUnavailable,
    Finished,
    GenerationEvent,
    GenerationRequest,
    GrammarError,
    InvalidRequest,
    PromptTooLong,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    UnknownBaseModel,
)
from arkor.engine.registry import UpstreamSpec
from arkor.engine.tool_format import default_format_messages

log = logging.getLogger("arkor.engine.upstream")

HEALTH_INTERVAL_S = 5.0
CONNECT_TIMEOUT_S = 3.0
# vLLM's server (uvicorn) closes a connection idle for 5 s; one kept as long could carry a
# request just as it closes (a ReadError, and a POST cannot be sent again), so ours drop sooner.
IDLE_CONNECTION_S = 2.0
CONTEXT_RE = re.compile(r"maximum context length is (?P<context>\d+).*?"
                        r"(?P<prompt>\d+) (?:tokens )?in the (?:messages|prompt)", re.S)


@dataclass
class Upstream:
    url: str
    healthy: bool = True
    in_flight: int = 0
    loaded: set[str] = field(default_factory=set)  # adapter names loaded there
    checked_at: float = 0.0


class UpstreamDown(Exception):
    """This upstream could not be reached before the first byte: try the next one."""


class AdapterMissing(Exception):
    """The upstream answered 404 for the adapter's name: it lost it (a restart)."""


def adapter_name(adapter: AdapterRef) -> str:
    """The name an adapter is served under upstream: ``arkor-`` and the sha256 (first 20 hex
    digits) of its files' bytes (blocking: it reads them)."""
    files = [name for name in ADAPTER_FILES if (adapter.path / name).is_file()]
    if not files:
        raise AdapterLoadError(adapter.key, f"no adapter files in {adapter.path}")
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        with open(adapter.path / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"arkor-{digest.hexdigest()[:20]}"


def upstream_messages(messages: Sequence[ChatMessage], request: GenerationRequest
                      ) -> list[dict[str, Any]]:
    """The conversation as vLLM's chat API takes it: with tools, rendered in the default
    tool format (as the local engine renders them for a template without tools)."""
    if request.tools or any(m.tool_calls or m.role == "tool" for m in messages):
        return list(default_format_messages(messages, request.tools))
    return [{"role": m.role, "content": m.content} for m in messages]


def sampling_fields(sampling: SamplingParams, *, chat: bool) -> dict[str, Any]:
    """Our sampling as vLLM's request fields (OpenAI's, plus vLLM's extra ones)."""
    body: dict[str, Any] = {
        "temperature": sampling.temperature, "top_p": sampling.top_p,
        "top_k": sampling.top_k if sampling.top_k > 0 else -1, "min_p": sampling.min_p,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "repetition_penalty": sampling.repetition_penalty,
        "min_tokens": sampling.min_tokens, "ignore_eos": sampling.ignore_eos,
        "skip_special_tokens": True,
    }
    if sampling.max_tokens is not None:
        body["max_tokens"] = sampling.max_tokens
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in sampling.logit_bias}
    if sampling.logprobs is not None:
        if chat:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.logprobs
        else:
            body["logprobs"] = sampling.logprobs
    if sampling.grammar is not None:
        body["structured_outputs"] = structured_outputs(sampling.grammar)
    return body


def structured_outputs(grammar: str) -> dict[str, Any]:
    """Our llguidance grammar as vLLM's ``structured_outputs`` (its ``guidance`` backend):
    one JSON schema as ``json``, Lark as ``grammar``; a Lark grammar that refers to another
    entry (tool calls or an answer, ``@answer``) gets a JSON schema entry inlined as
    ``%json {...}``."""
    try:
        entries = json.loads(grammar)["grammars"]
    except (ValueError, KeyError, TypeError):
        return {"grammar": grammar}  # already Lark text
    first, rest = entries[0], {entry.get("name"): entry for entry in entries[1:]}
    if first.get("json_schema") is not None and not rest:
        return {"json": first["json_schema"]}
    lark = first.get("lark_grammar")
    if lark is None:
        raise GrammarError("This grammar cannot be sent to an upstream engine")
    for name, entry in rest.items():
        if entry.get("json_schema") is None:
            raise GrammarError("A grammar that combines two Lark grammars cannot be sent "
                               "to an upstream engine; constrain tool calls or the answer, "
                               "not both")
        lark = lark.replace(f"@{name}", f"%json {json.dumps(entry['json_schema'])}")
    return {"grammar": lark}


def request_body(request: GenerationRequest, model: str) -> tuple[str, dict[str, Any]]:
    """The vLLM route and body for ``request``, served by ``model`` (a base model or an
    adapter's name)."""
    chat = request.prompt is None
    body: dict[str, Any] = {"model": model, "stream": True,
                            "stream_options": {"include_usage": True},
                            **sampling_fields(request.sampling, chat=chat)}
    if chat:
        body["messages"] = upstream_messages(request.messages, request)
        return "/v1/chat/completions", body
    body["prompt"] = request.prompt
    if request.prompt_logprobs is not None:
        body["prompt_logprobs"] = request.prompt_logprobs
    return "/v1/completions", body


def _logprobs(choice: Mapping[str, Any], chat: bool) -> tuple[TokenLogprob, ...]:
    raw = choice.get("logprobs")
    if not raw:
        return ()
    if chat:
        return tuple(
            TokenLogprob(token=item["token"], token_id=-1, logprob=float(item["logprob"]),
                         top=tuple(TopLogprob(token=top["token"], token_id=-1,
                                              logprob=float(top["logprob"]))
                                   for top in item.get("top_logprobs") or ()))
            for item in raw.get("content") or ())
    tokens = raw.get("tokens") or []
    values = raw.get("token_logprobs") or []
    tops = raw.get("top_logprobs") or [None] * len(tokens)
    return tuple(
        TokenLogprob(token=token, token_id=-1, logprob=float(value or 0.0),
                     top=tuple(TopLogprob(token=text, token_id=-1, logprob=float(lp))
                               for text, lp in sorted((top or {}).items(),
                                                      key=lambda pair: -pair[1])))
        for token, value, top in zip(tokens, values, tops, strict=False))


def _prompt_logprobs(raw: Any) -> tuple[TokenLogprob | None, ...] | None:
    """vLLM's ``prompt_logprobs``: per prompt token, None or ``{token_id: {logprob, rank,
    decoded_token}}`` (the prompt's own token first, then the most likely)."""
    if not isinstance(raw, list):
        return None
    out: list[TokenLogprob | None] = []
    for position in raw:
        if not position:
            out.append(None)
            continue
        entries = [(int(token_id), info) for token_id, info in position.items()]
        (own_id, own), *rest = entries
        out.append(TokenLogprob(
            token=str(own.get("decoded_token") or ""), token_id=own_id,
            logprob=float(own["logprob"]),
            top=tuple(TopLogprob(token=str(info.get("decoded_token") or ""), token_id=tid,
                                 logprob=float(info["logprob"]))
                      for tid, info in sorted(rest, key=lambda e: e[1].get("rank") or 0))))
    return tuple(out)


def refusal(status: int, text: str, request: GenerationRequest, model: str) -> Exception:
    """An upstream's error answer as our engine error."""
    try:
        message = str(json.loads(text).get("error", {}).get("message") or text)
    except (ValueError, AttributeError):
        message = text
    message = message[:500]
    if status == 404 and model != request.base_model:
        return AdapterMissing(message)
    if status in (429, 503):
        return EngineOverloaded(retry_after=1.0)
    if status == 400:
        lowered = message.lower()
        numbers = CONTEXT_RE.search(message)
        if numbers is not None:  # "maximum context length is 8192 tokens ... 9000 in the ..."
            return PromptTooLong(int(numbers["prompt"]), int(numbers["context"]))
        if "grammar" in lowered or "structured" in lowered:
            return GrammarError(message)
        return InvalidRequest(message, "messages")
    return EngineUnavailable(f"the upstream answered {status}: {message}")


class UpstreamEngine:
    """Serves ``models`` (base model name → :class:`UpstreamSpec`) from vLLM servers."""

    def __init__(self, models: Mapping[str, UpstreamSpec], *,
                 health_interval_s: float = HEALTH_INTERVAL_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self._specs = dict(models)
        self._pools = {name: [Upstream(url.rstrip("/").removesuffix("/v1"))
                              for url in spec.urls] for name, spec in self._specs.items()}
        self._health_interval = health_interval_s
        self._timeout = httpx.Timeout(None, connect=connect_timeout_s)
        self._client: httpx.AsyncClient | None = None
        self._health: asyncio.Task[None] | None = None
        self._loading: dict[tuple[str, str], asyncio.Lock] = {}
        self._names: dict[Path, str] = {}  # adapter directory -> its content-key name

    @property
    def models(self) -> list[str]:
        return list(self._specs)

    def upstreams(self, base_model: str) -> list[Upstream]:
        return list(self._pools.get(base_model, ()))

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=None, keepalive_expiry=IDLE_CONNECTION_S))
            self._health = asyncio.create_task(self._check_forever())

    async def close(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
            self._health = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self, base_model: str) -> dict[str, str]:
        key = self._specs[base_model].api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _check_forever(self) -> None:
        while True:
            await asyncio.gather(*(self.check(name, upstream)
                                   for name, pool in self._pools.items() for upstream in pool))
            await asyncio.sleep(self._health_interval)

    async def check(self, base_model: str, upstream: Upstream) -> bool:
        """``GET /health``: marks ``upstream`` up or down. A server that came back has lost
        its runtime-loaded adapters, so they are loaded again on their next request."""
        assert self._client is not None
        try:
            answer = await self._client.get(f"{upstream.url}/health", timeout=CONNECT_TIMEOUT_S,
                                            headers=self._headers(base_model))
            healthy = answer.status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy and not upstream.healthy:
            log.info("upstream %s for %s is back", upstream.url, base_model)
            upstream.loaded.clear()
        elif not healthy and upstream.healthy:
            log.warning("upstream %s for %s is down", upstream.url, base_model)
        upstream.healthy, upstream.checked_at = healthy, time.monotonic()
        return healthy

    def _candidates(self, base_model: str) -> list[Upstream]:
        """Healthy upstreams, fewest in flight first; then the ones marked down (a restarted
        server is tried before the next health check notices)."""
        pool = self._pools[base_model]
        return sorted(pool, key=lambda u: (not u.healthy, u.in_flight))

    async def _load_adapter(self, base_model: str, upstream: Upstream, adapter: AdapterRef,
                            name: str) -> None:
        lock = self._loading.setdefault((upstream.url, name), asyncio.Lock())
        async with lock:
            if name in upstream.loaded:
                return
            assert self._client is not None
            try:
                answer = await self._client.post(
                    f"{upstream.url}/v1/load_lora_adapter", headers=self._headers(base_model),
                    json={"lora_name": name, "lora_path": str(adapter.path)})
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise UpstreamDown(str(exc)) from exc
            except httpx.HTTPError as exc:
                raise EngineUnavailable(f"loading adapter on {upstream.url}: {exc}") from exc
            if answer.status_code != 200 and "already been loaded" not in answer.text:
                raise AdapterLoadError(adapter.key, f"the upstream {upstream.url} answered "
                                                    f"{answer.status_code}: {answer.text[:300]}")
            upstream.loaded.add(name)

    async def _adapter_name(self, adapter: AdapterRef) -> str:
        """:func:`adapter_name`, hashed once per directory, off the event loop: a job's
        adapter directories are written once (a re-trained or imported adapter is a new job,
        so a new directory and a new name)."""
        name = self._names.get(adapter.path)
        if name is None:
            name = self._names[adapter.path] = await asyncio.to_thread(adapter_name, adapter)
        return name

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        if request.base_model not in self._pools:
            raise UnknownBaseModel(request.base_model)
        if self._client is None:
            raise EngineUnavailable("the upstream engine is closed")
        name = (await self._adapter_name(request.adapter) if request.adapter
                else request.base_model)
        route, body = request_body(request, name)
        tried: list[str] = []
        for upstream in self._candidates(request.base_model):
            for attempt in range(2):  # a second time after reloading a lost adapter
                try:
                    if request.adapter is not None:
                        await self._load_adapter(request.base_model, upstream, request.adapter,
                                                 name)
                    async for event in self._stream(upstream, request, route, body):
                        yield event
                    return
                except UpstreamDown as exc:
                    upstream.healthy = False
                    tried.append(f"{upstream.url} ({exc})")
                    break
                except AdapterMissing:
                    upstream.loaded.discard(name)
                    if attempt:
                        raise AdapterLoadError(request.adapter.key if request.adapter else name,
                                               f"{upstream.url} does not serve it after "
                                               "loading it") from None
        raise EngineUnavailable(f"no upstream for {request.base_model} answered: "
                                f"{'; '.join(tried) or 'none is registered'}")

    async def _stream(self, upstream: Upstream, request: GenerationRequest, route: str,
                      body: dict[str, Any]) -> AsyncIterator[GenerationEvent]:
        assert self._client is not None
        chat = route.endswith("chat/completions")
        upstream.in_flight += 1
        try:
            try:
                call = self._client.stream("POST", f"{upstream.url}{route}", json=body,
                                           headers=self._headers(request.base_model))
                response = await call.__aenter__()
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise UpstreamDown(str(exc)) from exc
            except httpx.HTTPError as exc:
                raise EngineUnavailable(f"{upstream.url}: {exc}") from exc
            try:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    raise refusal(response.status_code, text, request, body["model"])
                async for event in self._events(response, chat):
                    yield event
            except httpx.HTTPError as exc:
                raise EngineUnavailable(f"{upstream.url} broke off: {exc}") from exc
            finally:
                await call.__aexit__(None, None, None)
        finally:
            upstream.in_flight -= 1

    async def _events(self, response: httpx.Response, chat: bool
                      ) -> AsyncIterator[GenerationEvent]:
        finish: str | None = None
        prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise EngineUnavailable(f"the upstream failed: {chunk['error']}")
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                logprobs = _logprobs(choice, chat)
                if prompt_logprobs is None and choice.get("prompt_logprobs") is not None:
                    prompt_logprobs = _prompt_logprobs(choice["prompt_logprobs"])
                if text or logprobs:
                    yield TextDelta(text or "", logprobs)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            usage = chunk.get("usage")
            if usage:
                yield Finished(finish_reason="length" if finish == "length" else "stop",
                               prompt_tokens=int(usage.get("prompt_tokens") or 0),
                               completion_tokens=int(usage.get("completion_tokens") or 0),
                               prompt_logprobs=prompt_logprobs)
                return
        raise EngineUnavailable("the upstream ended the stream without its usage")


class SplitEngine:
    """The upstream engine for its base models, the local engine (made and started on first
    use) for the rest: what a server with ``ARKOR_UPSTREAMS`` serves with."""

    def __init__(self, upstream: UpstreamEngine, local: Callable[[], Engine]) -> None:
        self.upstream = upstream
        self._make_local = local
        self._local: Engine | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.upstream.start()

    async def close(self) -> None:
        await self.upstream.close()
        if self._local is not None:
            await self._local.close()

    def load_report(self) -> Mapping[str, Any]:
        """The local engine's (the upstreams report their own load to their operators)."""
        report = getattr(self._local, "load_report", None)
        return report() if report is not None else {}

    async def _local_engine(self) -> Engine:
        async with self._lock:
            if self._local is None:
                engine = await asyncio.to_thread(self._make_local)
                await engine.start()
                self._local = engine
        return self._local

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        if request.base_model in self.upstream.models:
            events = self.upstream.generate(request)
        else:
            events = (await self._local_engine()).generate(request)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
