//! systemd integration: socket activation (LISTEN_FDS), sd_notify (READY,
//! STATUS, WATCHDOG, STOPPING) and logging to the journal.
//!
//! Everything is a no-op outside systemd: `NOTIFY_SOCKET`, `LISTEN_FDS` and
//! `JOURNAL_STREAM` are unset there.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use super::Shared;

/// The listening socket passed by systemd, if any (the first of LISTEN_FDS).
pub fn activated_listener() -> std::io::Result<Option<UnixListener>> {
    if std::env::var_os("LISTEN_FDS").is_none() {
        return Ok(None);
    }
    let mut fds = sd_notify::listen_fds()?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if fds.len() > 0 {
        log::warn!("systemd passed more than one socket; using the first");
    }
    // SAFETY: systemd hands us ownership of fds 3.. (LISTEN_PID checked by
    // listen_fds, which also unsets the variables and sets CLOEXEC).
    #[allow(unsafe_code)]
    let l = unsafe { UnixListener::from_raw_fd(fd) };
    Ok(Some(l))
}

fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(states) {
            log::warn!("sd_notify: {e}");
        }
    }
}

/// Tell systemd we are ready, with a status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Ping the watchdog at half its period while the camera thread is alive
/// (it updates its heartbeat at least every frame or back-off step) and the
/// gallery answers.
pub fn spawn_watchdog(sh: Arc<Shared>) -> std::io::Result<()> {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return Ok(());
    };
    let every = (period / 2).max(Duration::from_millis(100));
    log::info!("systemd watchdog every {every:?}");
    crate::crash::spawn("watchdog", 256 << 10, move || loop {
            std::thread::sleep(every);
            let camera_alive = sh.hub.heartbeat().elapsed() < Duration::from_secs(60);
            let gallery_ok = sh.active().gallery.counts().is_ok();
            if camera_alive && gallery_ok {
                notify(&[NotifyState::Watchdog]);
            } else {
                log::error!(
                    "health check failed (camera thread alive: {camera_alive}, gallery: {gallery_ok}); not pinging the watchdog"
                );
            }
        })
        .map(|_| ())
}

/// Log to the journal when systemd connected stderr to it (JOURNAL_STREAM):
/// each line gets a `<N>` priority prefix that journald understands; plain
/// stderr with timestamps otherwise. `RUST_LOG` filters as usual (default info).
pub fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    let mut b = env_logger::Builder::from_env(env);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.format(|f, r| {
            let prio = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(f, "<{prio}>{}", r.args())
        });
    }
    let _ = b.try_init();
}
