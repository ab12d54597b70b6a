"""The server side of HTTP/2 (RFC 9113) that gRPC's unary calls need, lean enough for the serving hot path.

:class:`ServerConnection` is a sans-I/O state machine: bytes in (:meth:`~ServerConnection.receive_data`, which returns
events), bytes out (:meth:`~ServerConnection.data_to_send`). It does the framing, HPACK (decoding with the ``hpack``
package; encoding as literals that never touch the dynamic table), both directions of flow control, SETTINGS, PING,
RST_STREAM, GOAWAY and CONTINUATION, and refuses what breaks the protocol with :class:`ProtocolError` (the caller
answers GOAWAY with its ``error_code`` and closes). Server push and priorities are not served (PRIORITY frames are
ignored, as RFC 9113 allows).

Why not the ``h2`` package, which ``lepton serve --grpc-port`` used first: measured per unary call on this project's
benchmark machine, h2 spent ~90 us (receiving ~55, answering ~37), half of the server's CPU per request, in its
general state machine, event objects and per-header work; this module does the same calls' work in a fraction of that
(``docs/serving.md``). Two things make it cheap: a header block made only of one-byte table references (what a gRPC
client sends from its second call on) is decoded once and then looked up, for as long as the dynamic table is the
same; and the constant response headers and trailers are encoded once per process.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from hpack import Decoder
from hpack.exceptions import HPACKError, OversizedHeaderListError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FLAG_END_STREAM = FLAG_ACK = 0x1
FLAG_END_HEADERS, FLAG_PADDED, FLAG_PRIORITY = 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS = 1, 2, 3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE = 4, 5, 6
DEFAULT_WINDOW = 65535
DEFAULT_FRAME_SIZE = 16384
MAX_WINDOW = 2**31 - 1
_FRAME_HEADER = struct.Struct(">BHBBL")  # a 24-bit length as 8 + 16 bits, type, flags, stream id
# one-byte HPACK references (indexed fields 1-126): a block of only these leaves the dynamic table as it is
_ONE_BYTE_REFERENCES = bytes(range(0x81, 0xFF))
_DECODED_BLOCKS_KEPT = 256


class ErrorCodes(IntEnum):
    """HTTP/2 error codes (RFC 9113 section 7)."""

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    SETTINGS_TIMEOUT = 4
    STREAM_CLOSED = 5
    FRAME_SIZE_ERROR = 6
    REFUSED_STREAM = 7
    CANCEL = 8
    COMPRESSION_ERROR = 9
    ENHANCE_YOUR_CALM = 11


class ProtocolError(Exception):
    """The peer broke HTTP/2 (a connection error): answer GOAWAY with ``error_code`` and close. Also raised when sending
    on a stream that is no longer open (the peer reset it)."""

    def __init__(self, message: str, error_code: int = ErrorCodes.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.error_code = error_code


# events: what a received frame meant


class RequestReceived:
    """A new stream's request headers, as (name, value) bytes pairs."""

    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.stream_id, self.headers = stream_id, headers


class DataReceived:
    """Request body bytes; ``flow_controlled_length`` (padding included) is what to acknowledge once consumed."""

    __slots__ = ("data", "flow_controlled_length", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow_controlled_length: int) -> None:
        self.stream_id, self.data, self.flow_controlled_length = stream_id, data, flow_controlled_length


class StreamEnded:
    """The peer sent all of the stream's request."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class TrailersReceived:
    """Headers that end a request already begun (a gRPC client sends none)."""

    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.stream_id, self.headers = stream_id, headers


class WindowUpdated:
    """The peer let more be sent: on one stream, or (``stream_id`` 0) on the connection or every stream."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset:
    """The peer reset (cancelled) a stream: nothing more is sent on it."""

    __slots__ = ("error_code", "stream_id")

    def __init__(self, stream_id: int, error_code: int) -> None:
        self.stream_id, self.error_code = stream_id, error_code


