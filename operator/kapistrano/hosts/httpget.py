"""One HTTP GET over a stream opened from the host (SSH direct-tcpip), spoken with h11.

HTTPS layers TLS on that stream (StreamWriter.start_tls) and, as the kubelet does, does not verify the
server's certificate: a probe asks "does it answer", not "is it who it says".
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl

import h11

from kapistrano.api.spec import HttpGetAction, HttpScheme

DEFAULT_HOST = "127.0.0.1"
USER_AGENT = "kapistrano-probe/1"
READ_SIZE = 65536


def insecure_tls() -> ssl.SSLContext:
    """A client TLS context that accepts any certificate, as the kubelet's HTTPS probes do (pure)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def server_name(host: str) -> str | None:
    """The TLS SNI name for a host: none for an IP address (pure)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return None


def request_headers(action: HttpGetAction) -> list[tuple[str, str]]:
    """Default headers, each replaced by a given header of the same name, then the given ones (pure)."""
    host = action.host or DEFAULT_HOST
    authority = f"[{host}]" if ":" in host else host
    defaults = [("Host", f"{authority}:{action.port}"), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
    given = {h.name.lower() for h in action.http_headers}
    kept = [(name, value) for name, value in defaults if name.lower() not in given]
    return [*kept, ("Connection", "close"), *((h.name, h.value) for h in action.http_headers)]


async def get_status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, action: HttpGetAction) -> int:
    """Send the GET and return the response's status code (network I/O); raises h11.ProtocolError, ssl.SSLError."""
    if action.scheme == HttpScheme.HTTPS:
        await writer.start_tls(insecure_tls(), server_hostname=server_name(action.host or DEFAULT_HOST))
    conn = h11.Connection(h11.CLIENT)
    writer.write(conn.send(h11.Request(method="GET", target=action.path, headers=request_headers(action))) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.Response):
            return event.status_code
        elif isinstance(event, h11.ConnectionClosed):
            raise h11.RemoteProtocolError("closed before a response")
