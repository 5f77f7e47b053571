"""Outbound HTTP for actions, steps, webhooks and token URLs: httpx behind the egress guard.

For every hop (the first request and each redirect, at most ``max_redirects``):
1. resolve the host ourselves and check every address it resolves to against the policy;
2. connect to the checked address itself: the URL carries the IP, while the ``Host`` header and
   the TLS server name (SNI, certificate check) keep the hostname. No second DNS answer can slip a
   private address in between the check and the connection (DNS rebinding);
3. on a redirect to another origin, drop credentials (Authorization, Cookie, API-key headers).
Responses are read up to ``max_response_bytes``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import httpx

from application.ports import OutboundRequest, OutboundResponse
from domain.egress import EgressPolicy, EgressRefused, IPAddress
from domain.errors import FieldError, UpstreamTimeout, UpstreamUnreachable, ValidationFailed

CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-access-token",
    }
)
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


class GuardedHttpClient:
    def __init__(
        self,
        policy: EgressPolicy,
        *,
        timeout: float = 30.0,
        max_redirects: int = 5,
        max_response_bytes: int = 10 * 1024 * 1024,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._policy = policy
        self._timeout = timeout
        self._max_redirects = max_redirects
        self._max_bytes = max_response_bytes
        self._resolve = resolver
        # One pooled client for the process; proxies from the environment are ignored on purpose
        # (they would make the connection, not us, choose where the request goes).
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=timeout,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _pinned_address(self, url: httpx.URL) -> str:
        if url.scheme not in ("http", "https") or not url.host:
            raise EgressRefused(f"Outbound requests must be http(s) URLs with a host, not '{url.scheme}:'")
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                raise UpstreamUnreachable(f"Could not resolve {host}: {exc.strerror or exc}") from None
        if not addresses:
            raise UpstreamUnreachable(f"{host} resolves to no address")
        for address in addresses:  # every answer must pass, not just the one we would pick
            self._policy.check(host, address)
        return str(addresses[0])

    async def send(self, request: OutboundRequest) -> OutboundResponse:
        try:
            url = httpx.URL(request.url)
        except httpx.InvalidURL as exc:  # e.g. a templated url that came out malformed
            raise ValidationFailed(
                [FieldError("url", f"Not a usable URL: {exc}", "invalid_string")]
            ) from None
        method, headers, content = request.method.upper(), dict(request.headers), request.content
        timeout = request.timeout or self._timeout
        for _hop in range(self._max_redirects + 1):
            address = await self._pinned_address(url)
            outgoing = self._client.build_request(
                method,
                url.copy_with(host=address),
                headers={**headers, "Host": url.netloc.decode("ascii")},
                content=content,
                timeout=timeout,
                extensions={"sni_hostname": url.host},
            )
            response = await self._exchange(outgoing, url)
            if not response.is_redirect:
                return response_of(response, url)
            location = response.headers.get("location", "")
            following = url.join(location)
            if _origin(following) != _origin(url):
                headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, content = "GET", None
                headers = {
                    k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")
                }
            url = following
        raise UpstreamUnreachable(f"Too many redirects (more than {self._max_redirects})")

    async def _exchange(self, outgoing: httpx.Request, url: httpx.URL) -> httpx.Response:
        try:
            response = await self._client.send(outgoing, stream=True)
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"{url.host} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"Could not reach {url.host}: {type(exc).__name__}") from None
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():  # decoded: the cap also bounds decompression
                body += chunk
                if len(body) > self._max_bytes:
                    raise UpstreamUnreachable(f"{url.host} answered more than {self._max_bytes} bytes")
            response._content = bytes(body)
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"{url.host} did not finish answering in time") from None
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"{url.host} broke off its answer: {type(exc).__name__}") from None
        finally:
            await response.aclose()
        return response


def response_of(response: httpx.Response, url: httpx.URL) -> OutboundResponse:
    return OutboundResponse(
        status=response.status_code,
        headers={k.lower(): v for k, v in response.headers.items()},
        content=response.content,
        url=str(url),
    )
