//! Giving memory back to the system after many clients left: every allocator keeps some of
//! the pages its threads freed, so a pooler that once held 10,000 clients would keep their memory.

/// Clients that must have left since the last trim (and at least a quarter of the most seen)
/// before the allocator is asked to return free pages.
const LEFT: usize = 1000;

/// The janitor's record of the most clients seen since the last trim.
#[derive(Debug, Default)]
pub struct Trim {
    high: usize,
}

impl Trim {
    /// Called on each janitor pass with the number of clients; trims (and says so) when at
    /// least 1,000 clients, and at least a quarter of the most seen, left since the last trim.
    pub fn pass(&mut self, clients: usize) -> bool {
        self.high = self.high.max(clients);
        let left = self.high - clients;
        if left < LEFT || left * 4 < self.high {
            return false;
        }
        self.high = clients;
        release_free_memory();
        true
    }
}

/// Returns the free pages of the allocator compiled into the binary to the system: glibc's
/// `malloc_trim` (every arena), jemalloc's purge of every arena, mimalloc's forced collection.
/// The binary's `#[global_allocator]` (src/main.rs) follows the same Cargo features.
fn release_free_memory() {
    #[cfg(feature = "jemalloc")]
    {
        let rc = purge_jemalloc();
        if rc != 0 {
            tracing::warn!(errno = rc, "jemalloc arena purge failed");
        }
    }
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect takes no pointer; it only walks mimalloc's own heaps and segments.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(
        not(feature = "jemalloc"),
        not(feature = "mimalloc"),
        target_os = "linux",
        target_env = "gnu"
    ))]
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena's unused dirty pages go back to the system
/// now instead of after jemalloc's decay time (10 s, and only when the arena is used again).
/// Returns mallctl's result: 0, or an errno value.
#[cfg(feature = "jemalloc")]
fn purge_jemalloc() -> i32 {
    // 4096 is MALLCTL_ARENAS_ALL in jemalloc 5 (jemalloc/jemalloc_macros.h).
    const NAME: &[u8] = b"arena.4096.purge\0";
    // SAFETY: the name is NUL-terminated; a void control reads and writes nothing (null
    // pointers and zero length are its documented calling form).
    unsafe {
        tikv_jemalloc_sys::mallctl(
            NAME.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Trim;

    #[test]
    fn trims_only_after_many_clients_left() {
        let mut t = Trim::default();
        assert!(!t.pass(500));
        assert!(!t.pass(10_000));
        assert!(!t.pass(9_500), "500 left: not enough");
        assert!(!t.pass(8_000), "2,000 left but under a quarter of 10,000");
        assert!(t.pass(7_000), "3,000 left, over a quarter");
        assert!(!t.pass(7_000), "nothing left since the trim");
        assert!(!t.pass(6_500));
        assert!(t.pass(0), "7,000 left");
        assert!(!t.pass(900), "few clients: never");
        assert!(!t.pass(0));
    }

    #[cfg(feature = "jemalloc")]
    #[test]
    fn jemalloc_accepts_the_purge_of_every_arena() {
        assert_eq!(super::purge_jemalloc(), 0, "mallctl arena.4096.purge");
    }
}
