//! Networking below the sessions: the accept loops (TCP and Unix socket), the client stream
//! type and what it shares with the server's (`transport`), logins in progress (capped), and
//! whole-frame reads for slow paths.

pub mod frame_io;
pub mod listener;
pub mod pending;
pub mod stream;
pub mod transport;
