"""Transparency checks with psycopg 3: what a client sees through the pooler equals what it
sees directly.

Usage: transparency_psycopg.py DIRECT_URL SOLO_SESSION_URL SOLO_URL SESSION_URL TRANSACTION_URL
  (run by tests/pooler/transparency_py.rs). SOLO_* pools have one server connection;
  SESSION_URL and TRANSACTION_URL are pools with room for two clients.
Prints "psycopg transparency ok" when every check passed.
"""

import sys
import threading
import time

import psycopg

DIRECT, SOLO_SESSION, SOLO, SESSION, TRANSACTION = sys.argv[1:6]
TARGETS = {"direct": DIRECT, "session": SOLO_SESSION, "transaction": SOLO}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def encodings(url):
    """client_encoding as ParameterStatus and SHOW report it, for several spellings."""
    seen = []
    for spelling in ["utf-8", "UTF8", "unicode", "euc-jp", "EUC_JP", "latin1", "win1252"]:
        with psycopg.connect(url, client_encoding=spelling, autocommit=True) as conn:
            status = conn.info.parameter_status("client_encoding")
            shown = conn.execute("show client_encoding").fetchone()[0]
            seen.append((spelling, status, shown))
            # Still right after a transaction on a (possibly other) server connection.
            conn.execute("select 1")
            check(conn.execute("show client_encoding").fetchone()[0] == shown, "encoding kept")
    return seen


def prepared_left_mid_transaction(url):
    """The issue's reproduction: a driver-level prepared statement, then close without commit;
    the next client's first prepared statement of the same name must work."""
    out = []
    for _ in range(2):
        conn = psycopg.connect(url, prepare_threshold=0)
        out.append(conn.execute("select %s::int + 1", (1,)).fetchone()[0])
        conn.execute("set work_mem = '17MB'")
        conn.close()  # inside the transaction psycopg opened
    with psycopg.connect(url, prepare_threshold=0, autocommit=True) as conn:
        out.append(conn.execute("select %s::int + 2", (1,)).fetchone()[0])
        out.append(conn.execute("show work_mem").fetchone()[0])
        # pg_prepared_statements differs by design in transaction mode (the pooler's shared
        # statements are listed under their pgsl_ names): see docs/pooling-modes.md.
    return out


def settings_do_not_leak(url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set search_path = tr_py_nowhere")
        conn.execute("set default_transaction_read_only = on")
        mine = conn.execute("show search_path").fetchone()[0]
    with psycopg.connect(url, autocommit=True) as conn:
        other = conn.execute("show search_path").fetchone()[0]
        ro = conn.execute("show default_transaction_read_only").fetchone()[0]
    return [mine, other, ro]


def session_pids():
    """Session mode: BackendKeyData's pid is the backend's, NOTIFY shows the sender's pid as
    the sender was told it, and a cancel with that key reaches the running query."""
    with psycopg.connect(SESSION, autocommit=True) as a, psycopg.connect(
        SESSION, autocommit=True
    ) as b:
        for c in (a, b):
            real = c.execute("select pg_backend_pid()").fetchone()[0]
            check(c.info.backend_pid == real, f"BackendKeyData pid {c.info.backend_pid} != {real}")
        a.execute("listen tr_py_channel")
        b.execute("notify tr_py_channel, 'hello'")
        got = None
        for n in a.notifies(timeout=5):
            got = n
            break
        check(got is not None, "no notification")
        check(got.pid == b.info.backend_pid, f"NOTIFY pid {got.pid} != {b.info.backend_pid}")
        check(got.payload == "hello", f"payload {got.payload}")
        timer = threading.Timer(0.5, b.cancel)
        timer.start()
        started = time.monotonic()
        try:
            b.execute("select pg_sleep(20)")
            raise AssertionError("cancel did not reach the query")
        except psycopg.errors.QueryCanceled:
            pass
        check(time.monotonic() - started < 10, "cancel was slow")


def listen_in_transaction_mode():
    """LISTEN pins the client (transaction mode): a NOTIFY sent by another client reaches it
    while it is idle, until UNLISTEN *."""
    with psycopg.connect(TRANSACTION, autocommit=True) as a, psycopg.connect(
        TRANSACTION, autocommit=True
    ) as b:
        a.execute("listen tr_py_tx")
        a.execute("select 1")
        b.execute("notify tr_py_tx, 'first'")
        got = [n.payload for n in a.notifies(timeout=5, stop_after=1)]
        check(got == ["first"], f"transaction-mode notification: {got}")
        a.execute("unlisten *")
        b.execute("notify tr_py_tx, 'second'")
        got = [n.payload for n in a.notifies(timeout=1, stop_after=1)]
        check(got == [], f"notification after UNLISTEN *: {got}")


def main():
    results = {}
    for name, url in TARGETS.items():
        results[name] = {
            "encodings": encodings(url),
            "prepared": prepared_left_mid_transaction(url),
            "settings": settings_do_not_leak(url),
        }
    for name in ("session", "transaction"):
        for key, want in results["direct"].items():
            have = results[name][key]
            check(have == want, f"{key} through {name} mode: {have} != direct {want}")
    session_pids()
    listen_in_transaction_mode()
    print("psycopg transparency ok")


if __name__ == "__main__":
    main()
