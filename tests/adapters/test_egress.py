"""The egress guard: refused destinations never get a connection; allowed ones work as usual.

Every refusal here happens before any packet leaves: the addresses outside loopback (10.0.0.1,
169.254.169.254) are only ever classified, never contacted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.http.guarded_client import GuardedHttpClient
from application.ports import OutboundRequest
from domain.egress import EgressPolicy, EgressRefused, refusal
from domain.errors import UpstreamTimeout, UpstreamUnreachable, ValidationFailed
from tests.support import free_port

LOOPBACK_ALLOWED = EgressPolicy.parse("127.0.0.1/32")


class Upstream(BaseHTTPRequestHandler):
    """Echoes requests as JSON; /redirect?to=URL redirects; /slow sleeps; /big streams a lot."""

    def log_message(self, *args: object) -> None:  # keep test output clean
        return

    def _answer(self) -> None:
        path, _, query = self.path.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path == "/redirect":
            self.send_response(int(params.get("code", "302")))
            self.send_header("Location", params["to"].replace("%3A", ":").replace("%2F", "/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/hops":  # /hops?n=K redirects K times, then answers
            remaining = int(params["n"])
            if remaining > 0:
                self.send_response(302)
                self.send_header("Location", f"/hops?n={remaining - 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        if path == "/slow":
            time.sleep(1.5)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": self.rfile.read(length).decode() if length else None,
            }
        ).encode()
        if path == "/big":
            body = b"x" * 200_000
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up on purpose
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[str, str]]:
    """Two upstream servers on 127.0.0.1 (two origins: different ports)."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Upstream) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield tuple(f"http://127.0.0.1:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def client():
    c = GuardedHttpClient(LOOPBACK_ALLOWED, timeout=5)
    yield c
    await c.aclose()


@pytest.fixture
async def strict():
    c = GuardedHttpClient(EgressPolicy(), timeout=5)
    yield c
    await c.aclose()


def get(url: str, **headers: str) -> OutboundRequest:
    return OutboundRequest("GET", url, headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://localhost/",  # a hostname that resolves to loopback
    ],
)
async def test_refused_destinations(strict, url) -> None:
    with pytest.raises(EgressRefused, match="TOLSTOY_EGRESS_ALLOW"):
        await strict.send(get(url))


@pytest.mark.parametrize("url", ["http://[::1", "http://x/\x00"])
async def test_a_malformed_url_is_a_validation_error_not_a_crash(strict, url) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await strict.send(get(url))
    assert [(e.field, e.code) for e in refused.value.errors] == [("url", "invalid_string")]


async def test_a_hostname_is_refused_if_any_of_its_addresses_is(upstreams) -> None:
    async def resolver(host: str, port: int):
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.1.2.3")]

    c = GuardedHttpClient(EgressPolicy(), resolver=resolver)
    try:
        with pytest.raises(EgressRefused, match=r"10\.1\.2\.3"):
            await c.send(get("http://mixed.example/"))
    finally:
        await c.aclose()


async def test_the_checked_address_is_the_one_connected_to(upstreams) -> None:
    """DNS is asked once per hop; the connection goes to that answer, with Host kept."""
    port = int(upstreams[0].rsplit(":", 1)[1])
    asked: list[str] = []

    async def resolver(host: str, port_: int):
        asked.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    c = GuardedHttpClient(LOOPBACK_ALLOWED, resolver=resolver)
    try:
        response = await c.send(get(f"http://api.tolstoy.test:{port}/echo"))
    finally:
        await c.aclose()
    assert asked == ["api.tolstoy.test"]
    assert json.loads(response.content)["headers"]["host"] == f"api.tolstoy.test:{port}"


async def test_allowed_destinations_work(client, upstreams) -> None:
    response = await client.send(
        OutboundRequest(
            "POST", f"{upstreams[0]}/issue?x=1", {"X-Trace": "t1", "Content-Type": "text/plain"}, b"hi"
        )
    )
    echoed = json.loads(response.content)
    assert response.status == 200 and echoed["method"] == "POST" and echoed["body"] == "hi"
    assert echoed["headers"]["x-trace"] == "t1" and echoed["path"] == "/issue?x=1"


async def test_a_redirect_to_a_private_address_is_refused(client, upstreams) -> None:
    with pytest.raises(EgressRefused, match=r"10\.0\.0\.1"):
        await client.send(get(f"{upstreams[0]}/redirect?to=http://10.0.0.1/admin"))


async def test_credentials_do_not_follow_a_cross_origin_redirect(client, upstreams) -> None:
    first, second = upstreams
    secret = {"Authorization": "Bearer top-secret", "X-Api-Key": "k-123456789", "X-Trace": "kept"}
    crossed = json.loads((await client.send(get(f"{first}/redirect?to={second}/landing", **secret))).content)
    assert "authorization" not in crossed["headers"] and "x-api-key" not in crossed["headers"]
    assert crossed["headers"]["x-trace"] == "kept"
    same = json.loads((await client.send(get(f"{first}/redirect?to={first}/landing", **secret))).content)
    assert same["headers"]["authorization"] == "Bearer top-secret"


async def test_post_becomes_get_on_303(client, upstreams) -> None:
    request = OutboundRequest(
        "POST", f"{upstreams[0]}/redirect?code=303&to={upstreams[0]}/done", {}, b"payload"
    )
    echoed = json.loads((await client.send(request)).content)
    assert echoed["method"] == "GET" and echoed["body"] is None


async def test_at_most_five_redirects(client, upstreams) -> None:
    assert (await client.send(get(f"{upstreams[0]}/hops?n=5"))).url.endswith("/hops?n=0")
    with pytest.raises(UpstreamUnreachable, match="Too many redirects"):
        await client.send(get(f"{upstreams[0]}/hops?n=6"))


async def test_timeouts_unreachable_and_oversized_answers(upstreams) -> None:
    c = GuardedHttpClient(LOOPBACK_ALLOWED, timeout=0.3, max_response_bytes=100_000)
    try:
        with pytest.raises(UpstreamTimeout):
            await c.send(get(f"{upstreams[0]}/slow"))
        with pytest.raises(UpstreamUnreachable):
            await c.send(get(f"http://127.0.0.1:{free_port()}/"))
        with pytest.raises(UpstreamUnreachable, match="more than 100000 bytes"):
            await c.send(get(f"{upstreams[0]}/big"))
        with pytest.raises(EgressRefused):
            await c.send(get("ftp://127.0.0.1/file"))
    finally:
        await c.aclose()


def test_the_policy_parses_hosts_and_networks() -> None:
    policy = EgressPolicy.parse(" Localhost., 10.0.0.0/8, [::1] ,, ")
    assert policy.allowed_hosts == {"localhost"}
    assert [str(n) for n in policy.allowed_networks] == ["10.0.0.0/8", "::1/128"]
    policy.check("anything", ipaddress.ip_address("10.2.3.4"))
    policy.check("LOCALHOST", ipaddress.ip_address("127.0.0.1"))
    assert refusal(ipaddress.ip_address("2002:a00:1::1")) is not None  # 6to4 wrapping 10.0.0.1
    assert refusal(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) is not None  # NAT64 of 169.254.169.254
    assert refusal(ipaddress.ip_address("8.8.8.8")) is None
