//! Password hashing at login, so that it tells nothing and stalls nobody: PBKDF2 runs on the
//! blocking pool, at most one per core at once (more logins wait for a slot); every SCRAM
//! login costs exactly one PBKDF2 whatever the user (plain password, stored SCRAM secret,
//! MD5 secret or unknown); and the salt of plain-password and unknown users is derived from a
//! key and the user name, so it is the same at every attempt and looks alike for both.
//!
//! The key is derived from the first line of `[control] secret_file` when that file is
//! readable at start (salts then survive restarts), else drawn at random for the process.

use super::{LoginError, SqlState};
use crate::auth::{spend_pbkdf2, verify_password, ScramServer, Secret};
use crate::config::ControlConfig;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

static SALT_KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Derives the salt key from the control secret when there is one (call once at start; a
/// later call changes nothing). Without it, the first login draws a random key.
pub fn init_salt_key(control: &ControlConfig) {
    let Some(secret) = control
        .secret_file
        .as_deref()
        .and_then(|p| crate::net::secret::read(p).ok())
        .and_then(|s| s.into_iter().next())
    else {
        return;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&secret) else {
        return;
    };
    mac.update(b"pgsluice scram salt key");
    let _ = SALT_KEY.set(mac.finalize().into_bytes().into());
}

fn salt_key() -> &'static [u8; 32] {
    SALT_KEY.get_or_init(|| rand::thread_rng().gen())
}

fn slots() -> &'static Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS.get_or_init(|| Arc::new(Semaphore::new(max_concurrent())))
}

/// How many PBKDF2 computations run at once: one per core, at least two.
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Runs `f` on the blocking pool once a slot is free.
pub async fn offload<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LoginError> {
    let busy = || {
        LoginError::fatal(
            SqlState::TooManyConnections,
            "authentication is unavailable: shutting down",
        )
    };
    let permit = slots().clone().acquire_owned().await.map_err(|_| busy())?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .map_err(|_| busy())
}

/// The SCRAM server side for `user`, built off the async workers. A plain password gets the
/// user's stable salt; a stored SCRAM secret is used as is; an MD5 secret (which cannot do
/// SCRAM) or no secret gets a mock that always fails the same way. Each costs one PBKDF2.
pub async fn scram_server(secret: Option<Secret>, user: &str) -> Result<ScramServer, LoginError> {
    let user = user.to_owned();
    offload(move || match secret {
        Some(Secret::Plain(pw)) => ScramServer::from_password_for(&pw, &user, salt_key()),
        Some(Secret::Scram(s)) => {
            spend_pbkdf2(crate::auth::scram::DEFAULT_ITERATIONS);
            ScramServer::new(&s)
        }
        Some(Secret::Md5(_)) | None => {
            spend_pbkdf2(crate::auth::scram::DEFAULT_ITERATIONS);
            ScramServer::mock(&user, salt_key())
        }
    })
    .await
}

/// Checks a cleartext password off the async workers; without a secret it still spends a
/// PBKDF2 and says no. An empty password never matches.
pub async fn check_cleartext(
    secret: Option<Secret>,
    user: &str,
    password: Vec<u8>,
) -> Result<bool, LoginError> {
    let user = user.to_owned();
    offload(move || match &secret {
        Some(s) if !password.is_empty() => verify_password(s, &user, &password),
        _ => {
            spend_pbkdf2(crate::auth::scram::DEFAULT_ITERATIONS);
            false
        }
    })
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_one_pbkdf2_per_core_runs_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4 * max_concurrent())
            .map(|_| {
                let (running, peak) = (running.clone(), peak.clone());
                tokio::spawn(offload(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak >= 2, "ran in parallel: {peak}");
        assert!(peak <= max_concurrent(), "{peak} > {}", max_concurrent());
    }

    #[tokio::test]
    async fn plain_and_unknown_users_get_stable_salts_of_one_shape() {
        let salt_of = |s: &ScramServer| (s.secret().salt.clone(), s.secret().iterations);
        let plain = || Some(Secret::Plain("pw".into()));
        let a1 = salt_of(&scram_server(plain(), "alice").await.unwrap());
        let a2 = salt_of(&scram_server(plain(), "alice").await.unwrap());
        let g1 = salt_of(&scram_server(None, "ghost").await.unwrap());
        let g2 = salt_of(&scram_server(None, "ghost").await.unwrap());
        let m = salt_of(
            &scram_server(Some(Secret::parse(&crate::auth::md5_hex("pw", "m"))), "m")
                .await
                .unwrap(),
        );
        assert_eq!(a1, a2, "stable for a plain-password user");
        assert_eq!(g1, g2, "stable for an unknown user");
        assert_ne!(a1.0, g1.0, "per user");
        assert_eq!((a1.0.len(), a1.1), (g1.0.len(), g1.1), "same shape");
        assert_eq!(
            (m.0.len(), m.1),
            (g1.0.len(), g1.1),
            "an MD5 user looks unknown"
        );
        assert!(!check_cleartext(plain(), "alice", Vec::new()).await.unwrap());
        assert!(check_cleartext(plain(), "alice", b"pw".to_vec())
            .await
            .unwrap());
        assert!(!check_cleartext(None, "ghost", b"pw".to_vec())
            .await
            .unwrap());
    }
}
