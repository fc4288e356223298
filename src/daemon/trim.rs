//! Giving memory back to the system after many clients left: glibc keeps the pages its
//! threads' arenas freed, so a pooler that once held 10,000 clients would keep their memory.

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

/// Returns the allocator's free pages to the system (every glibc arena; a no-op elsewhere).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
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
}
