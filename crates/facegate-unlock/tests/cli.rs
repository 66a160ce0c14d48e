//! facegate-unlock as pam_exec runs it, without a daemon (the decisions
//! through a live daemon are in the root package's tests/daemon_e2e.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::process::Command;

fn unlock() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facegate-unlock"));
    c.env_remove("PAM_USER");
    c
}

#[test]
fn help_names_pam_user() {
    let out = unlock().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("PAM_USER"));
}

#[test]
fn no_user_is_a_usage_error() {
    let out = unlock().output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
}

#[test]
fn no_daemon_means_unavailable() {
    let dir = std::env::temp_dir().join(format!("facegate-unlock-test-{}", std::process::id()));
    let out = unlock()
        .args(["--user", "alice", "--timeout-ms", "300", "--socket"])
        .arg(dir.join("absent.sock"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
