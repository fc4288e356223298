//! Pool tests against a scripted server (no PostgreSQL): a connection's slot comes back on
//! every path, cancellation included, and the counts follow the connections that exist.

use super::*;
use crate::config::PoolMode;
use crate::server::{ConnectSpec, Credential};
use crate::tls::client::ServerTlsHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted server does after accepting.
#[derive(Clone, Copy)]
enum Script {
    /// Logs any client in, then reads and ignores everything (never answers a query).
    LoginThenSilence,
    /// Accepts the TCP connection and never answers (a connect that hangs).
    BlackHole,
}

async fn serve_one(mut s: TcpStream, script: Script) {
    let mut sink = vec![0u8; 4096];
    if let Script::LoginThenSilence = script {
        loop {
            let Ok(len) = s.read_i32().await else { return };
            let Ok(code) = s.read_i32().await else { return };
            if code == 80_877_103 {
                // SSLRequest: declined; the startup packet follows.
                if s.write_all(b"N").await.is_err() {
                    return;
                }
                continue;
            }
            let mut rest = vec![0u8; usize::try_from(len - 8).unwrap_or(0)];
            if s.read_exact(&mut rest).await.is_err() {
                return;
            }
            break;
        }
        let mut hello = Vec::new();
        hello.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
        hello.extend_from_slice(&[b'K', 0, 0, 0, 12, 0, 0, 0, 7, 0, 0, 0, 9]);
        hello.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
        if s.write_all(&hello).await.is_err() {
            return;
        }
    }
    while let Ok(n) = s.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

async fn scripted_server(script: Script) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_one(s, script));
        }
    });
    port
}

fn settings(size: usize, check_query: &str) -> PoolSettings {
    PoolSettings {
        mode: PoolMode::Transaction,
        size,
        min_size: 0,
        reserve_size: 0,
        reserve_timeout: Duration::from_secs(5),
        query_wait_timeout: Duration::from_secs(5),
        idle_timeout: Duration::ZERO,
        lifetime: Duration::ZERO,
        check_query: check_query.into(),
        check_delay: Duration::ZERO,
        reset_query: String::new(),
    }
}

struct Fixture {
    pool: Arc<Pool>,
    db: Arc<Limit>,
    user: Arc<Limit>,
}

impl Fixture {
    async fn new(script: Script, settings: PoolSettings) -> Self {
        let port = scripted_server(script).await;
        let spec = ConnectSpec {
            node: "scripted".into(),
            host: "127.0.0.1".into(),
            port,
            user: "u".into(),
            database: "d".into(),
            credential: Credential::None,
            connect_timeout: Duration::from_secs(30),
            keepalive: false,
            tls: ServerTlsHandle::default(),
        };
        let (db, user) = (Arc::new(Limit::new(0)), Arc::new(Limit::new(0)));
        let pool = Pool::new("d", "u", spec, settings, db.clone(), user.clone());
        Self { pool, db, user }
    }

    /// (idle, total, active, database limit, user limit).
    fn counts(&self) -> (usize, usize, usize, usize, usize) {
        let (idle, total) = self.pool.counts();
        let active = self.pool.active();
        (idle, total, active, self.db.current(), self.user.current())
    }
}

const QUICK: Duration = Duration::from_millis(100);

#[tokio::test]
async fn cancelled_connects_free_their_slots() {
    let f = Fixture::new(Script::BlackHole, settings(2, "")).await;
    for _ in 0..5 {
        // As a login timeout cancels a check-out whose connect hangs.
        let r = tokio::time::timeout(QUICK, f.pool.checkout()).await;
        assert!(r.is_err(), "the black-hole connect must not finish");
        assert_eq!(f.counts(), (0, 0, 0, 0, 0));
    }
}

#[tokio::test]
async fn dropped_connections_free_their_slots() {
    let f = Fixture::new(Script::LoginThenSilence, settings(2, "")).await;
    for round in 0..4 {
        let a = f.pool.checkout().await.unwrap();
        let b = f.pool.checkout().await.unwrap();
        assert_eq!(f.counts(), (0, 2, 2, 2, 2), "round {round}");
        // As when a client resets during the greeting: neither released nor closed.
        drop((a, b));
        assert_eq!(f.counts(), (0, 0, 0, 0, 0), "round {round}");
    }
    // The next check-out answers at once.
    let c = tokio::time::timeout(Duration::from_secs(2), f.pool.checkout()).await;
    assert!(c.is_ok_and(|c| c.is_ok()));
}

#[tokio::test]
async fn release_and_close_keep_the_counts() {
    let f = Fixture::new(Script::LoginThenSilence, settings(2, "")).await;
    let a = f.pool.checkout().await.unwrap();
    f.pool.release(a);
    assert_eq!(f.counts(), (1, 1, 0, 1, 1));
    let a = f.pool.checkout().await.unwrap();
    assert_eq!(f.counts(), (0, 1, 1, 1, 1));
    f.pool.close(a);
    assert_eq!(f.counts(), (0, 0, 0, 0, 0));
}

