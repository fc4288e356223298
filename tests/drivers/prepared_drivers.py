"""Named prepared statements through the pooler in transaction mode with real Python drivers.

Usage: prepared_drivers.py URL   (run by tests/pooler/prepared.rs; needs psycopg 3 and asyncpg)

Several connections share a small server pool, so each client's statements keep landing on
server connections that never saw them: the pooler must re-prepare them transparently.
"""

import asyncio
import sys
import threading

import asyncpg
import psycopg

URL = sys.argv[1]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def psycopg_client(n, errors):
    try:
        with psycopg.connect(URL, prepare_threshold=0, autocommit=True) as conn:
            for i in range(200):
                row = conn.execute("select %s::int * 2, %s::text", (i, f"c{n}")).fetchone()
                check(row == (i * 2, f"c{n}"), f"psycopg row {row}")
            with conn.transaction():
                conn.execute("delete from py_t where id between %s and %s", (n * 1000, n * 1000 + 999))
                with conn.cursor() as cur:
                    cur.executemany(
                        "insert into py_t(id, v) values (%s, %s)",
                        [(n * 1000 + i, f"v{i}") for i in range(300)],
                    )
            count = conn.execute(
                "select count(*) from py_t where id between %s and %s", (n * 1000, n * 1000 + 999)
            ).fetchone()[0]
            check(count == 300, f"psycopg executemany count {count}")
            # Server-side (named) cursor: DECLARE/FETCH inside a transaction.
            with conn.transaction():
                with conn.cursor(name=f"cur{n}") as cur:
                    cur.itersize = 50
                    cur.execute("select id from py_t where id between %s and %s order by id",
                                (n * 1000, n * 1000 + 999))
                    ids = [r[0] for r in cur]
            check(len(ids) == 300 and ids[0] == n * 1000, f"psycopg cursor {len(ids)}")
            # A syntax error in a prepared statement, then the connection still works.
            try:
                conn.execute("selec %s", (1,))
                check(False, "syntax error expected")
            except psycopg.errors.SyntaxError:
                pass
            check(conn.execute("select %s::int", (5,)).fetchone()[0] == 5, "after error")
            conn.execute("deallocate all")
            check(conn.execute("select %s::int + 1", (5,)).fetchone()[0] == 6, "after deallocate")
    except Exception as e:  # reported by the main thread
        errors.append(f"psycopg client {n}: {e!r}")


async def asyncpg_client(n):
    conn = await asyncpg.connect(URL)
    try:
        stmt = await conn.prepare("select $1::int + $2::int")
        for i in range(200):
            check(await stmt.fetchval(i, n) == i + n, "asyncpg fetchval")
            check(await conn.fetchval("select $1::text || 'x'", str(i)) == f"{i}x", "asyncpg fetch")
        await conn.execute("delete from apg_t where id between $1 and $2", n * 1000, n * 1000 + 999)
        await conn.executemany("insert into apg_t(id, v) values ($1, $2)",
                               [(n * 1000 + i, f"v{i}") for i in range(300)])
        count = await conn.fetchval("select count(*) from apg_t where id between $1 and $2",
                                    n * 1000, n * 1000 + 999)
        check(count == 300, f"asyncpg executemany {count}")
        async with conn.transaction():
            seen = 0
            async for _ in conn.cursor("select id from apg_t where id between $1 and $2",
                                       n * 1000, n * 1000 + 999, prefetch=40):
                seen += 1
            check(seen == 300, f"asyncpg cursor {seen}")
        try:
            await conn.fetchval("selec 1")
            check(False, "syntax error expected")
        except asyncpg.PostgresSyntaxError:
            pass
        check(await stmt.fetchval(1, 1) == 2, "asyncpg after error")
    finally:
        await conn.close()


async def asyncpg_all():
    await asyncio.gather(*(asyncpg_client(n) for n in range(5)))


def main():
    # Tables first: concurrent CREATE TABLE IF NOT EXISTS races in PostgreSQL itself.
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("create table if not exists py_t(id int primary key, v text)")
        conn.execute("create table if not exists apg_t(id int primary key, v text)")
    errors = []
    threads = [threading.Thread(target=psycopg_client, args=(n, errors)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print("psycopg ok")
    asyncio.run(asyncpg_all())
    print("asyncpg ok")


main()
