#!/usr/bin/env python3
"""A TCP proxy that delays each direction by D milliseconds, for emulating a WAN round trip
on loopback (this kernel has no netem). A chunk read at t is written at t + D while reading
goes on. Without --rate-per-conn bandwidth is the loopback's and only latency is added; with
it, each connection carries at most that rate in each direction (a CDN edge or a long thin
path, where one TCP stream gets a fraction of the bandwidth).

    python3 bench/delay_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS [--rate-per-conn 80Mbit]

Runs until killed. Every connection gets its own upstream connection (TLS passes through).
"""
import asyncio
import sys
import time

# Pieces written at a time under a rate cap: small enough that the rate is smooth.
PACE_PIECE = 65536


def parse_rate(text):
    """Bits per second from '80Mbit', '10Mbit', '500kbit', '1Gbit' or a plain number."""
    text = text.strip().lower()
    for suffix, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


async def pump(reader, writer, delay, rate=None):
    # Bounded, so that a capped connection slows its sender down (TCP backpressure) instead
    # of the proxy holding the whole body.
    queue = asyncio.Queue(maxsize=64)
    # Under a cap, when the connection may next write (monotonic seconds).
    free_at = 0.0

    async def send():
        nonlocal free_at
        while True:
            due, chunk = await queue.get()
            if chunk is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if rate is None:
                writer.write(chunk)
                await writer.drain()
                continue
            for i in range(0, len(chunk), PACE_PIECE):
                piece = chunk[i : i + PACE_PIECE]
                start = max(free_at, time.monotonic())
                if start > time.monotonic():
                    await asyncio.sleep(start - time.monotonic())
                writer.write(piece)
                await writer.drain()
                free_at = start + len(piece) * 8 / rate
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    sender = asyncio.create_task(send())
    try:
        while True:
            chunk = await reader.read(262144)
            await queue.put((time.monotonic() + delay, chunk if chunk else None))
            if not chunk:
                break
    except (ConnectionResetError, OSError):
        await queue.put((time.monotonic(), None))
    try:
        await sender
    except (ConnectionResetError, OSError, BrokenPipeError):
        pass


async def handle(client_reader, client_writer, upstream, delay, rate):
    host, port = upstream.rsplit(":", 1)
    try:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pump(client_reader, up_writer, delay, rate),
        pump(up_reader, client_writer, delay, rate),
        return_exceptions=True,
    )
    for w in (up_writer, client_writer):
        try:
            w.close()
        except OSError:
            pass


async def main():
    args = sys.argv[1:]
    rate = None
    if "--rate-per-conn" in args:
        i = args.index("--rate-per-conn")
        rate = parse_rate(args[i + 1])
        del args[i : i + 2]
    listen, upstream, delay_ms = int(args[0]), args[1], float(args[2])
    delay = delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream, delay, rate), "127.0.0.1", listen, backlog=1024
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