#[tokio::test]
async fn a_waiter_gets_a_dropped_connections_slot() {
    let f = Fixture::new(Script::LoginThenSilence, settings(1, "")).await;
    let a = f.pool.checkout().await.unwrap();
    let pool = f.pool.clone();
    let waiting = tokio::spawn(async move { pool.checkout().await.map(|c| c.id) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    drop(a);
    let got = tokio::time::timeout(Duration::from_secs(2), waiting).await;
    assert!(matches!(got, Ok(Ok(Ok(_)))), "the waiter is served");
    assert_eq!(
        f.counts(),
        (0, 0, 0, 0, 0),
        "its connection dropped in turn"
    );
}

#[tokio::test]
async fn cancelled_waits_leave_nothing_behind() {
    let f = Fixture::new(Script::LoginThenSilence, settings(1, "")).await;
    let a = f.pool.checkout().await.unwrap();
    for _ in 0..10 {
        assert!(tokio::time::timeout(QUICK / 5, f.pool.checkout())
            .await
            .is_err());
    }
    assert_eq!(f.pool.stats.waiting.load(Ordering::Relaxed), 0);
    f.pool.release(a);
    assert_eq!(f.counts(), (1, 1, 0, 1, 1));
}

#[tokio::test]
async fn a_cancelled_health_check_frees_the_slot() {
    let f = Fixture::new(Script::LoginThenSilence, settings(2, "select 1")).await;
    let a = f.pool.checkout().await.unwrap();
    f.pool.release(a);
    // Reuse runs the check query, which the server never answers.
    let r = tokio::time::timeout(QUICK, f.pool.checkout()).await;
    assert!(r.is_err());
    assert_eq!(f.counts(), (0, 0, 0, 0, 0));
}

#[tokio::test]
async fn a_connection_released_to_another_pool_goes_home() {
    let f = Fixture::new(Script::LoginThenSilence, settings(2, "")).await;
    let g = Fixture::new(Script::LoginThenSilence, settings(2, "")).await;
    let a = f.pool.checkout().await.unwrap();
    g.pool.release(a);
    assert_eq!(f.counts(), (1, 1, 0, 1, 1));
    assert_eq!(g.counts(), (0, 0, 0, 0, 0));
}

#[tokio::test]
async fn dropping_a_pool_gives_idle_limits_back() {
    let f = Fixture::new(Script::LoginThenSilence, settings(2, "")).await;
    let a = f.pool.checkout().await.unwrap();
    f.pool.release(a);
    let (db, user) = (f.db.clone(), f.user.clone());
    assert_eq!((db.current(), user.current()), (1, 1));
    drop(f);
    assert_eq!((db.current(), user.current()), (0, 0));
}

#[tokio::test]
async fn idle_connections_move_between_pools_sharing_caps() {
    let f = Fixture::new(Script::LoginThenSilence, settings(2, "")).await;
    // A second pool of the same server database and user, on the same caps (a writer pool
    // re-pointed at the standby `f` reads on).
    let g = Pool::new(
        "d",
        "u",
        (*f.pool.spec()).clone(),
        settings(1, ""),
        f.db.clone(),
        f.user.clone(),
    );
    let (a, b) = (
        f.pool.checkout().await.unwrap(),
        f.pool.checkout().await.unwrap(),
    );
    f.pool.release(a);
    f.pool.release(b);
    assert_eq!(f.counts(), (2, 2, 0, 2, 2));
    let mut lent = f.pool.lend_idle(5).into_iter();
    let (first, second) = (lent.next().unwrap(), lent.next().unwrap());
    assert!(lent.next().is_none());
    assert!(g.take_over(first).is_none());
    assert_eq!(g.counts(), (1, 1));
    // Full: refused and handed back; the caps never moved.
    let back = g.take_over(second).unwrap();
    f.pool.release(back);
    assert_eq!(f.counts(), (1, 1, 0, 2, 2));
    // The moved connection is checked (out of recovery) before its first use: this scripted
    // server never answers, so the check-out fails and the connection is closed.
    assert!(tokio::time::timeout(QUICK, g.checkout()).await.is_err());
    assert_eq!(g.counts(), (0, 0));
    assert_eq!(f.counts(), (1, 1, 0, 1, 1));
    // A lent connection dropped on the way gives the lender's count and the caps back.
    drop(f.pool.lend_idle(1));
    assert_eq!(f.counts(), (0, 0, 0, 0, 0));
    // Pools on other caps never take each other's connections.
    let other = Fixture::new(Script::LoginThenSilence, settings(2, "")).await;
    let c = f.pool.checkout().await.unwrap();
    f.pool.release(c);
    let c = f.pool.lend_idle(1).pop().unwrap();
    assert!(other.pool.take_over(c).is_some());
}

/// A released connection goes to the oldest waiter unless a younger one runs on the worker
/// that holds the connection's socket; the oldest is passed over at most `MAX_PASSED` (4)
/// times, then served whatever its worker.
#[tokio::test(flavor = "current_thread")]
async fn the_oldest_waiter_is_passed_over_at_most_four_times() {
    use crate::net::worker;
    let f = Fixture::new(Script::LoginThenSilence, settings(1, "")).await;
    let mut conn = f.pool.checkout().await.expect("checkout");
    conn.home = 1;
    let mut queue = waiter::Queue::default();
    worker::enter(0);
    let (_, mut oldest) = queue.push();
    worker::enter(1);
    let mut younger: Vec<_> = (0..6).map(|_| queue.push().1).collect();
    worker::enter(0);
    for (n, rx) in younger.iter_mut().take(4).enumerate() {
        assert!(queue.hand(conn).is_none(), "hand-over {n}: nobody took it");
        assert!(
            oldest.try_recv().is_err(),
            "hand-over {n} went to the oldest"
        );
        conn = rx
            .try_recv()
            .expect("the next waiter on the connection's worker");
    }
    assert!(queue.hand(conn).is_none());
    let mut conn = oldest
        .try_recv()
        .expect("the oldest, passed over four times");
    // The oldest is now one on the connection's worker: plain arrival order.
    assert!(queue.hand(conn).is_none());
    conn = younger[4].try_recv().expect("arrival order");
    // A waiter that gave up is skipped; with nobody left, the connection comes back.
    drop(younger.pop());
    assert_eq!(queue.len(), 1);
    let back = queue
        .hand(conn)
        .expect("nobody waiting: the connection comes back");
    assert!(queue.is_empty());
    f.pool.release(back);
}