class RemoteSettingsChanged:
    """The peer's SETTINGS arrived (and were acknowledged): the connection is open."""

    __slots__ = ()


class ConnectionTerminated:
    """The peer sent GOAWAY."""

    __slots__ = ("error_code",)

    def __init__(self, error_code: int) -> None:
        self.error_code = error_code


class _Stream:
    __slots__ = ("receiving", "recv_unacknowledged", "recv_window", "send_window", "sending")

    def __init__(self, send_window: int, recv_window: int) -> None:
        self.receiving = True  # the peer may still send on it
        self.sending = True  # we may still send on it
        self.send_window = send_window
        self.recv_window = recv_window
        self.recv_unacknowledged = 0


def _frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _FRAME_HEADER.pack(length >> 16, length & 0xFFFF, frame_type, flags, stream_id) + payload


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 section 5.1) in ``prefix_bits`` of a first byte that starts as ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# the static table entries a response uses (RFC 7541 appendix A)
_STATUS_INDEXED = {b"200": 8, b"204": 9, b"206": 10, b"304": 11, b"400": 12, b"404": 13, b"500": 14}
_STATIC_NAMES = {b":status": 8, b"content-type": 31, b"content-length": 28}
_encoded_blocks: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}


def encode_headers(headers: tuple[tuple[bytes, bytes], ...]) -> bytes:
    """``headers`` as an HPACK block that needs no encoder state: static-table references and literals "without
    indexing", so any connection can send it and the peer's dynamic table never changes. Blocks are remembered."""
    block = _encoded_blocks.get(headers)
    if block is not None:
        return block
    out = bytearray()
    for name, value in headers:
        if name == b":status" and value in _STATUS_INDEXED:
            out += _integer(_STATUS_INDEXED[value], 7, 0x80)
            continue
        index = _STATIC_NAMES.get(name)
        out += _integer(index, 4) if index is not None else b"\x00" + _integer(len(name), 7) + name
        out += _integer(len(value), 7) + value
    block = bytes(out)
    if len(_encoded_blocks) < _DECODED_BLOCKS_KEPT:
        _encoded_blocks[headers] = block
    return block


