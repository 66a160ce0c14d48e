//! systemd integration of the real `facegated`, without systemd: the test
//! plays the service manager's part.
//!
//! * socket activation: the test binds the listening socket and passes it as
//!   fd 3 with LISTEN_FDS=1 and LISTEN_PID set to the daemon's pid (a shell
//!   `exec`s into facegated so the pid is known before it starts); the daemon
//!   must serve on it and not bind its configured path;
//! * sd_notify: NOTIFY_SOCKET is a datagram socket the test reads: READY=1
//!   with a STATUS, WATCHDOG=1 pings at half of WATCHDOG_USEC, STOPPING=1 on
//!   SIGTERM, and an activated socket file is left in place (systemd owns it);
//! * journald: with JOURNAL_STREAM set, every log line carries a `<N>`
//!   syslog priority prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use facegate::protocol::{Client, Request, Response};

#[test]
fn socket_activation_notify_watchdog_and_journal() {
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| dir.path().join(rel);
    std::fs::create_dir(p("cam")).unwrap();
    std::fs::copy(
        common::models_dir().join("photos/skimage/coffee.png"),
        p("cam/frame.png"),
    )
    .unwrap();
    std::fs::write(
        p("config.toml"),
        format!(
            "[daemon]\nsocket = {:?}\nstate_dir = {:?}\n[models]\ndir = {:?}\n\
             [camera]\nkind = \"replay\"\nreplay = [{:?}]\nfps = 10\n\
             [thresholds]\nunmasked = 0.5\nmasked = 0.5\n",
            p("configured.sock").display().to_string(),
            p("state").display().to_string(),
            common::models_dir().display().to_string(),
            p("cam").display().to_string(),
        ),
    )
    .unwrap();

    let listener = UnixListener::bind(p("activated.sock")).unwrap();
    let notify = UnixDatagram::bind(p("notify.sock")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Let the listener survive exec (std opens it close-on-exec).
    let fd = listener.as_raw_fd();
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let move_fd = if fd == 3 {
        String::new()
    } else {
        format!("exec 3<&{fd} {fd}<&-; ")
    };
    let mut daemon = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{move_fd}LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --config \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_facegated"))
        .arg(p("config.toml"))
        .env("NOTIFY_SOCKET", p("notify.sock"))
        .env("WATCHDOG_USEC", "400000")
        .env("JOURNAL_STREAM", "8:4242")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(p("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    drop(listener); // the daemon holds its own copy now
    let log = || std::fs::read_to_string(p("daemon.log")).unwrap_or_default();

    let mut seen: Vec<String> = Vec::new();
    let log_path = p("daemon.log");
    let mut wait_for = |what: &str, within: Duration, daemon: &mut std::process::Child| {
        wait_notify(&notify, &mut seen, what, within, daemon, &log_path)
    };

    let (_, ready) = wait_for("READY=1", Duration::from_secs(90), &mut daemon);
    assert!(
        ready.contains("STATUS="),
        "READY comes with a status line: {ready:?}"
    );
    // It serves on the socket it was given, and did not bind its own.
    let mut c = Client::connect(&p("activated.sock"), 5000).unwrap();
    assert!(matches!(
        c.call(&Request::Status).unwrap(),
        Response::Status(_)
    ));
    drop(c);
    assert!(
        !p("configured.sock").exists(),
        "with socket activation the configured path must stay unused"
    );
    assert!(log().contains("socket activation"), "{}", log());

    // The watchdog is pinged (at half the 400 ms period), repeatedly.
    for _ in 0..3 {
        let (dt, _) = wait_for("WATCHDOG=1", Duration::from_secs(2), &mut daemon);
        assert!(dt < Duration::from_millis(1500), "{dt:?}");
    }

    // SIGTERM: STOPPING=1, clean exit, the activated socket file stays.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for("STOPPING=1", Duration::from_secs(10), &mut daemon);
    let st = daemon.wait().unwrap();
    assert!(st.success(), "{st}: {}", log());
    assert!(
        p("activated.sock").exists(),
        "systemd's socket file removed"
    );

    // Journal format: each line starts with a syslog priority.
    let text = log();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let ok = l.len() > 3
            && l.as_bytes()[0] == b'<'
            && l.as_bytes()[1].is_ascii_digit()
            && l.as_bytes()[2] == b'>';
        assert!(ok, "log line without a journald priority: {l:?}");
    }
    assert!(lines.iter().any(|l| l.starts_with("<6>")), "{text}");
}

/// Read notifications until one has the line `what`; returns how long that
/// took and the message.
fn wait_notify(
    sock: &UnixDatagram,
    seen: &mut Vec<String>,
    what: &str,
    within: Duration,
    daemon: &mut std::process::Child,
    log: &std::path::Path,
) -> (Duration, String) {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        // Exit is looked at before reading, so that everything sent before
        // the exit is read before giving up.
        let exited = daemon.try_wait().ok().flatten();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            seen.push(msg.clone());
            if msg.lines().any(|l| l == what) {
                return (t.elapsed(), msg);
            }
            continue;
        }
        if let Some(st) = exited {
            panic!("facegated exited ({st}) before {what}: {}", log());
        }
        assert!(
            t.elapsed() < within,
            "no {what} within {within:?}; got {seen:?}; log: {}",
            log()
        );
    }
}

/// The unit's settings, `Key=value` lines of its `[Service]` section.
fn service_settings() -> Vec<(String, String)> {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/facegated.service"),
    )
    .unwrap();
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

/// A daemon that dies of a signal (issue 12: SIGSEGV inside tract) or
/// exits with an error is started again by systemd, after a pause, without
/// a start limit that a crash loop could exhaust in seconds.
#[test]
fn the_unit_restarts_a_crashed_daemon() {
    let s = service_settings();
    let get = |k: &str| {
        s.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert!(
        matches!(
            get("Restart"),
            Some("on-failure" | "on-abnormal" | "always")
        ),
        "Restart={:?}",
        get("Restart")
    );
    let sec: f64 = get("RestartSec")
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("RestartSec in seconds");
    assert!((1.0..=30.0).contains(&sec), "RestartSec={sec}");
    // The watchdog also ends a hung daemon (then Restart applies).
    assert!(get("WatchdogSec").is_some());
}
