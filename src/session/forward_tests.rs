//! Sans-IO tests of the forwarder's scans: counters that cannot wrap, messages read whole only
//! up to `max_inspected_message`, and what counts as a message in progress.

use super::*;
use crate::proto::builders;
use crate::session::prepared::Registry;
use crate::session::prepared_flow::Limits;
use std::sync::Arc;

fn tracked(max_inspected: usize) -> Forwarder {
    let mut f = Forwarder::new(1 << 30, false, true);
    f.max_inspected = max_inspected;
    let limits = Limits {
        per_server: 10,
        per_client: 10,
        total: 10,
    };
    f.flow = Some(Box::new(Flow::new(Arc::new(Registry::default()), limits)));
    f
}

fn pipe(bytes: &[u8]) -> Pipe {
    let mut p = Pipe::default();
    p.preload(BytesMut::from(bytes));
    p
}

fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&i32::try_from(len).unwrap().to_be_bytes());
    m
}

#[test]
fn outstanding_cannot_wrap() {
    assert_eq!(more_outstanding(7).unwrap(), 8);
    assert!(more_outstanding(u32::MAX).is_err());
    let mut f = tracked(1024);
    let flow = f.flow.as_deref_mut().unwrap();
    flow.skipped_requests = 2;
    assert_eq!(less_outstanding(5, flow).unwrap(), 3);
    assert_eq!(flow.skipped_requests, 0, "taken");
    flow.skipped_requests = 2;
    let e = less_outstanding(1, flow).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn a_sync_past_u32_max_in_flight_is_refused() {
    let mut sync = BytesMut::new();
    builders::sync(&mut sync);
    for mut f in [Forwarder::new(1 << 30, false, true), tracked(1024)] {
        f.outstanding = u32::MAX - 1;
        let (mut c2s, mut s2c) = (pipe(&sync), Pipe::default());
        f.scan_client(&mut c2s, &mut s2c).unwrap();
        assert_eq!(f.outstanding, u32::MAX);
        let (mut c2s, mut s2c) = (pipe(&sync), Pipe::default());
        let e = f.scan_client(&mut c2s, &mut s2c).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(f.outstanding, u32::MAX, "unchanged by the refused Sync");
    }
}

fn capacity(p: &Pipe) -> usize {
    p.buf.as_ref().map_or(0, |b| b.capacity())
}

#[test]
fn a_named_parse_over_the_limit_is_refused_before_any_allocation() {
    let mut f = tracked(4096);
    let mut m = header(b'P', (1 << 30) - 64);
    m.extend_from_slice(b"s1\0select ");
    let (mut c2s, mut s2c) = (pipe(&m), Pipe::default());
    let e = f.scan_client(&mut c2s, &mut s2c).unwrap_err();
    let o = Oversized::from_io(&e).expect("an Oversized error");
    assert_eq!((o.tag, o.len, o.limit), ('P', (1 << 30) - 63, 4096));
    assert!(capacity(&c2s) < 64 * 1024, "{}", capacity(&c2s));
    // Within the limit, a partial Parse waits for its body, reserving at most the limit.
    let mut f = tracked(4096);
    let mut m = header(b'P', 4000);
    m.extend_from_slice(b"s1\0select ");
    let (mut c2s, mut s2c) = (pipe(&m), Pipe::default());
    f.scan_client(&mut c2s, &mut s2c).unwrap();
    assert_eq!(c2s.ready, 0);
    assert!(c2s.awaits_rest());
}

#[test]
fn a_large_unnamed_parse_or_bind_streams_after_its_names() {
    for (tag, head) in [(b'P', &b"\0sel"[..]), (b'B', &b"\0\0\0\0"[..])] {
        let mut f = tracked(1024);
        let total = 1 << 20;
        let mut m = header(tag, total - 1);
        m.extend_from_slice(head);
        m.extend_from_slice(&[b'x'; 100]);
        let (mut c2s, mut s2c) = (pipe(&m), Pipe::default());
        f.scan_client(&mut c2s, &mut s2c).unwrap();
        assert_eq!(c2s.ready, m.len(), "everything that arrived is decided");
        assert_eq!(c2s.stream_left, total - m.len());
        // Once written out, the pipe waits for the rest of the message.
        assert!(!c2s.awaits_rest());
        c2s.buf.as_mut().unwrap().clear();
        c2s.ready = 0;
        assert!(c2s.awaits_rest());
        assert!(capacity(&c2s) < 64 * 1024);
    }
}

#[test]
fn a_bind_whose_names_do_not_arrive_within_the_limit_is_refused() {
    let mut f = tracked(1024);
    let mut m = header(b'B', 1 << 20);
    m.extend_from_slice(&[b'p'; 2000]);
    let (mut c2s, mut s2c) = (pipe(&m), Pipe::default());
    let e = f.scan_client(&mut c2s, &mut s2c).unwrap_err();
    assert!(Oversized::from_io(&e).is_some());
    // Before the limit is reached, it waits.
    let mut f = tracked(4096);
    let (mut c2s, mut s2c) = (pipe(&m), Pipe::default());
    f.scan_client(&mut c2s, &mut s2c).unwrap();
    assert_eq!(c2s.ready, 0);
}

#[test]
fn server_messages_read_whole_are_bounded() {
    let mut f = Forwarder::new(1 << 30, false, true);
    f.max_inspected = 1024;
    let mut m = header(b'E', 1 << 20);
    m.extend_from_slice(b"SERROR\0");
    let (mut s2c, mut c2s) = (pipe(&m), Pipe::default());
    let e = f.scan_server(&mut s2c, &mut c2s).unwrap_err();
    assert!(Oversized::from_io(&e).is_some());
    // A DataRow of the same size streams.
    let mut m = header(b'D', 1 << 20);
    m.extend_from_slice(&[0; 10]);
    let (mut s2c, mut c2s) = (pipe(&m), Pipe::default());
    f.scan_server(&mut s2c, &mut c2s).unwrap();
    assert_eq!(s2c.ready, m.len());
}

#[test]
fn awaits_rest_means_part_of_a_message() {
    let mut q = BytesMut::new();
    builders::query(&mut q, "select 1");
    for cut in 1..q.len() {
        let p = pipe(&q[..cut]);
        assert!(p.awaits_rest(), "{cut} bytes");
    }
    assert!(!pipe(&q).awaits_rest(), "a whole message");
    assert!(!Pipe::default().awaits_rest(), "nothing");
    let mut p = pipe(&q[..3]);
    p.ready = 3;
    assert!(!p.awaits_rest(), "bytes waiting to be written");
}
