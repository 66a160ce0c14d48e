//! `facegate-unlock`: the PAM-side helper, run by pam_exec.
//!
//! Exit status: 0 unlock, 1 deny, 2 daemon unavailable (or timed out),
//! 3 the daemon speaks a protocol this helper does not, 4 usage error,
//! 5 the daemon refused the request (not allowed, not configured, camera down).
//! It never blocks a login for longer than --timeout-ms (plus connect time,
//! which is immediate on a Unix socket).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use facegate_proto::{
    default_socket_path, stages_line, Client, ClientError, ErrorKind, Request, Response,
};

/// Ask facegated whether the user logging in is in front of the camera.
///
/// Meant for pam_exec: the user comes from PAM_USER (or --user). Exit status
/// 0 means unlock; anything else means fall through to the next PAM module
/// (1 deny, 2 daemon unavailable or timed out, 3 protocol mismatch, 4 usage,
/// 5 refused/error). PAM line (see README.md):
///   auth sufficient pam_exec.so quiet /usr/bin/facegate-unlock
#[derive(Parser)]
#[command(name = "facegate-unlock", version)]
struct Args {
    /// User to verify (default: $PAM_USER).
    #[arg(long)]
    user: Option<String>,
    /// The daemon's socket (default: $FACEGATE_SOCKET, /run/facegate/facegate.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Give up after this long, whatever the daemon is doing.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Print the decision and the per-stage latency.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    if let Some(code) = facegate_docs::generate_if_asked::<Args>() {
        return code;
    }
    let args = Args::parse();
    let Some(user) = args
        .user
        .or_else(|| std::env::var("PAM_USER").ok())
        .filter(|u| !u.is_empty())
    else {
        eprintln!("facegate-unlock: no user (set PAM_USER or pass --user)");
        return ExitCode::from(4);
    };
    let socket = args.socket.unwrap_or_else(default_socket_path);
    // The daemon's own budget is a little shorter than ours, so that it
    // answers "deny" rather than us timing out.
    let budget = args.timeout_ms.max(200);
    let mut client = match Client::connect(&socket, budget) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("facegate-unlock: {e}");
            return ExitCode::from(2);
        }
    };
    let req = Request::Verify {
        user: user.clone(),
        timeout_ms: budget.saturating_sub(150),
    };
    match client.call(&req) {
        Ok(Response::Unlock {
            score,
            frames,
            masked,
            ms,
            stages,
            ..
        }) => {
            if args.verbose {
                println!(
                    "unlock {user}: score {score:.3}, {frames} frames, {} probe, {ms:.0} ms\n  stages: {}",
                    if masked { "masked" } else { "unmasked" },
                    stages_line(&stages)
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Deny {
            reason, best_score, ..
        }) => {
            if args.verbose {
                println!(
                    "deny {user}: {reason:?} (best score {})",
                    best_score.map_or("-".into(), |s| format!("{s:.3}"))
                );
            }
            ExitCode::from(1)
        }
        Ok(Response::Error { kind, message }) => {
            eprintln!("facegate-unlock: facegated: {message}");
            ExitCode::from(if kind == ErrorKind::Version { 3 } else { 5 })
        }
        Ok(other) => {
            eprintln!("facegate-unlock: unexpected answer {other:?}");
            ExitCode::from(3)
        }
        Err(ClientError::Timeout(ms)) => {
            eprintln!("facegate-unlock: no answer within {ms} ms");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("facegate-unlock: {e}");
            ExitCode::from(2)
        }
    }
}
