//! The pooler's life cycle: signals, reload, the three shutdowns, systemd notifications, and
//! the zero-downtime hand-over of the listening sockets to a new process.
//!
//! | signal / command | effect |
//! |---|---|
//! | SIGHUP, `RELOAD` | re-read the file; an invalid one is logged and the old one kept |
//! | SIGTERM, `SHUTDOWN WAIT_FOR_CLIENTS` | stop accepting; each client is closed at its next transaction boundary (idle ones at once; after a hand-over, one that has not run a transaction yet is closed after its first); after `shutdown_timeout` the rest are closed |
//! | SIGINT, `SHUTDOWN WAIT_FOR_SERVERS` | stop accepting; hold new transactions; exit once no server connection is checked out (or after `shutdown_timeout`) |
//! | SIGQUIT, `SHUTDOWN` | exit now |
//! | SIGUSR2 | hand-over: start a new process (the binary now at the same path) that inherits the listening sockets; once it serves, it sends this one SIGTERM |
//!
//! The hand-over passes the very same listening socket (not a second SO_REUSEPORT socket), so
//! no connection attempt can land in a queue that is about to close.

use super::reload;
use crate::admin::{Operations, ShutdownMode};
use crate::backend::Backend;
use crate::config::Config;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Environment variable naming the inherited sockets: `listen:FD[,metrics:FD]`.
const FDS_ENV: &str = "PGSLUICE_INHERITED_FDS";
/// Environment variable with the pid of the process handing over.
const PARENT_ENV: &str = "PGSLUICE_HANDOVER_FROM";

/// Shutdown state shared by signals, the console and the serve loop.
pub struct Lifecycle {
    path: PathBuf,
    ctx: Arc<Backend>,
    /// Cancelled to stop accepting (and the background tasks).
    pub stop: CancellationToken,
    /// Cancelled to stop waiting for clients and exit now.
    now: CancellationToken,
    mode: Mutex<Option<ShutdownMode>>,
    /// Raw descriptors of the listening sockets, for a hand-over.
    fds: Mutex<Vec<(&'static str, RawFd)>>,
}

impl Lifecycle {
    /// State for the daemon of the configuration at `path`.
    pub fn new(path: PathBuf, ctx: Arc<Backend>, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            path,
            ctx,
            stop,
            now: CancellationToken::new(),
            mode: Mutex::new(None),
            fds: Mutex::new(Vec::new()),
        })
    }

    /// Records a listening socket that a hand-over passes on.
    pub fn add_fd(&self, name: &'static str, fd: RawFd) {
        if let Ok(mut f) = self.fds.lock() {
            f.push((name, fd));
        }
    }

    fn mode(&self) -> Option<ShutdownMode> {
        self.mode.lock().ok().and_then(|m| *m)
    }

    /// Begins a shutdown; a later, more urgent one overrides an earlier one.
    pub fn begin(&self, mode: ShutdownMode) {
        if let Ok(mut m) = self.mode.lock() {
            let urgent = |x: ShutdownMode| match x {
                ShutdownMode::Immediate => 0,
                ShutdownMode::WaitForServers => 1,
                ShutdownMode::WaitForClients => 2,
            };
            if m.is_some_and(|old| urgent(old) <= urgent(mode)) {
                return;
            }
            *m = Some(mode);
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!(?mode, "shutdown");
        match mode {
            ShutdownMode::Immediate => self.now.cancel(),
            ShutdownMode::WaitForClients => {
                self.ctx.shutting_down.store(true, Ordering::Release);
                for c in self.ctx.clients.all() {
                    c.request_close(self.ctx.shutdown_reason(&c));
                }
            }
            ShutdownMode::WaitForServers => {
                self.ctx.shutting_down.store(true, Ordering::Release);
                self.ctx.gate.pause();
            }
        }
        self.stop.cancel();
    }

    /// After the accept loops stopped: waits as the shutdown mode says, bounded by
    /// `shutdown_timeout`, then shuts the pools.
    pub async fn finish(&self, tracker: &TaskTracker) {
        tracker.close();
        let timeout = self.ctx.config().pooler.shutdown_timeout;
        let wait = async {
            match self.mode() {
                Some(ShutdownMode::WaitForServers) => self.servers_released().await,
                Some(ShutdownMode::Immediate) => {}
                _ => tracker.wait().await,
            }
        };
        tokio::select! {
            _ = self.now.cancelled() => {}
            r = tokio::time::timeout(timeout, wait) => if r.is_err() {
                tracing::warn!(?timeout, "shutdown_timeout: closing the remaining clients");
            },
        }
        for p in self.ctx.pools.all() {
            p.shut();
        }
    }

    async fn servers_released(&self) {
        loop {
            if self.ctx.pools.all().iter().all(|p| p.active() == 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts a new process that inherits the listening sockets (SIGUSR2).
    fn hand_over(&self) -> Result<(), String> {
        if self.mode().is_some() {
            return Err("already shutting down".into());
        }
        if self.ctx.handing_over.load(Ordering::Acquire) {
            return Err("a hand-over is already under way".into());
        }
        if self.ctx.config().pooler.unix_socket_dir.is_some() {
            return Err(
                "unix_socket_dir is set: its socket is not handed over; use so_reuseport \
                        and start the new process by hand"
                    .into(),
            );
        }
        let fds = self.fds.lock().map(|f| f.clone()).unwrap_or_default();
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // After the binary was replaced on disk, /proc/self/exe reads "PATH (deleted)".
        let exe = PathBuf::from(
            exe.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string(),
        );
        let spec: Vec<String> = fds.iter().map(|(n, fd)| format!("{n}:{fd}")).collect();
        for (_, fd) in &fds {
            fcntl(*fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| e.to_string())?;
        }
        let spawned = tokio::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(FDS_ENV, spec.join(","))
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .spawn();
        for (_, fd) in &fds {
            let _ = fcntl(*fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
        let mut child = spawned.map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        tracing::info!(pid = child.id(), exe = %exe.display(), "hand-over: new process started");
        self.ctx.handing_over.store(true, Ordering::Release);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                tracing::warn!(%status, "hand-over: the new process exited");
            }
            ctx.handing_over.store(false, Ordering::Release);
        });
        Ok(())
    }
}

impl Operations for Lifecycle {
    fn reload(&self) -> Result<(), String> {
        reload(&self.path, &self.ctx).map_err(|e| e.to_string())
    }

    fn install(&self, config: Config) -> Result<(), String> {
        super::install(&self.ctx, config).map_err(|e| e.to_string())
    }

    fn shutdown(&self, mode: ShutdownMode) {
        self.begin(mode);
    }
}

/// HUP reloads; TERM, INT and QUIT shut down; USR2 hands the sockets over.
pub async fn signals(life: Arc<Lifecycle>) {
    let kinds = [
        SignalKind::hangup(),
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::quit(),
        SignalKind::user_defined2(),
    ];
    let mut streams = Vec::new();
    for k in kinds {
        match signal(k) {
            Ok(s) => streams.push(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return;
            }
        }
    }
    let [hup, term, int, quit, usr2] = &mut streams[..] else {
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Err(e) = life.reload() {
                    tracing::error!(error = %e, "reload refused; keeping the old configuration");
                }
            }
            _ = term.recv() => life.begin(ShutdownMode::WaitForClients),
            _ = int.recv() => life.begin(ShutdownMode::WaitForServers),
            _ = quit.recv() => life.begin(ShutdownMode::Immediate),
            _ = usr2.recv() => if let Err(e) = life.hand_over() {
                tracing::error!(error = %e, "hand-over refused");
            },
        }
    }
}

