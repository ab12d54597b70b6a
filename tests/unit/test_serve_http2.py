"""lepton serve's HTTP/2 server connection (lepton_cdk.serve.http2) against the h2 package's client side, in memory.

The gRPC tests (test_serve_grpc.py) drive it through real clients (grpcio, tritonclient.grpc) over sockets; these
pin the protocol rules a real client rarely exercises: CONTINUATION, padding, flow control both ways, the HPACK
memo across dynamic-table changes, stream limits, resets, GOAWAY, and the connection errors.
"""

from __future__ import annotations

import struct

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hpack import Encoder

from lepton_cdk.serve import http2
from lepton_cdk.serve.http2 import ErrorCodes, ProtocolError, ServerConnection

GRPC_HEADERS = [(":method", "POST"), (":scheme", "http"), (":path", "/inference.GRPCInferenceService/ModelInfer"),
                (":authority", "127.0.0.1:8001"), ("content-type", "application/grpc"), ("te", "trailers")]
RESPONSE = ((b":status", b"200"), (b"content-type", b"application/grpc"))
TRAILERS = ((b"grpc-status", b"0"),)


def _client(**settings) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    if settings:
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            getattr(h2.settings.SettingCodes, name.upper()): value for name, value in settings.items()})
    conn.initiate_connection()
    return conn


def _pair(**client_settings) -> tuple[h2.connection.H2Connection, ServerConnection, list]:
    """A client and a server past the handshake; the server's events from it."""
    client, server = _client(**client_settings), ServerConnection()
    server.initiate_connection()
    events = server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())  # the client's SETTINGS acknowledgement
    return client, server, events


def _exchange(client, server) -> list:
    """Server bytes to the client; the client's events."""
    return client.receive_data(server.data_to_send())


