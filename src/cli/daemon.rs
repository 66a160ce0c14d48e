//! The `facegate` subcommands that talk to the daemon (enroll, list, remove,
//! verify, identify, status, watch, export, import).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};

use crate::protocol::{
    default_socket_path, liveness_line, stages_line, Client, EnrollSource, InlineImage, Request,
    Response,
};

#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// The daemon's socket (default: $FACEGATE_SOCKET, /run/facegate/facegate.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DaemonCmd {
    /// Enrol a user from image files, or from the daemon's camera with --camera.
    Enroll {
        user: String,
        /// Image files (one face each).
        files: Vec<PathBuf>,
        /// Capture from the camera instead.
        #[arg(long)]
        camera: bool,
        /// Good frames to capture with --camera (0: the daemon's enroll.frames).
        #[arg(long, default_value_t = 0)]
        frames: u32,
        /// Unix uid the user logs in as (default: looked up by name).
        #[arg(long)]
        uid: Option<u32>,
        #[arg(long, default_value_t = 20_000)]
        timeout_ms: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// List enrolled users.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a user and their templates.
    Remove {
        user: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Is USER in front of the camera? Exit 0 unlock, 1 deny, 2 error.
    Verify {
        /// Default: the invoking user.
        user: Option<String>,
        #[arg(long, default_value_t = 4000)]
        timeout_ms: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Who is in front of the camera? Exit 0 recognised, 1 nobody known, 2 error.
    Identify {
        #[arg(long, default_value_t = 4000)]
        timeout_ms: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Daemon, camera and gallery state.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Print door events; with --exec, run a command per unlock (like a door relay).
    Watch {
        /// Shell command run per event, with FACEGATE_USER, FACEGATE_SCORE,
        /// FACEGATE_MASKED in its environment.
        #[arg(long, value_name = "CMD")]
        exec: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Write the gallery to a backup file.
    Export {
        out: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Measure where the IR camera sees what the colour camera sees, for
    /// [liveness.ir] scale/offset: stand in front of both cameras, alone,
    /// and move slowly across the view (and nearer/farther) while it runs.
    /// Prints the lines to put in the config (docs/LIVENESS.md).
    CalibrateIr {
        /// Colour frames to look at.
        #[arg(long, default_value_t = 40)]
        frames: u32,
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Re-embed every user's kept enrolment crops with the daemon's current
    /// embedder ([enroll] keep_crops), after a model upgrade. Exit 0 when
    /// everybody was re-enrolled, 1 when some users must enrol again (named).
    Reenroll {
        /// Per user and capture this takes an embedding or three: allow time.
        #[arg(long, default_value_t = 600_000)]
        timeout_ms: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Load a backup file into the daemon's gallery.
    Import {
        file: PathBuf,
        /// Merge into a non-empty gallery (default: the gallery must be empty).
        #[arg(long)]
        merge: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

fn connect(conn: &Conn, timeout_ms: u64) -> Result<Client> {
    let path = conn.socket.clone().unwrap_or_else(default_socket_path);
    Ok(Client::connect(&path, timeout_ms)?)
}

fn decision(r: &Response) -> (String, u8) {
    match r {
        Response::Unlock {
            user,
            score,
            frames,
            masked,
            ms,
            stages,
            liveness,
        } => (
            format!(
                "UNLOCK {user}: score {score:.3} over {frames} frames, probe {}, {ms:.0} ms\n  stages: {}\n  {}",
                if *masked { "masked" } else { "unmasked" },
                stages_line(stages),
                liveness_line(liveness)
            ),
            0,
        ),
        Response::Deny {
            reason,
            best_score,
            frames,
            ms,
            retry_after_ms,
            liveness,
        } => (
            format!(
                "DENY ({reason:?}): best score {}, {frames} face frames, {ms:.0} ms{}{}",
                best_score.map_or("-".into(), |s| format!("{s:.3}")),
                retry_after_ms.map_or(String::new(), |r| format!(", retry after {r} ms")),
                if liveness.is_empty() {
                    String::new()
                } else {
                    format!("\n  {}", liveness_line(liveness))
                }
            ),
            1,
        ),
        Response::Error { kind, message } => (format!("error ({kind:?}): {message}"), 2),
        other => (format!("unexpected answer: {other:?}"), 2),
    }
}

fn expect_ok(r: Response) -> Result<Response> {
    if let Response::Error { kind, message } = &r {
        bail!("facegated: {kind:?}: {message}");
    }
    Ok(r)
}

fn print(conn: &Conn, r: &Response, human: impl FnOnce() -> String) -> Result<()> {
    if conn.json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}

/// Run one daemon subcommand.
pub fn run(cmd: DaemonCmd) -> Result<ExitCode> {
    match cmd {
        DaemonCmd::Verify {
            user,
            timeout_ms,
            conn,
        } => {
            let user = match user {
                Some(u) => u,
                None => nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .context("cannot tell who you are; pass USER")?,
            };
            let mut c = connect(&conn, timeout_ms + 2000)?;
            let r = c.call(&Request::Verify { user, timeout_ms })?;
            let (text, code) = decision(&r);
            print(&conn, &r, || text)?;
            Ok(ExitCode::from(code))
        }
        DaemonCmd::Identify { timeout_ms, conn } => {
            let mut c = connect(&conn, timeout_ms + 2000)?;
            let r = c.call(&Request::Identify { timeout_ms })?;
            let (text, code) = decision(&r);
            print(&conn, &r, || text)?;
            Ok(ExitCode::from(code))
        }
        DaemonCmd::Enroll {
            user,
            files,
            camera,
            frames,
            uid,
            timeout_ms,
            conn,
        } => {
            let source = if camera {
                if !files.is_empty() {
                    bail!("give image files or --camera, not both");
                }
                eprintln!("enrolling {user} from the camera: look at it…");
                EnrollSource::Camera { frames, timeout_ms }
            } else {
                if files.is_empty() {
                    bail!("give image files to enrol from, or --camera");
                }
                let mut images = Vec::new();
                for (i, f) in files.iter().enumerate() {
                    eprintln!("[{}/{}] reading {}", i + 1, files.len(), f.display());
                    let bytes =
                        std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                    images.push(InlineImage {
                        name: f.display().to_string(),
                        data_b64: base64::engine::general_purpose::STANDARD.encode(bytes),
                    });
                }
                eprintln!("sending {} images to facegated for {user}…", images.len());
                EnrollSource::Images { images }
            };
            let uid = uid.or_else(|| {
                nix::unistd::User::from_name(&user)
                    .ok()
                    .flatten()
                    .map(|u| u.uid.as_raw())
            });
            let mut c = connect(&conn, timeout_ms + 60_000)?;
            let r = expect_ok(c.call(&Request::Enroll { user, uid, source })?)?;
            print(&conn, &r, || match &r {
                Response::Enrolled(e) => {
                    let mut s = format!(
                        "enrolled {}: {} unmasked + {} synthetic-masked + {} periocular templates",
                        e.user, e.unmasked, e.synthetic_masked, e.periocular
                    );
                    for why in &e.rejected {
                        s.push_str(&format!("\n  rejected {why}"));
                    }
                    s
                }
                other => format!("{other:?}"),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        DaemonCmd::List { conn } => {
            let r = expect_ok(connect(&conn, 10_000)?.call(&Request::List)?)?;
            print(&conn, &r, || match &r {
                Response::Users { users } => {
                    let mut s = format!(
                        "{:<24} {:>6} {:>8} {:>8} {:>10} {:>8} {:>10} {:>6}  state",
                        "user",
                        "uid",
                        "enabled",
                        "unmasked",
                        "synthetic",
                        "masked",
                        "periocular",
                        "crops"
                    );
                    for u in users {
                        s.push_str(&format!(
                            "\n{:<24} {:>6} {:>8} {:>8} {:>10} {:>8} {:>10} {:>6}  {}",
                            u.name,
                            u.uid.map_or("-".into(), |u| u.to_string()),
                            u.enabled,
                            u.unmasked,
                            u.synthetic_masked,
                            u.masked,
                            u.periocular,
                            if u.kept_crops { "kept" } else { "-" },
                            match (u.must_reenrol, u.kept_crops) {
                                (false, _) => "ok",
                                (true, true) =>
                                    "MUST RE-ENROL (embedder changed; `facegate reenroll` can)",
                                (true, false) => "MUST RE-ENROL (embedder changed; enrol again)",
                            }
                        ));
                    }
                    s
                }
                other => format!("{other:?}"),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        DaemonCmd::Remove { user, conn } => {
            let r = expect_ok(connect(&conn, 10_000)?.call(&Request::Remove { user })?)?;
            print(&conn, &r, || match &r {
                Response::Removed { user, templates } => {
                    format!("removed {user} ({templates} templates)")
                }
                other => format!("{other:?}"),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        DaemonCmd::Status { conn } => {
            let r = expect_ok(connect(&conn, 5_000)?.call(&Request::Status)?)?;
            print(&conn, &r, || {
                match &r {
                Response::Status(s) => format!(
                    "facegated {} (protocol {}), up {:.0} s\nsource: {} — {} ({} frames, {} reopens){}\ngallery: {} users, {} templates\nmodels: detector {}, embedder {}\nthresholds: unmasked {}, masked {}{}\nidentification: {}\nliveness: {}\nclients: {}, door subscribers: {}",
                    s.version, s.protocol, s.uptime_s, s.source, s.source_state, s.frames, s.source_reopens,
                    s.ir_camera.as_ref().map_or(String::new(), |ir| format!(
                        "\nIR camera: {} — {} ({} frames, {} reopens)",
                        ir.source, ir.state, ir.frames, ir.reopens
                    )),
                    s.users, s.templates, s.detector, s.embedder,
                    s.threshold_unmasked.map_or("unset".into(), |t| format!("{t:.3}")),
                    s.threshold_masked.map_or("unset".into(), |t| format!("{t:.3}")),
                    s.threshold_periocular.map_or(String::new(), |t| format!(
                        " (masked probes compared as periocular crops at {t:.3})"
                    )),
                    match (s.identify_unmasked, s.identify_masked) {
                        (Some(u), Some(m)) => format!("unmasked {u:.4}, masked {m:.4} ({})", s.identify_state),
                        _ if s.identify_state.is_empty() => "not reported (a daemon before issue 15)".into(),
                        _ => format!("refused: {}", s.identify_state),
                    },
                    if s.liveness.is_empty() { "not reported (a daemon before issue 15 §3)" } else { &s.liveness },
                    s.clients, s.subscribers
                ) + &if s.must_reenrol.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\nMUST RE-ENROL ({} users, no template made with embedder {}): {}",
                        s.must_reenrol.len(),
                        s.embedder,
                        s.must_reenrol.join(", ")
                    )
                },
                other => format!("{other:?}"),
            }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        DaemonCmd::Watch { exec, conn } => {
            let mut c = connect(&conn, 5_000)?;
            c.send(&Request::Subscribe)?;
            expect_ok(c.recv()?)?;
            eprintln!("watching door events (Ctrl-C to stop)");
            loop {
                let r = c.recv_event()?;
                let Response::Event(ev) = &r else {
                    expect_ok(r)?;
                    continue;
                };
                print(&conn, &r, || {
                    format!(
                        "{} arrived: score {:.3}, {} frames, {}; {}",
                        ev.user,
                        ev.score,
                        ev.frames,
                        if ev.masked { "masked" } else { "unmasked" },
                        liveness_line(&ev.liveness)
                    )
                })?;
                if let Some(cmd) = &exec {
                    let st = std::process::Command::new("/bin/sh")
                        .arg("-c")
                        .arg(cmd)
                        .env("FACEGATE_USER", &ev.user)
                        .env("FACEGATE_SCORE", format!("{:.4}", ev.score))
                        .env("FACEGATE_MASKED", if ev.masked { "1" } else { "0" })
                        // The liveness checks that passed, comma-separated ("" = none ran).
                        .env(
                            "FACEGATE_LIVENESS",
                            ev.liveness
                                .iter()
                                .filter(|c| c.passed)
                                .map(|c| c.check.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        )
                        .status();
                    match st {
                        Ok(s) if s.success() => {}
                        Ok(s) => eprintln!("--exec command exited with {s}"),
                        Err(e) => eprintln!("--exec command failed to start: {e}"),
                    }
                }
            }
        }
        DaemonCmd::Export { out, conn } => {
            let r = expect_ok(connect(&conn, 60_000)?.call(&Request::Export)?)?;
            let Response::Exported { data_b64 } = r else {
                bail!("unexpected answer to export");
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data_b64.as_bytes())
                .context("decoding the export")?;
            let tmp = out.with_extension("tmp");
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
            println!("exported {} bytes to {}", bytes.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        DaemonCmd::Reenroll { timeout_ms, conn } => {
            let r = expect_ok(connect(&conn, timeout_ms)?.call(&Request::Reenroll)?)?;
            print(&conn, &r, || match &r {
                Response::Reenrolled(rep) => {
                    let mut s = format!(
                        "re-enrolled {} users ({} templates) with embedder {}",
                        rep.users.len(),
                        rep.templates,
                        rep.embedder
                    );
                    if !rep.without_crops.is_empty() {
                        s.push_str(&format!(
                            "\nno kept crops, must enrol again: {}",
                            rep.without_crops.join(", ")
                        ));
                    }
                    for f in &rep.failed {
                        s.push_str(&format!("\nfailed (must enrol again): {f}"));
                    }
                    s
                }
                other => format!("{other:?}"),
            })?;
            let complete = matches!(&r, Response::Reenrolled(rep)
                if rep.without_crops.is_empty() && rep.failed.is_empty());
            Ok(if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DaemonCmd::CalibrateIr {
            frames,
            timeout_ms,
            conn,
        } => {
            let r = expect_ok(
                connect(&conn, timeout_ms + 5_000)?
                    .call(&Request::CalibrateIr { frames, timeout_ms })?,
            )?;
            print(&conn, &r, || {
                match &r {
                Response::IrCalibration(c) => format!(
                    "{} frames with one face in both cameras ({} landmarks); fit error {:.1} px rms, {:.1} px worst{}\n\n[liveness.ir]\nscale = [{:.4}, {:.4}]\noffset = [{:.1}, {:.1}]",
                    c.frames,
                    c.points,
                    c.rms_px,
                    c.max_px,
                    if c.rms_px > 10.0 {
                        "\nwarning: a large error (cameras far apart, or another face in view); calibrate again at the usual distance"
                    } else {
                        ""
                    },
                    c.scale[0],
                    c.scale[1],
                    c.offset[0],
                    c.offset[1]
                ),
                other => format!("{other:?}"),
            }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        DaemonCmd::Import { file, merge, conn } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let data_b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let r = expect_ok(connect(&conn, 60_000)?.call(&Request::Import { data_b64, merge })?)?;
            print(&conn, &r, || {
                match &r {
                Response::Imported {
                    users_added,
                    users_kept,
                    templates_added,
                    templates_skipped,
                } => format!("imported: {users_added} users added, {users_kept} kept, {templates_added} templates added, {templates_skipped} skipped"),
                other => format!("{other:?}"),
            }
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
