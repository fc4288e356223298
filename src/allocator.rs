//! The allocator chosen at build time by measurement (docs/benchmarks.md, "Allocator (session
//! 4)"): jemalloc by default, glibc's malloc with `--no-default-features`, mimalloc with
//! `--no-default-features --features mimalloc`. The binary (and the test that measures the
//! janitor's trim) install [`CHOSEN`] as their `#[global_allocator]`; src/daemon/trim.rs
//! returns free memory through the same one.

#[cfg(all(feature = "jemalloc", feature = "mimalloc"))]
compile_error!(
    "features `jemalloc` (the default) and `mimalloc` both choose the global allocator: \
     build mimalloc with `--no-default-features --features mimalloc`"
);

/// The allocator this build uses.
#[cfg(feature = "jemalloc")]
pub type Chosen = tikv_jemallocator::Jemalloc;
/// The allocator this build uses.
#[cfg(feature = "jemalloc")]
pub const CHOSEN: Chosen = tikv_jemallocator::Jemalloc;

/// The allocator this build uses.
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
pub type Chosen = mimalloc::MiMalloc;
/// The allocator this build uses.
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
pub const CHOSEN: Chosen = mimalloc::MiMalloc;

/// The allocator this build uses (the C library's malloc).
#[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
pub type Chosen = std::alloc::System;
/// The allocator this build uses (the C library's malloc).
#[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
pub const CHOSEN: Chosen = std::alloc::System;