def _frame(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((frame_type, flags)) + stream_id.to_bytes(4, "big") + payload


def test_the_handshake_gives_the_client_our_limits_and_windows():
    client, server, events = _pair()
    assert [type(e) for e in events] == [http2.RemoteSettingsChanged]
    assert client.remote_settings.max_concurrent_streams == 100
    assert client.remote_settings.initial_window_size == 1 << 20
    assert client.remote_settings.max_header_list_size == 16 * 1024
    assert client.outbound_flow_control_window == 1 << 24


def test_a_unary_call_round_trip_with_headers_in_continuations_and_padded_data():
    client, server, _ = _pair()
    long_headers = [*GRPC_HEADERS, ("x-long", "v" * 20_000)]  # over one 16 KiB frame: HEADERS + CONTINUATION
    server.max_header_list_size = 64 * 1024
    server._decoder.max_header_list_size = 64 * 1024
    client.send_headers(1, long_headers)
    client.send_data(1, b"\x00\x00\x00\x00\x03abc", end_stream=True, pad_length=10)
    events = server.receive_data(client.data_to_send())
    kinds = [type(e) for e in events]
    assert kinds == [http2.RequestReceived, http2.DataReceived, http2.StreamEnded]
    headers = dict(events[0].headers)
    assert headers[b":path"] == b"/inference.GRPCInferenceService/ModelInfer" and headers[b"x-long"] == b"v" * 20_000
    assert events[1].data == b"\x00\x00\x00\x00\x03abc" and events[1].flow_controlled_length == 8 + 11

    server.send_headers(1, RESPONSE)
    server.send_data(1, b"\x00\x00\x00\x00\x02ok")
    server.send_headers(1, TRAILERS, end_stream=True)
    answered = _exchange(client, server)
    response = next(e for e in answered if isinstance(e, h2.events.ResponseReceived))
    assert dict(response.headers) == {":status": "200", "content-type": "application/grpc"}
    assert b"".join(e.data for e in answered if isinstance(e, h2.events.DataReceived)) == b"\x00\x00\x00\x00\x02ok"
    trailers = next(e for e in answered if isinstance(e, h2.events.TrailersReceived))
    assert dict(trailers.headers) == {"grpc-status": "0"}
    assert any(isinstance(e, h2.events.StreamEnded) for e in answered)
    assert server.streams == {}  # both sides ended: forgotten


def test_an_error_status_with_a_long_message_reaches_the_client_whole():
    client, server, _ = _pair()
    client.send_headers(1, GRPC_HEADERS, end_stream=True)
    server.receive_data(client.data_to_send())
    message = ("model 'x' is not served here; " * 1000).strip().encode()  # over one frame: the trailers span CONTINUATIONs
    server.send_headers(1, (*RESPONSE, (b"grpc-status", b"5"), (b"grpc-message", message)), end_stream=True)
    answered = _exchange(client, server)
    headers = dict(next(e for e in answered if isinstance(e, h2.events.ResponseReceived)).headers)
    assert headers["grpc-status"] == "5" and headers["grpc-message"] == message.decode()


def test_the_hpack_memo_follows_the_dynamic_table():
    """The same one-byte reference means another header once the table changed: the memo must not answer the old one."""
    client, server, _ = _pair()
    encoder = Encoder()
    base = [(":method", "POST"), (":path", "/p")]
    inserted_a = encoder.encode([*base, ("x-k", "a")])  # x-k: a enters the dynamic table at index 62
    reference = bytes((0x80 | 62,))
    inserted_b = encoder.encode([*base, ("x-k", "b")])  # x-k: b is now 62, x-k: a is 63
    seen = []
    for stream_id, block in ((1, inserted_a), (3, reference + b""), (5, reference), (7, inserted_b), (9, reference), (11, reference)):
        events = server.receive_data(_frame(1, 0x5, stream_id, block))
        seen.append(dict(events[0].headers).get(b"x-k"))
    assert seen == [b"a", b"a", b"a", b"b", b"b", b"b"]


def test_responses_wait_for_the_client_s_window_and_resume_on_window_update():
    client, server, _ = _pair(initial_window_size=100)
    client.send_headers(1, GRPC_HEADERS, end_stream=True)
    server.receive_data(client.data_to_send())
    assert server.local_flow_control_window(1) == 100
    server.send_headers(1, RESPONSE)
    server.send_data(1, b"x" * 100)
    assert server.local_flow_control_window(1) == 0
    with pytest.raises(ProtocolError) as caught:
        server.send_data(1, b"y")
    assert caught.value.error_code == ErrorCodes.FLOW_CONTROL_ERROR
    for event in _exchange(client, server):
        if isinstance(event, h2.events.DataReceived):
            client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
    client.increment_flow_control_window(1000, stream_id=1)
    events = server.receive_data(client.data_to_send())
    assert any(isinstance(e, http2.WindowUpdated) and e.stream_id == 1 for e in events)
    assert server.local_flow_control_window(1) == 1100


def test_a_new_initial_window_setting_applies_to_open_streams():
    client, server, _ = _pair(initial_window_size=100)
    client.send_headers(1, GRPC_HEADERS, end_stream=True)
    server.receive_data(client.data_to_send())
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 5000})
    events = server.receive_data(client.data_to_send())
    assert any(isinstance(e, http2.WindowUpdated) and e.stream_id == 0 for e in events)
    assert server.local_flow_control_window(1) == 5000


def test_a_big_request_gets_its_windows_back_as_it_is_consumed():
    client, server, _ = _pair()
    client.send_headers(1, GRPC_HEADERS)
    sent = 0
    while sent < 3 * (1 << 20):  # three stream windows: the client stalls unless the server gives window back
        step = min(client.local_flow_control_window(1), client.max_outbound_frame_size)
        assert step > 0, f"the client is blocked after {sent} bytes"
        client.send_data(1, b"z" * step)
        sent += step
        for event in server.receive_data(client.data_to_send()):
            if isinstance(event, http2.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        client.receive_data(server.data_to_send())
    assert sent >= 3 * (1 << 20)


def test_ping_is_acknowledged_with_its_payload():
    client, server, _ = _pair()
    client.ping(b"12345678")
    server.receive_data(client.data_to_send())
    acks = [e for e in _exchange(client, server) if isinstance(e, h2.events.PingAckReceived)]
    assert [a.ping_data for a in acks] == [b"12345678"]


def test_streams_over_the_limit_are_refused_and_the_others_go_on():
    client, server, _ = _pair()
    block = Encoder().encode(GRPC_HEADERS)  # a client that ignores the server's limit: raw frames
    events = server.receive_data(b"".join(_frame(1, 0x5, stream_id, block if stream_id == 1 else _repeat(block))
                                          for stream_id in range(1, 2 * 101, 2)))
    assert len([e for e in events if isinstance(e, http2.RequestReceived)]) == 100
    resets = [(stream_id, int.from_bytes(payload, "big")) for frame_type, stream_id, payload in _frames(server.data_to_send())
              if frame_type == 3]
    assert resets == [(201, ErrorCodes.REFUSED_STREAM)]


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, stream id, payload) of each frame in ``data``."""
    frames, at = [], 0
    while at < len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        frames.append((data[at + 3], int.from_bytes(data[at + 5:at + 9], "big"), data[at + 9:at + 9 + length]))
        at += 9 + length
    return frames


def _repeat(block: bytes) -> bytes:
    """The block hpack's encoder sends for the same headers again: references to what the first one indexed."""
    encoder = Encoder()
    encoder.encode(GRPC_HEADERS)
    return encoder.encode(GRPC_HEADERS)


