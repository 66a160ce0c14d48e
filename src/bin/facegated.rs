//! `facegated`: the facegate daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use facegate::daemon::config;
use facegate::daemon::{self, systemd, Overrides};

/// Face unlock daemon: watches a camera, recognises enrolled faces (masked or
/// not) and answers unlock/deny on a Unix socket to the PAM helper
/// (facegate-unlock), the `facegate` CLI and door controllers.
///
/// Configuration: /etc/facegate/config.toml (optional; see README.md).
/// Signals: SIGHUP reloads the config, SIGTERM/SIGINT stop.
#[derive(Parser)]
#[command(name = "facegated", version)]
struct Args {
    /// Config file (default /etc/facegate/config.toml; missing = defaults).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the config (and the model bundles it names), print it, exit.
    #[arg(long)]
    check_config: bool,
    /// Load the models and exit (no socket).
    #[arg(long)]
    self_test: bool,
    /// Override models.dir.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Override daemon.socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Override daemon.state_dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    if let Some(code) = facegate_docs::generate_if_asked::<Args>() {
        return code;
    }
    // First: a fatal signal anywhere later leaves a line on stderr.
    if let Err(e) = facegate::crash::install_fatal_handlers("facegated") {
        eprintln!("facegated: cannot install the fatal-signal reporter: {e}");
    }
    // Before any thread starts: cap glibc's malloc arenas (issue 17 §4,
    // docs/PERFORMANCE.md "Memory"; MALLOC_ARENA_MAX in the environment wins).
    let env_arenas = std::env::var("MALLOC_ARENA_MAX").ok();
    let arenas = facegate::malloc::arenas_for_env(env_arenas.as_deref())
        .map(|n| (n, facegate::malloc::limit_arenas(n)));
    systemd::init_logging();
    match arenas {
        Some((n, true)) => log::debug!("malloc arenas capped at {n}"),
        Some((n, false)) => log::debug!("malloc arenas not capped at {n} (not glibc?)"),
        None => log::debug!("malloc arenas: MALLOC_ARENA_MAX from the environment"),
    }
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("facegated: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let t0 = Instant::now();
    let (path, must_exist) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(config::DEFAULT_PATH), false),
    };
    let o = Overrides {
        models: args.models.clone(),
        socket: args.socket.clone(),
        state_dir: args.state_dir.clone(),
    };
    let cfg = daemon::load_config(&path, must_exist, &o)
        .with_context(|| format!("configuration {}", path.display()))?;
    if args.check_config {
        let checked = daemon::check(&cfg)?;
        println!("{cfg:#?}");
        for b in &checked.bundles {
            println!("bundle {b}");
        }
        for w in &checked.warnings {
            println!("warning: {w}");
        }
        println!("configuration OK");
        return Ok(ExitCode::SUCCESS);
    }
    if args.self_test {
        let checked = daemon::check(&cfg)?;
        for b in &checked.bundles {
            log::info!("self-test: bundle {b}");
        }
        daemon::apply_cpu_policy(&cfg)?;
        // The embedder as the daemon opens it (signature, then model).
        let ((_, _), (b, _)) = daemon::open_bundles(&cfg)?;
        let e = facegate::face::embed::TractEmbedder::from_bundle(&b, &Default::default())?;
        // One embedding on the daemon's inference thread: the kernels the
        // daemon will run, run once, where the daemon runs them.
        let worker = daemon::worker::Inference::new()?;
        let side = facegate::face::embed::Embedder::crop_size(&e);
        let crop = image::RgbImage::from_pixel(side, side, image::Rgb([128, 128, 128]));
        worker
            .run(|| facegate::face::embed::Embedder::embed(&e, &crop))
            .context("self-test embedding")?;
        log::info!(
            "self-test: models verified, loaded and run in {:.0} ms ({})",
            t0.elapsed().as_secs_f64() * 1e3,
            facegate::face::embed::Embedder::name(&e)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (shared, listener, socket_path) = daemon::start(cfg, path, must_exist)?;
    spawn_signals(shared.clone(), socket_path.clone())?;
    systemd::spawn_watchdog(shared.clone())?;
    let ready = format!(
        "ready in {:.0} ms: {} users, socket {}",
        t0.elapsed().as_secs_f64() * 1e3,
        shared
            .active()
            .gallery
            .counts()
            .map(|c| c.users)
            .unwrap_or(0),
        socket_path
            .as_ref()
            .map_or("(from systemd)".to_string(), |p| p.display().to_string())
    );
    log::info!("{ready}");
    systemd::ready(&ready);
    daemon::server::serve(shared, listener);
    Ok(ExitCode::SUCCESS)
}

fn spawn_signals(shared: std::sync::Arc<daemon::Shared>, socket: Option<PathBuf>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
    facegate::crash::spawn("signals", 256 << 10, move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                systemd::status("reloading");
                shared.reload();
                systemd::status("ready (reloaded)");
                continue;
            }
            log::info!("signal {sig}: stopping");
            systemd::stopping();
            if let Some(p) = &socket {
                let _ = std::fs::remove_file(p);
            }
            // Every gallery change is already fsynced; nothing to flush.
            std::process::exit(0);
        }
    })?;
    Ok(())
}
