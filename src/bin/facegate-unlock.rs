//! `facegate-unlock`: the PAM-side helper, run by pam_exec.
//!
//! Exit status: 0 unlock, 1 deny, 2 daemon unavailable (or timed out),
//! 3 the daemon speaks a protocol this helper does not, 4 usage error.
//! It never blocks a login for longer than --timeout-ms.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Ask facegated whether the user logging in is in front of the camera.
///
/// Meant for pam_exec: the user comes from PAM_USER (or --user). Exit status
/// 0 means unlock; anything else means fall through to the next PAM module
/// (1 deny, 2 daemon unavailable or timed out, 3 protocol mismatch, 4 usage).
/// PAM line (see README.md):
///   auth sufficient pam_exec.so quiet /usr/bin/facegate-unlock
#[derive(Parser)]
#[command(name = "facegate-unlock", version)]
struct Args {
    /// User to verify (default: $PAM_USER).
    #[arg(long)]
    user: Option<String>,
    /// The daemon's socket.
    #[arg(long, default_value = "/run/facegate/facegate.sock")]
    socket: PathBuf,
    /// Give up after this long, whatever the daemon is doing.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(user) = args
        .user
        .or_else(|| std::env::var("PAM_USER").ok())
        .filter(|u| !u.is_empty())
    else {
        eprintln!("facegate-unlock: no user (set PAM_USER or pass --user)");
        return ExitCode::from(4);
    };
    let stream = match UnixStream::connect(&args.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "facegate-unlock: facegated is not reachable at {}: {e}",
                args.socket.display()
            );
            return ExitCode::from(2);
        }
    };
    let timeout = Some(Duration::from_millis(args.timeout_ms.max(1)));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return ExitCode::from(2);
    }
    // The request/response protocol (docs/PROTOCOL.md) arrives with the
    // daemon's socket service; until then no daemon can answer for `user`.
    eprintln!("facegate-unlock: cannot verify {user}: this helper predates the daemon protocol");
    ExitCode::from(3)
}
