"""Opens COUNT keep-alive connections to a contender, sends one request on each, reads
the response, and then holds them all idle. Prints `READY ok=N failed=M` once every
connection has its answer, and closes them all when stdin closes.

    python bench/idle_conns.py PORT PATH COUNT [TOKEN]
"""

import asyncio
import resource
import sys

# Connections being opened at once: the listen backlogs of some contenders are small.
OPENING = 256


async def one(port: int, request: bytes, gate: asyncio.Semaphore, held: list) -> bool:
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), 30)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            return False
    held.append(writer)
    return 200 <= status < 300


async def main() -> int:
    port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else ""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 1024)), hard))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode()
    gate = asyncio.Semaphore(OPENING)
    held: list[asyncio.StreamWriter] = []
    results = await asyncio.gather(*(one(port, request, gate, held) for _ in range(count)))
    ok = sum(results)
    print(f"READY ok={ok} failed={count - ok}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in held:
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
