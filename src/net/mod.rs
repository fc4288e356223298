//! Networking below the sessions: the accept loops (TCP and Unix socket), the client stream
//! type, and whole-frame reads for slow paths.

pub mod frame_io;
pub mod listener;
pub mod stream;