def test_a_reset_stream_is_reported_and_not_answered():
    client, server, _ = _pair()
    client.send_headers(1, GRPC_HEADERS, end_stream=True)
    server.receive_data(client.data_to_send())
    client.reset_stream(1, error_code=8)
    events = server.receive_data(client.data_to_send())
    assert [(type(e), e.stream_id, e.error_code) for e in events] == [(http2.StreamReset, 1, 8)]
    with pytest.raises(ProtocolError):
        server.send_headers(1, RESPONSE)


def test_refusing_a_request_still_arriving_drops_the_rest_of_it():
    client, server, _ = _pair()
    client.send_headers(1, GRPC_HEADERS)
    client.send_data(1, b"a" * 100)
    server.receive_data(client.data_to_send())
    server.send_headers(1, (*RESPONSE, (b"grpc-status", b"8")), end_stream=True)
    server.reset_stream(1)
    client.receive_data(server.data_to_send())
    assert server.receive_data(_frame(0, 0x1, 1, b"b" * 100)) == []  # late bytes of the refused request: no event, no error


def test_goaway_both_ways():
    client, server, _ = _pair()
    client.send_headers(1, GRPC_HEADERS, end_stream=True)
    server.receive_data(client.data_to_send())
    server.close_connection()
    terminated = [e for e in _exchange(client, server) if isinstance(e, h2.events.ConnectionTerminated)]
    assert terminated[0].last_stream_id == 1 and terminated[0].error_code == 0
    assert server.receive_data(_frame(1, 0x5, 3, bytes((0x83,)))) == []  # a new stream after our GOAWAY is ignored
    server.send_headers(1, RESPONSE)  # the one in flight is still answered
    client2, server2, _ = _pair()
    client2.close_connection(error_code=0)
    assert [type(e) for e in server2.receive_data(client2.data_to_send())] == [http2.ConnectionTerminated]


SETTINGS_FRAME = _frame(4, 0, 0, b"")


