//! Networking below the sessions: the accept loop and whole-frame reads for slow paths.

pub mod frame_io;
pub mod listener;
