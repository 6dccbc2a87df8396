"""TCP streams tunnelled through an SSH connection (direct-tcpip), as plain asyncio streams.

Probes and service checks read and write them like `asyncio.open_connection` streams, so the same
code works for a direct socket and for a port on the far side of SSH.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh


class _ChannelTransport(asyncio.Transport):
    """An asyncio transport over one SSH TCP channel; StreamWriter.start_tls can layer TLS on it."""

    _start_tls_compatible = True  # loop.start_tls() accepts it: set_protocol() redirects what is received

    def __init__(self, channel: asyncssh.SSHTCPChannel[bytes], protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._channel = channel
        self._protocol = protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Deliver what is received to `protocol` from now on (side effect: transport state)."""
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol that receives data (pure)."""
        return self._protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send data on the channel (side effect: network)."""
        self._channel.write(bytes(data))

    def write_eof(self) -> None:
        """Half-close the channel (side effect: network)."""
        self._channel.write_eof()

    def can_write_eof(self) -> bool:
        """SSH channels support half-close (pure)."""
        return True

    def close(self) -> None:
        """Close the channel (side effect: network)."""
        self._channel.close()

    def abort(self) -> None:
        """Drop the channel at once (side effect: network)."""
        self._channel.abort()

    def is_closing(self) -> bool:
        """True once the channel is closing (pure)."""
        return self._channel.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Channel information such as peername (pure)."""
        return self._channel.get_extra_info(name, default)

    def pause_reading(self) -> None:
        """Stop delivering data until resumed (side effect: SSH flow control)."""
        self._channel.pause_reading()

    def resume_reading(self) -> None:
        """Deliver data again (side effect: SSH flow control)."""
        self._channel.resume_reading()

    def get_write_buffer_size(self) -> int:
        """Bytes queued for sending (pure)."""
        return self._channel.get_write_buffer_size()


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Hand received bytes to a plain or a buffered protocol (TLS uses the latter) (side effect: protocol state)."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]
    elif isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)


class _StreamSession(asyncssh.SSHTCPSession[bytes]):
    """Forwards channel events to the transport's current protocol (a StreamReaderProtocol, or TLS over it)."""

    def __init__(self, protocol: asyncio.StreamReaderProtocol) -> None:
        self._first = protocol
        self.transport: _ChannelTransport | None = None

    @property
    def _protocol(self) -> Any:
        """The protocol receiving data now (pure)."""
        return self.transport.get_protocol() if self.transport is not None else self._first

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        """Wire the channel to the protocol (side effect: protocol state)."""
        self.transport = _ChannelTransport(chan, self._first)
        self._first.connection_made(self.transport)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        """Feed received bytes to the protocol (side effect: reader buffer)."""
        _feed(self._protocol, data)

    def eof_received(self) -> bool:
        """Mark the reader at EOF (side effect: reader state)."""
        return bool(self._protocol.eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        """Close the reader (side effect: reader state)."""
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        """Back pressure from the channel (side effect: writer drain state)."""
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        """Back pressure released (side effect: writer drain state)."""
        self._protocol.resume_writing()


async def open_stream(
    conn: asyncssh.SSHClientConnection, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open host:port from the far side of `conn` as asyncio streams (side effect: network)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    _, session = await conn.create_connection(lambda: _StreamSession(protocol), host, port)
    assert isinstance(session, _StreamSession)
    assert session.transport is not None
    writer = asyncio.StreamWriter(session.transport, protocol, reader, loop)
    return reader, writer
