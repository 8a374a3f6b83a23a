"""The SSRF guard and the providers over real HTTP on 127.0.0.1: the decision function for every
kind of non-public address (without connecting), refusals of URLs and of redirects to a loopback
address that is not allow-listed, extraction of a page's main text, SearXNG's JSON API, and the
time and byte limits."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from engine.orchestrator.web import (
    AddressGuard,
    FetchError,
    FetchLimits,
    PageFetcher,
    Refused,
    SearchError,
    SearxngSearch,
    Target,
    refusal,
)
from tests.fake_web import FakeWeb, hit


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        yield fake


def fetcher(allow: tuple[str, ...] = ("127.0.0.1",), **limits: float) -> PageFetcher:
    return PageFetcher(AddressGuard(allow), FetchLimits(**limits))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.10", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "public"),  # carrier-grade NAT: shared, not public
        ("192.0.2.7", "address"),  # documentation
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:c0a8:0101::1", "private"),  # 6to4 of 192.168.1.1
    ],
)
def test_the_guard_refuses_every_non_public_address(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_the_guard_lets_public_addresses_through(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "gopher://127.0.0.1:70/",
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "http://[::1]:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http:///nohost",
    ],
)
async def test_urls_to_private_places_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(Refused):
        await AddressGuard().check(url)


async def test_an_allow_listed_host_passes_and_others_stay_refused() -> None:
    guard = AddressGuard(["127.0.0.1", "Intranet.Example"])
    target = await guard.check("http://127.0.0.1:8080/a")
    assert (target.host, target.port, target.address) == ("127.0.0.1", 8080, None)
    assert (await guard.check("https://intranet.example/x")).port == 443
    with pytest.raises(Refused, match="loopback"):
        await guard.check("http://localhost:8080/a")


async def test_a_page_is_read_and_its_main_text_kept(web: FakeWeb) -> None:
    page = await fetcher().extract(web.url("/pages/article"))
    assert page.title == "Tide tables of Port Example"
    assert "417 centimetres" in page.text and "312 centimetres" in page.text
    assert "Cookie settings" not in page.text and "Log in" not in page.text  # boilerplate
    assert not page.truncated


async def test_a_private_page_is_refused_without_the_allow_list(web: FakeWeb) -> None:
    with pytest.raises(Refused, match="loopback"):
        await fetcher(allow=()).extract(web.url("/pages/article"))
    assert web.requested("/pages") == []


async def test_a_redirect_to_a_private_address_is_refused(web: FakeWeb) -> None:
    # 127.0.0.1 is allow-listed, `localhost` is not: the hop to it is checked and refused.
    port = web.base_url.rsplit(":", 1)[1]
    secret = f"http://localhost:{port}/pages/article"
    with pytest.raises(Refused, match=r"localhost resolves to .*loopback"):
        await fetcher().extract(web.url(f"/redirect?to={secret}"))
    assert web.requested("/redirect") and web.requested("/pages") == []


async def test_redirects_within_the_allow_list_are_followed_up_to_a_limit(web: FakeWeb) -> None:
    page = await fetcher().extract(web.url("/redirect?to=/pages/article"))
    assert page.url.endswith("/pages/article") and "417" in page.text
    loop = web.url("/redirect?to=" + web.url("/redirect?to=/redirect%3Fto%3D/pages/article"))
    with pytest.raises(FetchError, match="more than 1 redirects"):
        await fetcher(max_redirects=1).extract(loop)


async def test_the_connection_goes_to_the_checked_address(web: FakeWeb) -> None:
    # A guard that resolved `pinned.invalid` (a name no resolver knows) to the fake's address:
    # the page is fetched from that address with the name in the Host header, so no second
    # lookup happens between the check and the connection.
    class Resolved(AddressGuard):
        async def check(self, url: str) -> Target:
            target = await AddressGuard(["pinned.invalid"]).check(url)
            return replace(target, address=ipaddress.ip_address("127.0.0.1"))

    port = web.base_url.rsplit(":", 1)[1]
    page = await PageFetcher(Resolved()).extract(f"http://pinned.invalid:{port}/pages/article")
    assert "417 centimetres" in page.text
    assert web.hosts[-1] == f"pinned.invalid:{port}"


async def test_a_slow_page_is_given_up_in_time(web: FakeWeb) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"longer than 0\.5 s"):
        await fetcher(timeout_s=0.5).extract(web.url("/slow"))
    assert time.monotonic() - started < 3


async def test_a_huge_page_is_cut_at_the_byte_cap(web: FakeWeb) -> None:
    started = time.monotonic()
    page = await fetcher(max_bytes=200_000).extract(web.url("/huge"))
    assert page.truncated
    assert "dull page" in page.text and len(page.text) <= 200_000
    assert time.monotonic() - started < 10


async def test_binary_content_is_refused_with_a_note(web: FakeWeb) -> None:
    web.pages["report.pdf"] = ("application/pdf", b"%PDF-1.7 ...")
    with pytest.raises(FetchError, match="application/pdf"):
        await fetcher().extract(web.url("/pages/report.pdf"))


async def test_searxng_results_are_read(web: FakeWeb) -> None:
    web.results["port example tides"] = [
        hit("Tide tables", web.url("/pages/article"), "  The highest\n tide ... "),
        hit("Duplicate", web.url("/pages/article"), "same URL again"),
        hit("Harbour office", "https://harbour.example/", "Opening hours"),
    ]
    hits = await SearxngSearch(web.base_url + "/").search("port example tides", 5)
    assert [h.title for h in hits] == ["Tide tables", "Harbour office"]
    assert hits[0].snippet == "The highest tide ..."
    assert web.requested("/search?q=port+example+tides&format=json")
    assert len(await SearxngSearch(web.base_url).search("port example tides", 1)) == 1


async def test_a_slow_search_is_given_up_in_time(web: FakeWeb) -> None:
    started = time.monotonic()
    with pytest.raises(SearchError, match=r"longer than 0\.5 s"):
        await SearxngSearch(web.base_url, timeout_s=0.5).search("slow", 3)
    assert time.monotonic() - started < 3


async def test_searxng_without_the_json_format_is_a_clear_error(web: FakeWeb) -> None:
    web.json_format = False  # SearXNG's default settings: HTML only
    with pytest.raises(SearchError, match="enable it"):
        await SearxngSearch(web.base_url).search("x", 3)
    with pytest.raises(SearchError, match="could not be reached"):
        await SearxngSearch("http://127.0.0.1:9").search("x", 3)
