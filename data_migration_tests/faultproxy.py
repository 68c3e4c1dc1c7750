"""A TCP proxy on 127.0.0.1 that injects network faults between a real client and an emulator.

The project's clients (boto3, the Snowflake connector) talk to the proxy as if it were the
service; the proxy forwards bytes both ways and, when armed, breaks the traffic on purpose:

- cut(direction, after): once `after` more bytes have gone that way, reset every open connection
  (RST, as a dropped network does); with outage=True every later connection is reset at once
  too, until heal() is called, so retries fail as well.
- corrupt_get(path): flip one byte of the body of the next response to a GET whose request line
  contains `path` (a bit flipped in transit, which TCP's checksum missed).
- throttle(bytes_per_second): slow the upload direction, to catch a run mid-upload.
- drop_answer(method, path): let the next request whose request line has `method` and `path`
  reach the service whole, then reset its connection instead of passing the answer back: the
  service applied the request, the client never hears so (and retries it, as botocore does).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

UP, DOWN = "up", "down"  # client -> service, service -> client


@dataclass
class _Fault:
    direction: str
    remaining: int
    outage: bool


@dataclass
class FaultProxy:
    upstream_host: str
    upstream_port: int
    host: str = "127.0.0.1"
    port: int = 0
    cuts: int = 0  # faults that fired
    flips: int = 0
    answers_dropped: int = 0
    bytes_seen: dict[str, int] = field(default_factory=lambda: {UP: 0, DOWN: 0})

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: _Fault | None = None
        self._down = False
        self._corrupt_path: bytes | None = None
        self._rate: float | None = None
        self._drop: tuple[bytes, bytes] | None = None  # (method, path) of the request to answer with a reset
        self._connections: set[socket.socket] = set()
        self._listener = socket.create_server((self.host, self.port))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="fault proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # arming ------------------------------------------------------------------------------------
    def cut(self, direction: str, after: int, outage: bool = True) -> None:
        with self._lock:
            self._fault = _Fault(direction, after, outage)

    def corrupt_get(self, path: str) -> None:
        with self._lock:
            self._corrupt_path = path.encode()

    def drop_answer(self, method: str, path: str) -> None:
        with self._lock:
            self._drop = (method.encode(), path.encode())

    def throttle(self, bytes_per_second: float | None) -> None:
        self._rate = bytes_per_second

    def heal(self) -> None:
        with self._lock:
            self._fault = None
            self._down = False
            self._corrupt_path = None
            self._rate = None
            self._drop = None

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._reset_all()

    # plumbing ----------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection((self.upstream_host, self.upstream_port))
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._connections |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        ends = {client: (upstream, UP), upstream: (client, DOWN)}
        corrupt_next = False  # this connection's current request is a GET to corrupt
        in_body = False
        swallow_answer = False  # this connection's current request was applied; its answer is dropped
        try:
            while True:
                readable, _, _ = select.select(list(ends), [], [], 0.5)
                if self._stopped.is_set():
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    target, direction = ends[source]
                    if direction == UP and self._corrupt_path and data.startswith(b"GET "):
                        line = data.split(b"\r\n", 1)[0]
                        corrupt_next, in_body = self._corrupt_path in line, False
                    if direction == UP and self._drop and self._is_dropped_request(data):
                        swallow_answer = True
                    if direction == DOWN and swallow_answer:
                        interim, final = _split_interim(data)
                        if interim:
                            target.sendall(interim)  # `100 Continue`: the body is still to come
                        if not final:
                            continue
                        with self._lock:
                            self.answers_dropped += 1
                        for end in (client, upstream):
                            _reset(end)
                        return
                    if direction == DOWN and corrupt_next:
                        data, corrupt_next, in_body = self._flip_body_byte(data, in_body)
                    if direction == UP and self._rate:
                        time.sleep(len(data) / self._rate)
                    if self._account(direction, len(data)):
                        # Forward what fits before the cut, then drop everything.
                        return self._trip()
                    target.sendall(data)
        except (OSError, ValueError):  # a socket another thread reset under us
            return
        finally:
            for end in (client, upstream):
                _close(end)
                with self._lock:
                    self._connections.discard(end)

    def _is_dropped_request(self, data: bytes) -> bool:
        with self._lock:
            if self._drop is None:
                return False
            method, path = self._drop
            line = data.split(b"\r\n", 1)[0]
            if not (line.startswith(method + b" ") and path in line):
                return False
            self._drop = None  # once: the client's retry passes
            return True

    def _flip_body_byte(self, data: bytes, in_body: bool) -> tuple[bytes, bool, bool]:
        start = 0
        if not in_body:
            header_end = data.find(b"\r\n\r\n")
            if header_end < 0:
                return data, True, False
            start = header_end + 4
        if start >= len(data):
            return data, True, True
        flipped = bytearray(data)
        flipped[start] ^= 0x01
        with self._lock:
            self.flips += 1
            self._corrupt_path = None
        return bytes(flipped), False, False

    def _account(self, direction: str, size: int) -> bool:
        with self._lock:
            self.bytes_seen[direction] += size
            fault = self._fault
            if fault is None or fault.direction != direction:
                return False
            fault.remaining -= size
            if fault.remaining > 0:
                return False
            self.cuts += 1
            self._fault = None
            self._down = fault.outage
            return True

    def _trip(self) -> None:
        self._reset_all()

    def _reset_all(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            _reset(connection)


def _split_interim(data: bytes) -> tuple[bytes, bytes]:
    """`data` from the service as (interim 1xx answers, the rest): a 100 Continue is passed on."""
    interim = b""
    while data.startswith(b"HTTP/1.1 1"):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        interim, data = interim + data[: end + 4], data[end + 4 :]
    return interim, data


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a broken network or a crashed peer does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
