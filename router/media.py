"""The one media fetcher for audio, images and video: URL or base64, size-capped, URL fetches
guarded against server-side request forgery (docs/notes/router.md#media-fetching)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import re
import socket
import ssl
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx

from rawinfer.contract.errors import InvalidRequest, PayloadTooLarge
from rawinfer.core.settings import MediaSettings
from router.addresses import IPAddress, IPNetwork, address_refusal

_REDIRECT_CODES = {301, 302, 303, 307, 308}
_WHITESPACE = re.compile(r"\s+")
DNS_THREADS = 4
_ADVICE = "Give a public http(s) URL, or send the media as base64."


def _human_size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def _decoder(encoding: str | None):
    """A bounded inflater for a gzip/deflate body (we ask for identity; a server may not care),
    None for identity; any other encoding is refused."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
    raise InvalidRequest(
        f"The media URL answered with Content-Encoding {enc!r}; serve the file uncompressed."
    )


def _is_tls_error(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class MediaFetcher:
    """Fetches media by URL or decodes it from base64, under `MediaSettings`' caps."""

    def __init__(self, settings: MediaSettings, *, verify: ssl.SSLContext | bool = True):
        """`verify`: TLS verification for https URLs (True: the system's CAs; an SSLContext to
        trust other roots, e.g. a test CA). Hostnames are always checked against the URL's host."""
        self.settings = settings
        self._verify = verify
        # DNS has its own few threads: a client's slow zone cannot starve other lookups
        self._dns = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="rawinfer-dns")
        try:
            self._allow: tuple[IPNetwork, ...] = tuple(
                ipaddress.ip_network(c, strict=False) for c in settings.allow_cidrs
            )
        except ValueError as exc:
            raise ValueError(f"media.allow_cidrs holds an invalid network: {exc}") from None

    # ------------------------------------------------------------------ base64
    def decode_base64(self, data: str) -> bytes:
        """Raw base64 (standard or URL-safe alphabet, whitespace ignored) or a
        `data:<type>;base64,<data>` URL. 413 over `max_bytes` (judged from the length, before
        decoding); 400 when it is not base64."""
        if not isinstance(data, str):
            raise InvalidRequest("Base64 media must be a string.")
        max_bytes = self.settings.max_bytes
        # Cheap bound on the raw string first, so a huge string is refused before any copy;
        # generous enough for line breaks every 76 characters and a data: prefix.
        if len(data) > (max_bytes // 3 + 1) * 4 * 1.05 + 4096:
            raise self._too_large_b64()
        payload = data
        if payload[:5].lower() == "data:":
            head, sep, payload = payload.partition(",")
            if not sep:
                raise InvalidRequest(
                    "The data: URL has no ',' before its data; use data:<type>;base64,<data>."
                )
            if not head.lower().endswith(";base64"):
                raise InvalidRequest(
                    "Only base64 data: URLs are accepted; use data:<type>;base64,<data>."
                )
        if _WHITESPACE.search(payload):
            payload = _WHITESPACE.sub("", payload)
        if not payload:
            raise InvalidRequest(
                "The base64 media is empty; send the media's bytes base64-encoded."
            )
        padding = len(payload) - len(payload.rstrip("="))
        if len(payload) * 3 // 4 - min(padding, 2) > max_bytes:
            raise self._too_large_b64()
        if len(payload) % 4:
            if len(payload) % 4 == 1:
                raise InvalidRequest(
                    "The media is not valid base64 (its length is impossible); check the encoding."
                )
            payload += "=" * (-len(payload) % 4)
        altchars = b"-_" if ("-" in payload or "_" in payload) else None
        try:
            raw = base64.b64decode(payload, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                "The media is not valid base64; send standard base64 (A-Z a-z 0-9 + / =) "
                "or a data:<type>;base64,<data> URL."
            ) from None
        if not raw:
            raise InvalidRequest(
                "The base64 media decodes to nothing; send the media's bytes base64-encoded."
            )
        return raw

    def _too_large_b64(self) -> PayloadTooLarge:
        cap = self.settings.max_bytes
        return PayloadTooLarge(
            f"The base64 media is larger than the {_human_size(cap)} cap; send a smaller file.",
            {"max_bytes": cap},
        )

    # ------------------------------------------------------------------ either
    async def load(self, url: str | None, b64: str | None) -> bytes:
        """The media's bytes from exactly one of `url` (fetched) and `b64` (decoded)."""
        if url and b64:
            raise InvalidRequest("Give the media either as a URL or as base64, not both.")
        if url:
            return await self.fetch(url)
        if b64:
            return self.decode_base64(b64)
        raise InvalidRequest("No media given; send a URL or base64 data.")

    # ------------------------------------------------------------------ URL
    async def fetch(self, url: str) -> bytes:
        """The body at `url`, fetched under the SSRF rules and caps described in the module."""
        if not isinstance(url, str) or not url.strip():
            raise InvalidRequest("The media URL is empty; give an http(s) URL.")
        url = url.strip()
        if url[:5].lower() == "data:":
            return self.decode_base64(url)
        current = self._parse(url, redirected=False)
        timeout = self.settings.fetch_timeout_s
        try:
            async with asyncio.timeout(timeout):
                async with httpx.AsyncClient(
                    verify=self._verify,
                    follow_redirects=False,
                    trust_env=False,  # no proxy from the environment: it would undo the pinning
                    timeout=httpx.Timeout(timeout, connect=self.settings.connect_timeout_s),
                ) as client:
                    for hop in range(self.settings.max_redirects + 1):
                        result = await self._get(client, current, redirected=hop > 0)
                        if isinstance(result, bytes):
                            return result
                        current = result
                    raise InvalidRequest(
                        f"The media URL redirected more than {self.settings.max_redirects} times; "
                        "give the final URL."
                    )
        except (TimeoutError, httpx.TimeoutException):
            raise InvalidRequest(
                f"Fetching the media URL timed out (limit {timeout:g} s); give a faster URL "
                "or send the media as base64."
            ) from None

    def _parse(self, url: str, *, redirected: bool) -> httpx.URL:
        what = "The media URL redirected to a URL that" if redirected else "The media URL"
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise InvalidRequest(f"{what} is not a valid URL; give an http(s) URL.") from None
        if parsed.scheme not in ("http", "https"):
            scheme = parsed.scheme or "no scheme"
            if redirected:
                raise InvalidRequest(f"{what} uses {scheme!r}; only http and https are fetched.")
            raise InvalidRequest(
                f"The media URL's scheme {scheme!r} is not allowed; only http and https are "
                "fetched "
                "(or send the media as base64)."
            )
        if not parsed.host:
            raise InvalidRequest(f"{what} has no host; give a full http(s) URL.")
        return parsed

    async def _resolve(self, url: httpx.URL, *, redirected: bool) -> list[str]:
        """The checked addresses `url`'s host resolves to, in resolver order. Refuses the URL if
        any address is refused (a host with one private address is not fetched at all)."""
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            ips = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().run_in_executor(
                    self._dns,
                    functools.partial(
                        socket.getaddrinfo,
                        url.raw_host.decode("ascii"),
                        port,
                        type=socket.SOCK_STREAM,
                    ),
                )
            except (socket.gaierror, UnicodeError, OSError):
                if redirected:
                    raise InvalidRequest(
                        "The media URL redirected to a host that does not resolve."
                    ) from None
                raise InvalidRequest(
                    f"The media URL's host {host!r} does not resolve; check the URL."
                ) from None
            ips = []
            for family, _, _, _, sockaddr in infos:
                if family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
                if ip not in ips:
                    ips.append(ip)
            if not ips:
                raise InvalidRequest(
                    "The media URL's host has no IPv4 or IPv6 address; check the URL."
                )
        for ip in ips:
            reason = address_refusal(ip, self._allow)
            if reason is None:
                continue
            if redirected:
                where = "The media URL redirected to a host that"
            elif literal is not None:
                where = "The media URL"
            else:
                where = f"The media URL's host {host!r}"
            verb = "points to" if literal is not None else "resolves to"
            raise InvalidRequest(f"{where} {verb} {reason}, which is not fetched. {_ADVICE}")
        return [str(ip) for ip in ips]

    async def _get(
        self, client: httpx.AsyncClient, url: httpx.URL, *, redirected: bool
    ) -> bytes | httpx.URL:
        """One request, pinned to a checked address: the body, or the next URL of a redirect."""
        addresses = await self._resolve(url, redirected=redirected)
        ascii_host = url.raw_host.decode("ascii")  # IDNA-encoded; an IPv6 literal has no brackets
        host_header = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
        if url.port is not None:
            host_header += f":{url.port}"
        extensions = {"sni_hostname": ascii_host} if url.scheme == "https" else {}
        last_error: Exception | None = None
        for ip in addresses:
            target = url.copy_with(host=ip)
            try:
                async with client.stream(
                    "GET",
                    target,
                    headers={"Host": host_header, "Accept-Encoding": "identity"},
                    extensions=extensions,
                ) as resp:
                    return await self._read(resp, url)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_error = exc  # try the host's next address
                continue
            except httpx.TimeoutException:
                raise
            except httpx.HTTPError:
                raise InvalidRequest(
                    "The media URL's server broke off or sent an invalid HTTP response; "
                    "check the URL."
                ) from None
        if isinstance(last_error, httpx.ConnectTimeout):
            raise InvalidRequest(
                "Connecting to the media URL's host timed out "
                f"(limit {self.settings.connect_timeout_s:g} s)."
            )
        if url.scheme == "https" and _is_tls_error(last_error):
            raise InvalidRequest(
                "The media URL's TLS handshake failed (certificate or protocol); check the URL."
            )
        raise InvalidRequest(
            "Could not connect to the media URL's host; check the URL and that it is reachable."
        )

    async def _read(self, resp: httpx.Response, url: httpx.URL) -> bytes | httpx.URL:
        status = resp.status_code
        if status in _REDIRECT_CODES:
            location = resp.headers.get("location")
            if not location:
                raise InvalidRequest(
                    f"The media URL answered HTTP status {status} without a Location."
                )
            try:
                nxt = url.join(location)
            except (httpx.InvalidURL, ValueError, TypeError):
                raise InvalidRequest("The media URL redirected to an invalid URL.") from None
            return self._parse(str(nxt), redirected=True)
        if not 200 <= status < 300:
            raise InvalidRequest(
                f"The media URL answered HTTP status {status}; give a URL that serves the file."
            )
        cap = self.settings.max_bytes
        too_large = PayloadTooLarge(
            f"The media at the URL is larger than the {_human_size(cap)} cap; give a smaller file.",
            {"max_bytes": cap},
        )
        length = resp.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > cap:
            raise too_large
        body = bytearray()
        inflate = _decoder(resp.headers.get("content-encoding"))
        # raw bytes, inflated here at most up to the cap: a small compressed body cannot expand
        # in memory before the cap is checked (httpx would inflate each chunk whole)
        async for raw in resp.aiter_raw():
            chunk = raw if inflate is None else inflate.decompress(raw, cap + 1 - len(body))
            body += chunk
            if len(body) > cap or (inflate is not None and inflate.unconsumed_tail):
                raise too_large
        if inflate is not None:
            body += inflate.flush()
            if len(body) > cap:
                raise too_large
        if not body:
            raise InvalidRequest(
                "The media URL answered with an empty body; give a URL that serves the file."
            )
        return bytes(body)
