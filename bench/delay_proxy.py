#!/usr/bin/env python3
"""A TCP proxy that delays each direction by D milliseconds, for emulating a WAN round trip
on loopback (this kernel has no netem). It does not throttle: a chunk read at t is written
at t + D while reading goes on, so bandwidth is the loopback's and only latency is added.

    python3 bench/delay_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS

Runs until killed. Every connection gets its own upstream connection (TLS passes through).
"""
import asyncio
import sys
import time


async def pump(reader, writer, delay):
    queue = asyncio.Queue()

    async def send():
        while True:
            due, chunk = await queue.get()
            if chunk is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    sender = asyncio.create_task(send())
    try:
        while True:
            chunk = await reader.read(262144)
            queue.put_nowait((time.monotonic() + delay, chunk if chunk else None))
            if not chunk:
                break
    except (ConnectionResetError, OSError):
        queue.put_nowait((time.monotonic(), None))
    try:
        await sender
    except (ConnectionResetError, OSError, BrokenPipeError):
        pass


async def handle(client_reader, client_writer, upstream, delay):
    host, port = upstream.rsplit(":", 1)
    try:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pump(client_reader, up_writer, delay),
        pump(up_reader, client_writer, delay),
        return_exceptions=True,
    )
    for w in (up_writer, client_writer):
        try:
            w.close()
        except OSError:
            pass


async def main():
    listen, upstream, delay_ms = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    delay = delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream, delay), "127.0.0.1", listen, backlog=1024
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