@pytest.mark.parametrize(("data", "code"), [
    (b"GET / HTTP/1.1\r\n\r\n", ErrorCodes.PROTOCOL_ERROR),
    (http2.PREFACE + _frame(6, 0, 0, b"12345678"), ErrorCodes.PROTOCOL_ERROR),  # the first frame is not SETTINGS
    (http2.PREFACE + SETTINGS_FRAME + _frame(0, 0, 1, b"x" * 16385), ErrorCodes.FRAME_SIZE_ERROR),
    (http2.PREFACE + SETTINGS_FRAME + _frame(1, 0x5, 2, bytes((0x83,))), ErrorCodes.PROTOCOL_ERROR),  # an even stream id
    (http2.PREFACE + SETTINGS_FRAME + _frame(1, 0x5, 3, bytes((0x83,))) + _frame(1, 0x5, 1, bytes((0x83,))), ErrorCodes.STREAM_CLOSED),
    (http2.PREFACE + SETTINGS_FRAME + _frame(0, 0, 5, b"x"), ErrorCodes.PROTOCOL_ERROR),  # DATA on a stream never opened
    (http2.PREFACE + SETTINGS_FRAME + _frame(1, 0x5, 1, b"\xff\xff\xff\xff\xff"), ErrorCodes.COMPRESSION_ERROR),
    (http2.PREFACE + SETTINGS_FRAME + _frame(9, 0x4, 1, bytes((0x83,))), ErrorCodes.PROTOCOL_ERROR),  # CONTINUATION alone
    (http2.PREFACE + SETTINGS_FRAME + _frame(1, 0x1, 1, bytes((0x83,))) + _frame(6, 0, 0, b"12345678"), ErrorCodes.PROTOCOL_ERROR),
    (http2.PREFACE + SETTINGS_FRAME + _frame(5, 0x4, 1, b"\x00\x00\x00\x02"), ErrorCodes.PROTOCOL_ERROR),  # PUSH_PROMISE
    (http2.PREFACE + SETTINGS_FRAME + _frame(8, 0, 0, struct.pack(">L", 2**31 - 1)), ErrorCodes.FLOW_CONTROL_ERROR),
    (http2.PREFACE + SETTINGS_FRAME + _frame(8, 0, 0, struct.pack(">L", 0)), ErrorCodes.PROTOCOL_ERROR),
    (http2.PREFACE + _frame(4, 0, 0, struct.pack(">HL", 5, 100)), ErrorCodes.PROTOCOL_ERROR),  # MAX_FRAME_SIZE under 16384
    (http2.PREFACE + _frame(4, 0, 0, b"\x00\x04\x00"), ErrorCodes.FRAME_SIZE_ERROR),
    (http2.PREFACE + SETTINGS_FRAME + _frame(6, 0, 0, b"1234"), ErrorCodes.FRAME_SIZE_ERROR),
], ids=["not-http2", "no-settings-first", "frame-too-big", "even-stream", "stream-id-goes-back", "data-on-idle-stream",
        "hpack-garbage", "lone-continuation", "interrupted-header-block", "push-promise", "window-overflow", "zero-window-update",
        "small-max-frame-size", "settings-not-6-byte-entries", "short-ping"])
def test_a_broken_peer_is_a_connection_error_with_the_right_code(data, code):
    server = ServerConnection()
    server.initiate_connection()
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(data)
    assert caught.value.error_code == code


def test_more_data_than_the_stream_window_is_a_flow_control_error():
    client, server, _ = _pair()
    client.send_headers(1, GRPC_HEADERS)
    server.receive_data(client.data_to_send())
    frame = _frame(0, 0, 1, b"x" * 16384)
    with pytest.raises(ProtocolError) as caught:
        for _ in range(65):  # 65 x 16 KiB > the 1 MiB stream window, never acknowledged
            server.receive_data(frame)
    assert caught.value.error_code == ErrorCodes.FLOW_CONTROL_ERROR


def test_headers_over_the_limit_are_refused():
    client, server, _ = _pair()
    block = Encoder().encode([*GRPC_HEADERS, ("x-pad", "p" * 20_000)])
    frames = _frame(1, 0x1, 1, block[:16384]) + _frame(9, 0x4, 1, block[16384:])
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(frames)
    assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_bytes_split_anywhere_give_the_same_events():
    client = _client()
    client.send_headers(1, GRPC_HEADERS)
    client.send_data(1, b"\x00\x00\x00\x00\x05hello", end_stream=True)
    data = client.data_to_send()
    whole = ServerConnection()
    expected = [(type(e).__name__, getattr(e, "stream_id", None)) for e in whole.receive_data(data)]
    split = ServerConnection()
    got = []
    for at in range(len(data)):
        got += [(type(e).__name__, getattr(e, "stream_id", None)) for e in split.receive_data(data[at:at + 1])]
    assert got == expected == [("RemoteSettingsChanged", None), ("RequestReceived", 1), ("DataReceived", 1), ("StreamEnded", 1)]


def test_response_blocks_leave_the_client_s_table_alone():
    """Encoded without indexing: a client decodes them the same however many times they come."""
    block = http2.encode_headers(RESPONSE + TRAILERS)
    from hpack import Decoder

    decoder = Decoder()
    for _ in range(3):
        assert decoder.decode(block, raw=True) == list(RESPONSE + TRAILERS)
    assert len(decoder.header_table.dynamic_entries) == 0
