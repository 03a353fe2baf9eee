"""The seed-style baseline: the classic hand-written asyncio + aiohttp load loop.

This is the pattern runner exists to replace, measured so the comparison is
honest: one ``aiohttp.ClientSession``, an ``asyncio.Semaphore(N)`` bounding
requests in flight, and ``asyncio.gather`` over a fixed number of fetch
coroutines, each reading its whole body. Creating every coroutine up front is
part of the pattern (and of its memory cost), so it is kept.

One deliberate difference from the naive version: the session's connector
gets ``limit=N``. aiohttp's default pool holds 100 connections, so a naive
concurrency-1000 script silently runs at 100; the table would then compare
different concurrencies under the same label.

A run is bounded by a request count. ``--requests`` fixes it; ``--duration D``
sizes it: a probe (doubling until it lasts at least 0.5 s) estimates the
rate, then ``rate * D`` requests are sent on the same, warm session.

The event loop is the standard one unless ``--uvloop`` is given: a typical
hand-written script does not install uvloop (runner does).

Prints one JSON object on stdout: requests, ok, failed, elapsed_s, rps,
peak_rss_mb (this process, from getrusage) and the probe's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

import aiohttp

PROBE_MIN_S = 0.5


async def fetch(session: aiohttp.ClientSession, semaphore: asyncio.Semaphore, url: str) -> bool:
    async with semaphore:
        try:
            async with session.get(url) as response:
                await response.read()
                return response.status < 400
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False


async def batch(session: aiohttp.ClientSession, semaphore: asyncio.Semaphore, url: str, count: int) -> dict:
    """The seed pattern proper: gather ``count`` fetches and time them."""
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(fetch(session, semaphore, url) for _ in range(count)))
    elapsed = time.perf_counter() - started
    ok = sum(outcomes)
    return {"requests": count, "ok": ok, "failed": count - ok, "elapsed_s": round(elapsed, 3),
            "rps": round(count / elapsed, 1) if elapsed > 0 else 0.0}


async def probe(session: aiohttp.ClientSession, semaphore: asyncio.Semaphore, url: str, concurrency: int) -> dict:
    """Double a small batch until it lasts PROBE_MIN_S, to estimate requests per second."""
    count = max(2 * concurrency, 500)
    while True:
        result = await batch(session, semaphore, url, count)
        if result["elapsed_s"] >= PROBE_MIN_S or result["failed"] == count:
            return result
        count *= 2


async def main_async(args: argparse.Namespace) -> dict:
    semaphore = asyncio.Semaphore(args.concurrency)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        probed = None
        count = args.requests
        if count is None:
            probed = await probe(session, semaphore, args.url, args.concurrency)
            count = max(args.concurrency, int(probed["rps"] * args.duration))
        result = await batch(session, semaphore, args.url, count)
    result["probe"] = probed
    result["concurrency"] = args.concurrency
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    bound = parser.add_mutually_exclusive_group(required=True)
    bound.add_argument("-n", "--requests", type=int, help="send exactly this many requests")
    bound.add_argument("-d", "--duration", type=float, help="size the request count to run about this long (s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request total timeout (s)")
    parser.add_argument("--uvloop", action="store_true", help="use uvloop instead of the standard event loop")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    loop_factory = None
    if args.uvloop:
        import uvloop
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(main_async(args))
    result["event_loop"] = "uvloop" if args.uvloop else "asyncio"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