class ServerConnection:
    """One HTTP/2 connection, server side (see the module docstring).

    Our SETTINGS: at most ``max_concurrent_streams`` open streams (another is refused with REFUSED_STREAM),
    ``max_header_list_size`` bytes of headers per request (more is a connection error), a receive window of
    ``stream_window`` per stream and ``connection_window`` for the connection, given back as the caller acknowledges
    consumed bytes (:meth:`acknowledge_received_data`).
    """

    def __init__(self, *, max_concurrent_streams: int = 100, max_header_list_size: int = 16 * 1024,
                 stream_window: int = 1 << 20, connection_window: int = 1 << 24) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_list_size = max_header_list_size
        self.stream_window = stream_window
        self.connection_window = connection_window
        self.streams: dict[int, _Stream] = {}
        self.highest_stream_id = 0
        self.max_outbound_frame_size = DEFAULT_FRAME_SIZE
        self.outbound_window = DEFAULT_WINDOW  # the connection's send window
        self._remote_initial_window = DEFAULT_WINDOW
        self._recv_window = DEFAULT_WINDOW  # the connection's receive window (raised by initiate_connection)
        self._recv_unacknowledged = 0
        self._decoder = Decoder(max_header_list_size=max_header_list_size)
        self._decoded: dict[bytes, list[tuple[bytes, bytes]]] = {}  # one-byte-reference blocks, for the current table
        self._buffer = bytearray()
        self._preface_seen = False
        self._settings_seen = False
        self._continuation: tuple[int, int, bytearray] | None = None  # stream id, END_STREAM, the block so far
        self._goaway_sent = False
        self._out: list[bytes] = []

    # sending

    def initiate_connection(self) -> None:
        """Our SETTINGS and the connection's receive window: the first bytes a server sends."""
        settings = b"".join(struct.pack(">HL", ident, value) for ident, value in (
            (SETTINGS_MAX_CONCURRENT_STREAMS, self.max_concurrent_streams), (SETTINGS_INITIAL_WINDOW_SIZE, self.stream_window),
            (SETTINGS_MAX_HEADER_LIST_SIZE, self.max_header_list_size)))
        self._out.append(_frame(SETTINGS, 0, 0, settings))
        if self.connection_window > DEFAULT_WINDOW:
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", self.connection_window - DEFAULT_WINDOW)))
            self._recv_window = self.connection_window

    def data_to_send(self) -> bytes:
        """The bytes queued for the peer since the last call."""
        if not self._out:
            return b""
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        return data

    def _open_stream(self, stream_id: int) -> _Stream:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.sending:
            raise ProtocolError(f"stream {stream_id} is closed", ErrorCodes.STREAM_CLOSED)
        return stream

    def send_headers(self, stream_id: int, headers: tuple[tuple[bytes, bytes], ...], end_stream: bool = False) -> None:
        """Response headers or trailers (``end_stream`` closes our side of the stream)."""
        stream = self._open_stream(stream_id)
        block = encode_headers(headers)
        limit = self.max_outbound_frame_size
        flags = FLAG_END_STREAM if end_stream else 0
        if len(block) <= limit:
            self._out.append(_frame(HEADERS, flags | FLAG_END_HEADERS, stream_id, block))
        else:
            chunks = [block[at:at + limit] for at in range(0, len(block), limit)]
            self._out.append(_frame(HEADERS, flags, stream_id, chunks[0]))
            for index, chunk in enumerate(chunks[1:], start=2):
                self._out.append(_frame(CONTINUATION, FLAG_END_HEADERS if index == len(chunks) else 0, stream_id, chunk))
        if end_stream:
            self._end_sending(stream_id, stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """One DATA frame: at most :meth:`local_flow_control_window` and :attr:`max_outbound_frame_size` bytes."""
        stream = self._open_stream(stream_id)
        size = len(data)
        if size > self.outbound_window or size > stream.send_window or size > self.max_outbound_frame_size:
            raise ProtocolError(f"{size} bytes exceed the peer's flow-control window or frame size", ErrorCodes.FLOW_CONTROL_ERROR)
        self.outbound_window -= size
        stream.send_window -= size
        self._out.append(_frame(DATA, FLAG_END_STREAM if end_stream else 0, stream_id, data))
        if end_stream:
            self._end_sending(stream_id, stream)

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many bytes of DATA the peer accepts on ``stream_id`` now."""
        return min(self.outbound_window, self._open_stream(stream_id).send_window)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """RST_STREAM: we stop the stream (the rest of a refused request is not read)."""
        if self.streams.pop(stream_id, None) is None:
            raise ProtocolError(f"stream {stream_id} is closed", ErrorCodes.STREAM_CLOSED)
        self._out.append(_frame(RST_STREAM, 0, stream_id, struct.pack(">L", error_code)))

    def close_connection(self, error_code: int = ErrorCodes.NO_ERROR) -> None:
        """GOAWAY: no new streams (later ones are ignored); the open ones may still be answered."""
        self._goaway_sent = True
        self._out.append(_frame(GOAWAY, 0, 0, struct.pack(">LL", self.highest_stream_id, error_code)))

    def acknowledge_received_data(self, size: int, stream_id: int) -> None:
        """``size`` received bytes were consumed: give the peer that window back (in WINDOW_UPDATEs of half a window)."""
        self._recv_unacknowledged += size
        if self._recv_unacknowledged >= self.connection_window // 2:
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", self._recv_unacknowledged)))
            self._recv_window += self._recv_unacknowledged
            self._recv_unacknowledged = 0
        stream = self.streams.get(stream_id)
        if stream is not None and stream.receiving:
            stream.recv_unacknowledged += size
            if stream.recv_unacknowledged >= self.stream_window // 2:
                self._out.append(_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">L", stream.recv_unacknowledged)))
                stream.recv_window += stream.recv_unacknowledged
                stream.recv_unacknowledged = 0

    def _end_sending(self, stream_id: int, stream: _Stream) -> None:
        stream.sending = False
        if not stream.receiving:
            del self.streams[stream_id]

    # receiving

    def receive_data(self, data: bytes) -> list:
        """Feed received bytes; the events they complete, in order. Raises :class:`ProtocolError` on a connection error."""
        buffer = self._buffer
        buffer += data
        events: list = []
        if not self._preface_seen:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(buffer):
                    raise ProtocolError("the connection does not start with the HTTP/2 preface")
                return events
            if buffer[:len(PREFACE)] != PREFACE:
                raise ProtocolError("the connection does not start with the HTTP/2 preface")
            del buffer[:len(PREFACE)]
            self._preface_seen = True
        at, end = 0, len(buffer)
        try:
            while end - at >= 9:
                length = (buffer[at] << 16) | (buffer[at + 1] << 8) | buffer[at + 2]
                if length > DEFAULT_FRAME_SIZE:  # we never raise SETTINGS_MAX_FRAME_SIZE
                    raise ProtocolError(f"a {length}-byte frame is over the 16384-byte limit", ErrorCodes.FRAME_SIZE_ERROR)
                if end - at < 9 + length:
                    break
                frame_type, flags = buffer[at + 3], buffer[at + 4]
                stream_id = int.from_bytes(buffer[at + 5:at + 9], "big") & 0x7FFFFFFF
                payload = bytes(buffer[at + 9:at + 9 + length])
                at += 9 + length
                self._receive_frame(frame_type, flags, stream_id, payload, events)
        finally:
            del buffer[:at]
        return events

    def _receive_frame(self, frame_type: int, flags: int, stream_id: int, payload: bytes, events: list) -> None:
        if self._continuation is not None and (frame_type != CONTINUATION or stream_id != self._continuation[0]):
            raise ProtocolError("a header block was interrupted by another frame")
        if not self._settings_seen and frame_type != SETTINGS:
            raise ProtocolError("the client's first frame is not SETTINGS")
        if frame_type == DATA:
            self._receive_data_frame(flags, stream_id, payload, events)
        elif frame_type == HEADERS:
            self._receive_headers_frame(flags, stream_id, payload, events)
        elif frame_type == CONTINUATION:
            if self._continuation is None:
                raise ProtocolError("CONTINUATION without a header block to continue")
            block = self._continuation[2]
            block += payload
            if len(block) > 4 * self.max_header_list_size:
                raise ProtocolError("a header block is too large", ErrorCodes.ENHANCE_YOUR_CALM)
            if flags & FLAG_END_HEADERS:
                _, end_stream, _ = self._continuation
                self._continuation = None
                self._headers_complete(stream_id, end_stream, bytes(block), events)
        elif frame_type == WINDOW_UPDATE:
            self._receive_window_update(stream_id, payload, events)
        elif frame_type == SETTINGS:
            self._receive_settings(flags, stream_id, payload, events)
        elif frame_type == PING:
            if stream_id != 0 or len(payload) != 8:
                raise ProtocolError("a malformed PING", ErrorCodes.FRAME_SIZE_ERROR if len(payload) != 8 else ErrorCodes.PROTOCOL_ERROR)
            if not flags & FLAG_ACK:
                self._out.append(_frame(PING, FLAG_ACK, 0, payload))
        elif frame_type == RST_STREAM:
            if stream_id == 0 or len(payload) != 4:
                raise ProtocolError("a malformed RST_STREAM", ErrorCodes.FRAME_SIZE_ERROR if len(payload) != 4 else ErrorCodes.PROTOCOL_ERROR)
            self._check_not_idle(stream_id)
            if self.streams.pop(stream_id, None) is not None:
                events.append(StreamReset(stream_id, int.from_bytes(payload, "big")))
        elif frame_type == GOAWAY:
            if stream_id != 0 or len(payload) < 8:
                raise ProtocolError("a malformed GOAWAY")
            events.append(ConnectionTerminated(int.from_bytes(payload[4:8], "big")))
        elif frame_type == PUSH_PROMISE:
            raise ProtocolError("a client sent PUSH_PROMISE")
        elif frame_type == PRIORITY and stream_id == 0:
            raise ProtocolError("PRIORITY on stream 0")
        # PRIORITY (deprecated by RFC 9113) and unknown frame types are ignored

    def _check_not_idle(self, stream_id: int) -> None:
        if stream_id > self.highest_stream_id:
            raise ProtocolError(f"a frame for stream {stream_id}, which was never opened")

    def _receive_data_frame(self, flags: int, stream_id: int, payload: bytes, events: list) -> None:
        if stream_id == 0:
            raise ProtocolError("DATA on stream 0")
        size = len(payload)
        data = payload
        if flags & FLAG_PADDED:
            if not payload or payload[0] >= size:
                raise ProtocolError("DATA padding longer than the frame")
            data = payload[1:size - payload[0]]
        self._recv_window -= size
        if self._recv_window < 0:
            raise ProtocolError("the client sent more than the connection's window", ErrorCodes.FLOW_CONTROL_ERROR)
        stream = self.streams.get(stream_id)
        if stream is None or not stream.receiving:
            self._check_not_idle(stream_id)
            self.acknowledge_received_data(size, stream_id)  # a stream we closed or reset: the bytes are dropped
            return
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise ProtocolError(f"the client sent more than stream {stream_id}'s window", ErrorCodes.FLOW_CONTROL_ERROR)
        events.append(DataReceived(stream_id, data, size))
        if flags & FLAG_END_STREAM:
            self._end_receiving(stream_id, stream, events)

    def _receive_headers_frame(self, flags: int, stream_id: int, payload: bytes, events: list) -> None:
        if stream_id == 0:
            raise ProtocolError("HEADERS on stream 0")
        block = payload
        if flags & FLAG_PADDED:
            if not block or block[0] >= len(block):
                raise ProtocolError("HEADERS padding longer than the frame")
            block = block[1:len(block) - block[0]]
        if flags & FLAG_PRIORITY:
            if len(block) < 5:
                raise ProtocolError("HEADERS too short for its priority fields", ErrorCodes.FRAME_SIZE_ERROR)
            block = block[5:]
        end_stream = flags & FLAG_END_STREAM
        if flags & FLAG_END_HEADERS:
            self._headers_complete(stream_id, end_stream, block, events)
        else:
            self._continuation = (stream_id, end_stream, bytearray(block))

    def _headers_complete(self, stream_id: int, end_stream: int, block: bytes, events: list) -> None:
        headers = self._decode(block)  # always: the dynamic table must follow the peer's, whatever happens to the stream
        stream = self.streams.get(stream_id)
        if stream is not None:
            if not stream.receiving or not end_stream:
                raise ProtocolError(f"headers on stream {stream_id} after its request, or trailers that do not end it")
            events.append(TrailersReceived(stream_id, headers))
            self._end_receiving(stream_id, stream, events)
            return
        if stream_id <= self.highest_stream_id or stream_id % 2 == 0:
            raise ProtocolError(f"stream {stream_id} cannot open a request (client streams are odd and increasing)", ErrorCodes.STREAM_CLOSED
                                if stream_id <= self.highest_stream_id else ErrorCodes.PROTOCOL_ERROR)
        self.highest_stream_id = stream_id
        if self._goaway_sent:
            return  # after GOAWAY new streams are ignored; the client retries them elsewhere
        if len(self.streams) >= self.max_concurrent_streams:
            self._out.append(_frame(RST_STREAM, 0, stream_id, struct.pack(">L", ErrorCodes.REFUSED_STREAM)))
            return
        stream = self.streams[stream_id] = _Stream(self._remote_initial_window, self.stream_window)
        events.append(RequestReceived(stream_id, headers))
        if end_stream:
            self._end_receiving(stream_id, stream, events)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        one_byte_references = not block.translate(None, _ONE_BYTE_REFERENCES)
        if one_byte_references:
            headers = self._decoded.get(block)
            if headers is not None:
                return headers
        try:
            headers = self._decoder.decode(block, raw=True)
        except OversizedHeaderListError:
            raise ProtocolError(f"request headers over {self.max_header_list_size} bytes", ErrorCodes.ENHANCE_YOUR_CALM) from None
        except (HPACKError, IndexError, ValueError) as exc:
            raise ProtocolError(f"a header block HPACK cannot decode ({exc})", ErrorCodes.COMPRESSION_ERROR) from None
        if one_byte_references:
            if len(self._decoded) >= _DECODED_BLOCKS_KEPT:
                self._decoded.clear()
            self._decoded[block] = headers
        else:
            self._decoded.clear()  # the block may have changed the dynamic table: every remembered meaning may be stale
        return headers

    def _end_receiving(self, stream_id: int, stream: _Stream, events: list) -> None:
        stream.receiving = False
        events.append(StreamEnded(stream_id))
        if not stream.sending:
            del self.streams[stream_id]

    def _receive_window_update(self, stream_id: int, payload: bytes, events: list) -> None:
        if len(payload) != 4:
            raise ProtocolError("a malformed WINDOW_UPDATE", ErrorCodes.FRAME_SIZE_ERROR)
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if increment == 0:
            raise ProtocolError("a WINDOW_UPDATE of 0")
        if stream_id == 0:
            self.outbound_window += increment
            if self.outbound_window > MAX_WINDOW:
                raise ProtocolError("the connection's window went over 2^31-1", ErrorCodes.FLOW_CONTROL_ERROR)
            events.append(WindowUpdated(0))
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            self._check_not_idle(stream_id)
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            raise ProtocolError(f"stream {stream_id}'s window went over 2^31-1", ErrorCodes.FLOW_CONTROL_ERROR)
        events.append(WindowUpdated(stream_id))

    def _receive_settings(self, flags: int, stream_id: int, payload: bytes, events: list) -> None:
        if stream_id != 0:
            raise ProtocolError("SETTINGS on a stream")
        if flags & FLAG_ACK:
            if payload:
                raise ProtocolError("a SETTINGS acknowledgement with a payload", ErrorCodes.FRAME_SIZE_ERROR)
            return
        if len(payload) % 6:
            raise ProtocolError("a SETTINGS frame that is not 6-byte entries", ErrorCodes.FRAME_SIZE_ERROR)
        grown = False
        for at in range(0, len(payload), 6):
            ident, value = struct.unpack_from(">HL", payload, at)
            if ident == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError("SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1", ErrorCodes.FLOW_CONTROL_ERROR)
                delta = value - self._remote_initial_window
                self._remote_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ProtocolError("a stream's window went over 2^31-1", ErrorCodes.FLOW_CONTROL_ERROR)
                grown = grown or delta > 0
            elif ident == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_SIZE <= value <= 2**24 - 1:
                    raise ProtocolError(f"SETTINGS_MAX_FRAME_SIZE {value} is outside 16384..16777215")
                self.max_outbound_frame_size = value
            elif ident == SETTINGS_ENABLE_PUSH and value > 1:
                raise ProtocolError(f"SETTINGS_ENABLE_PUSH {value} is neither 0 nor 1")
            # HEADER_TABLE_SIZE: our blocks never use the dynamic table; the rest do not concern a server
        self._out.append(_frame(SETTINGS, FLAG_ACK, 0))
        self._settings_seen = True
        events.append(RemoteSettingsChanged())
        if grown:
            events.append(WindowUpdated(0))


__all__ = ["ConnectionTerminated", "DataReceived", "ErrorCodes", "PREFACE", "ProtocolError", "RemoteSettingsChanged", "RequestReceived",
           "ServerConnection", "StreamEnded", "StreamReset", "TrailersReceived", "WindowUpdated", "encode_headers"]