/// A listening socket inherited from the process handing over, if it matches `want`.
pub fn inherited(name: &str, want: std::net::SocketAddr) -> Option<std::net::TcpListener> {
    let spec = std::env::var(FDS_ENV).ok()?;
    let fd: RawFd = spec
        .split(',')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix(':')?.parse().ok())?;
    // The descriptor must be an open socket: a forged variable must not make us adopt (and
    // later close) an unrelated file.
    let st = nix::sys::stat::fstat(fd).ok()?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFSOCK {
        return None;
    }
    // SAFETY: the previous process passed this descriptor to us for exactly this use, it is
    // an open socket (fstat says so) and nothing else in this process owns it.
    let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    match l.local_addr() {
        Ok(a) if a == want => {
            let _ = l.set_nonblocking(true);
            Some(l)
        }
        _ => None,
    }
}

/// Tells systemd the daemon is ready and, after a hand-over, that this process is now the
/// main one and the previous one may drain.
pub fn notify_ready() {
    let parent = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    let pid = std::process::id();
    let mut states = vec![sd_notify::NotifyState::Ready];
    if parent.is_some() {
        states.insert(0, sd_notify::NotifyState::MainPid(pid));
    }
    let _ = sd_notify::notify(&states);
    if let Some(ppid) = parent {
        tracing::info!(
            from = ppid,
            "hand-over: serving; asking the previous process to drain"
        );
        if let Err(e) = kill(Pid::from_raw(ppid), Signal::SIGTERM) {
            tracing::warn!(error = %e, "hand-over: cannot signal the previous process");
        }
    }
}

/// Tells systemd a reload began and ended (`Type=notify-reload` needs both).
pub fn notify_reloading(done: bool) {
    let states = if done {
        vec![sd_notify::NotifyState::Ready]
    } else {
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(t) => vec![sd_notify::NotifyState::Reloading, t],
            Err(_) => vec![sd_notify::NotifyState::Reloading],
        }
    };
    let _ = sd_notify::notify(&states);
}
