//! Networking below the sessions: the accept loops (TCP and Unix socket), the client stream
//! type and what it shares with the server's (`transport`), logins in progress (capped),
//! whole-frame reads for slow paths, the hardened HTTP loop with the control-plane secret, a
//! guard refusing cleartext password requests on probe connections, and which worker thread the
//! running code is on.

pub mod frame_io;
pub mod http;
pub mod listener;
pub mod no_cleartext;
pub mod pending;
pub mod secret;
pub mod stream;
pub mod transport;
pub mod worker;
