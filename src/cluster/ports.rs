//! Free loopback ports: bind 127.0.0.1:0 (or a preferred port) to check, and never hand out the
//! same port twice in one process, so concurrent clusters in one test binary do not collide.

use super::error::{HarnessError, Result};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::Mutex;

/// Ports handed out by this process. A process-wide set is the point: two clusters started
/// by two tests at once must not get the same port between check and bind.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// How many kernel-chosen ports to try before giving up.
const ATTEMPTS: usize = 64;

/// True if nothing listens on 127.0.0.1:`port` (checked by binding it).
pub fn is_free(port: u16) -> bool {
    port != 0 && TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// `preferred` when it is free and not yet handed out, else a free kernel-chosen port.
pub fn pick(preferred: Option<u16>) -> Result<u16> {
    let mut taken = HANDED_OUT
        .lock()
        .map_err(|_| HarnessError::Invalid("port registry poisoned".to_string()))?;
    if let Some(p) = preferred {
        if !taken.contains(&p) && is_free(p) {
            taken.insert(p);
            return Ok(p);
        }
    }
    for _ in 0..ATTEMPTS {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| HarnessError::io("binding 127.0.0.1:0", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::io("reading a bound address", e))?
            .port();
        if taken.insert(port) {
            return Ok(port);
        }
    }
    Err(HarnessError::Invalid(
        "no free loopback port found".to_string(),
    ))
}

/// A free port chosen by the kernel.
pub fn free_port() -> Result<u16> {
    pick(None)
}

/// True if something accepts TCP connections on 127.0.0.1:`port`.
pub fn is_listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        std::time::Duration::from_millis(200),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let a = free_port().ok();
        let b = free_port().ok();
        assert!(a.is_some() && b.is_some());
        assert_ne!(a, b);
        // A port already handed out is not given again even when preferred.
        let c = a.and_then(|a| pick(Some(a)).ok());
        assert_ne!(c, a);
    }

    #[test]
    fn a_busy_preferred_port_is_replaced() {
        let l = TcpListener::bind("127.0.0.1:0").ok();
        let busy = l
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        assert!(busy.is_some_and(|p| !is_free(p) && is_listening(p)));
        assert_ne!(pick(busy).ok(), busy);
    }
}
