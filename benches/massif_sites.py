"""Helpers of benches/idle_massif.sh.

`hold PORT N SECONDS`: N idle clients (trust login as postgres to database postgres) held for
SECONDS; prints `held N` once all are in.
`sites FILE N`: the allocation sites of a massif detailed snapshot, largest first, each with
its bytes per client (divided by N) and the first frames that are not the allocator's.
"""
import asyncio
import re
import struct
import sys


def startup():
    body = struct.pack("!i", 196608) + b"user\0postgres\0database\0postgres\0application_name\0idle\0\0"
    return struct.pack("!i", len(body) + 4) + body


async def one(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(startup())
    await w.drain()
    buf = b""
    while b"Z\0\0\0\x05" not in buf:
        d = await r.read(4096)
        if not d:
            raise SystemExit("the pooler closed a login")
        buf += d
    return w


async def hold(port, n, secs):
    ws = []
    for i in range(0, n, 200):
        ws += await asyncio.gather(*[one(port) for _ in range(min(200, n - i))])
    print("held", len(ws), flush=True)
    await asyncio.sleep(secs)
    for w in ws:
        w.close()


SKIP = re.compile(r"library/(alloc|core|std)/|alloc::|core::|raw_vec|RawVec|malloc|realloc|in \?\?\?")


def sites(path, n):
    lines = open(path).read().split("\n")
    start = next(i for i, l in enumerate(lines) if re.match(r"\s*n\d+: ", l))
    heap = next(int(l.split("=")[1]) for l in lines if l.startswith("mem_heap_B="))
    extra = next(int(l.split("=")[1]) for l in lines if l.startswith("mem_heap_extra_B="))

    def parse(i):
        m = re.match(r"\s*n(\d+): (\d+) (.*)", lines[i])
        kids, j = [], i + 1
        for _ in range(int(m.group(1))):
            kid, j = parse(j)
            kids.append(kid)
        return (int(m.group(2)), m.group(3), kids), j

    root, _ = parse(start)

    def frames(node, acc):
        size, desc, kids = node
        if not SKIP.search(desc):
            acc.append(re.sub(r"^0x[0-9A-F]+: ", "", desc)[:120])
        if len(acc) >= 3 or not kids:
            return acc
        return frames(max(kids, key=lambda k: k[0]), acc)

    print(f"heap {heap} B + allocator overhead {extra} B = {(heap + extra) / n:.0f} B per client")
    for kid in sorted(root[2], key=lambda k: -k[0]):
        print(f"{kid[0] / n:8.0f} B/client  " + "\n                    <- ".join(frames(kid, [])))


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        asyncio.run(hold(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    else:
        sites(sys.argv[2], int(sys.argv[3]))
