"""The socket write: encoding a round's events once, and writing packets to one socket.

Packets are encoded once for every socket that takes the same events
(``SharedPacket`` frames a text message once, too).  A socket whose WebSocket
is served by ``LeanWebSocket`` and is idle gets the frames written at once; the
rest go through Engine.IO's queue and writer, in order.  A socket whose queue
is past its limits is dropped instead (``backpressure``).
"""

from __future__ import annotations

import json
import logging

from engineio import packet as eio_packet
from socketio import packet

from .backpressure import QueueLimits, drop
from .internals import engineio_socket, is_upgrading, socketio_packet_class
from .names import EVENTS, NAMESPACE
from .wire import SharedPacket, lean_websocket

log = logging.getLogger(__name__)


def send_packets(server, sid: str, eio_sid: str, packets: list, limits: QueueLimits | None) -> None:
    """Write ``packets`` to the socket ``sid``, unless it is gone, or stuck (then drop it).

    Without ``limits`` (a replay page, which waits for the socket to take the one
    before it) the socket is never taken for stuck."""
    eio_socket = engineio_socket(server, eio_sid)
    if eio_socket is None or eio_socket.closed:
        return
    if limits is not None and limits.is_stuck(eio_socket):
        log.warning("socket %s is not reading (queue full); disconnecting it", sid)
        drop(eio_socket)
        return
    websocket = lean_websocket(eio_sid)
    if websocket is not None and not is_upgrading(eio_socket):
        packets = websocket.send_now(eio_socket, packets)
    for eio_pkt in packets:
        eio_socket.send(eio_pkt)


def encode(server, event: str, data) -> list:
    """The Engine.IO packets of one ``/stream`` message, ready for many sockets."""
    pkt = socketio_packet_class(server)(packet.EVENT, namespace=NAMESPACE, data=[event, data])
    encoded = pkt.encode()
    if not isinstance(encoded, list):
        encoded = [encoded]
    return [
        SharedPacket(p) if isinstance(p, str) else eio_packet.Packet(eio_packet.MESSAGE, p)
        for p in encoded
    ]


def encode_events(server, events: list[dict]) -> tuple[list[dict], list]:
    """The events that can be sent, and their packets: an event the encoder cannot
    take (found only when the whole list fails) is left out."""
    try:
        return events, encode(server, EVENTS, events)
    except Exception:  # RecursionError, a lone surrogate...
        events = deliverable(events)
        return events, (encode(server, EVENTS, events) if events else [])


def deliverable(events: list[dict]) -> list[dict]:
    """``events`` less any that cannot be encoded (logged by ``seq``), so that one bad
    event never takes the others of its round or replay with it."""
    kept = []
    for event in events:
        try:
            json.dumps(event)
        except Exception:  # RecursionError, a lone surrogate...
            log.error("event seq %s cannot be encoded; it is not delivered", event.get("seq"))
        else:
            kept.append(event)
    return kept
