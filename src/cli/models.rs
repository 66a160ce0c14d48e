//! `facegate models` and `facegate cpu`: the bundles and the CPU features in use.

use crate::bench;
use crate::bundle::sign::{PublicKey, Status, TrustPolicy};
use crate::bundle::{self, archive, Bundle, Kind};
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ModelsArgs {
    #[command(subcommand)]
    cmd: Option<ModelsCmd>,
    #[command(flatten)]
    trust: TrustArgs,
}

#[derive(clap::Subcommand)]
pub(crate) enum ModelsCmd {
    /// Write a bundle as one archive for a device (workstation side):
    /// manifest.toml, manifest.sig if signed, the model (and the periocular model) and SHA256SUMS, in a
    /// gzip-compressed tar (docs/MODELS_SHIPPING.md).
    Pack(PackArgs),
    /// Verify a bundle archive and install it next to the other bundles
    /// (device side): checksums, signature (per the daemon's config), model
    /// against manifest, then one rename. A bad archive changes nothing.
    ///
    /// Then name the bundle in the config ([models] embedder or detector)
    /// and reload the daemon (SIGHUP: `systemctl reload facegated`).
    Install(InstallArgs),
}

#[derive(Args)]
pub(crate) struct PackArgs {
    /// A bundle name under --models, or a bundle folder.
    bundle: String,
    /// The archive to write (default: ./<name>.tar.gz).
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct InstallArgs {
    /// The archive `facegate models pack` wrote.
    archive: PathBuf,
    /// Replace an installed bundle of the same name that differs.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    trust: TrustArgs,
}

#[derive(Args)]
pub(crate) struct TrustArgs {
    /// Judge signatures by this facegated config's [models] trusted_keys and
    /// allow_unsigned (e.g. /etc/facegate/config.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Trust this public key ("ed25519:<base64>", as `models/sign pubkey`
    /// prints it) and require signatures; repeatable. Added to --config's keys.
    #[arg(long = "trusted-key", value_name = "KEY")]
    trusted_keys: Vec<String>,
}

/// The policy asked for on the command line, None when none was.
fn policy(a: &TrustArgs) -> Result<Option<TrustPolicy>> {
    let mut p = match &a.config {
        Some(path) => crate::daemon::config::load(path, true)?
            .models
            .trust_policy()
            .with_context(|| path.display().to_string())?,
        None if a.trusted_keys.is_empty() => return Ok(None),
        None => TrustPolicy::default(),
    };
    for k in &a.trusted_keys {
        let k: PublicKey = k.parse().map_err(anyhow::Error::msg)?;
        p.trusted_keys.push(k);
    }
    Ok(Some(p))
}

/// The signature column: who signed, and (with a policy) whether trusted.
fn signature_cell(st: &Status, judged: bool) -> String {
    match (st, judged) {
        (Status::Unsigned, _) => "unsigned".into(),
        (Status::Trusted(k), _) => format!("trusted {}…", k.short()),
        (Status::Untrusted(k), true) => format!("UNTRUSTED {}…", k.short()),
        (Status::Untrusted(k), false) => format!("signed {}…", k.short()),
    }
}

pub(crate) fn cpu_report() -> Result<ExitCode> {
    let r = crate::cpu::kernel_report();
    let applied = crate::cpu::ensure();
    println!("isa            {}", r.isa);
    println!("int8 kernel    {}", r.int8_kernel);
    println!("f32 kernel     {}", r.f32_kernel);
    println!("amx            {}", if r.amx_in_use { "on" } else { "off" });
    println!(
        "int8 speed     {}",
        if r.int8_slow() {
            "slow here (x86 without VNNI: 30-120x; use fp32 bundles)"
        } else {
            "usable"
        }
    );
    println!(
        "TRACT_CPU_ISA  {}",
        applied.isa_override.as_deref().unwrap_or("(not edited)")
    );
    println!(
        "sigaltstack    kernel minimum {} B (AT_MINSIGSTKSZ), facegate threads {} B",
        crate::crash::kernel_min_sigstack(),
        crate::crash::altstack_size()
    );
    Ok(ExitCode::SUCCESS)
}

/// `facegate models [pack|install]`. `explicit`: --models as given.
pub(crate) fn models_cmd(
    models: &Path,
    explicit: Option<&Path>,
    a: &ModelsArgs,
) -> Result<ExitCode> {
    match &a.cmd {
        None => list_models(models, &a.trust),
        Some(ModelsCmd::Pack(p)) => pack(models, p),
        Some(ModelsCmd::Install(i)) => install(models, explicit, i),
    }
}

fn pack(models: &Path, a: &PackArgs) -> Result<ExitCode> {
    let dir = if Path::new(&a.bundle).join("manifest.toml").is_file() {
        PathBuf::from(&a.bundle)
    } else {
        models.join("bundles").join(&a.bundle)
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.bundle.clone());
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.tar.gz")));
    let b = archive::pack(&dir, &out)?;
    let signed = match b.signature_status(&[]) {
        Ok(Status::Unsigned) => "unsigned (a device with trusted_keys will refuse it)".to_string(),
        Ok(Status::Untrusted(k) | Status::Trusted(k)) => format!("signed by {k}"),
        Err(e) => e.to_string(),
    };
    println!(
        "packed bundle {} ({} {}, model sha256 {}, {signed}) into {}",
        b.name(),
        b.manifest.kind,
        b.manifest.version,
        b.sha256(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn install(models: &Path, explicit: Option<&Path>, a: &InstallArgs) -> Result<ExitCode> {
    // On a device: the daemon's own policy and models folder, unless told otherwise.
    let daemon_cfg = Path::new(crate::daemon::config::DEFAULT_PATH);
    let mut trust = TrustArgs {
        config: a.trust.config.clone(),
        trusted_keys: a.trust.trusted_keys.clone(),
    };
    if trust.config.is_none() && trust.trusted_keys.is_empty() && daemon_cfg.is_file() {
        trust.config = Some(daemon_cfg.to_path_buf());
    }
    let policy = policy(&trust)?;
    let dir = match (explicit, &trust.config) {
        (Some(m), _) => m.to_path_buf(),
        (None, Some(c)) => crate::daemon::config::load(c, true)?
            .models
            .dir
            .unwrap_or_else(|| models.to_path_buf()),
        (None, None) => models.to_path_buf(),
    };
    let r = archive::install(&a.archive, &dir, policy.as_ref(), a.force)
        .with_context(|| format!("nothing was installed into {}", dir.display()))?;
    let what = match r.outcome {
        archive::Outcome::Installed => "installed",
        archive::Outcome::Replaced => "replaced",
        archive::Outcome::AlreadyInstalled => "already installed (nothing changed)",
    };
    println!(
        "bundle {} {what}: {} (model sha256 {}, {})",
        r.name,
        r.dir.display(),
        r.sha256,
        r.signature
    );
    if r.outcome != archive::Outcome::AlreadyInstalled {
        println!(
            "to use it: set [models] embedder (or detector) = \"{}\" in the daemon's config, then `systemctl reload facegated` (SIGHUP)",
            r.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn list_models(models: &Path, a: &TrustArgs) -> Result<ExitCode> {
    let policy = policy(a)?;
    let names = bundle::list(models)?;
    let mut rows = Vec::new();
    let mut bad = 0;
    let keys = policy
        .as_ref()
        .map(|p| p.trusted_keys.clone())
        .unwrap_or_default();
    for n in &names {
        // Integrity first (manifest, size, sha256), then the signature: a
        // signature that does not verify fails; with a policy, so does a
        // bundle that facegated would refuse.
        let opened = Bundle::open_named(models, n).and_then(|b| {
            let st =
                b.signature_status(&keys)
                    .map_err(|source| bundle::BundleError::Signature {
                        dir: b.dir.clone(),
                        source,
                    })?;
            if let Some(p) = &policy {
                Bundle::open_named_trusted(models, n, p)?;
            }
            Ok((b, st))
        });
        match opened {
            Ok((b, st)) => {
                let m = &b.manifest;
                let cos = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
                let mut thr = match (m.kind, m.calibrated_thresholds()) {
                    (Kind::Detector | Kind::Antispoof, _) => "-".to_string(),
                    (_, None) => "uncalibrated".to_string(),
                    (_, Some(t)) => {
                        let mut s =
                            format!("unmasked {} masked {}", cos(t.unmasked), cos(t.masked));
                        if let (Some(p), Some(c)) = (t.periocular, t.periocular_cut) {
                            s.push_str(&format!(" periocular {} (cut {c})", cos(Some(p))));
                        }
                        s
                    }
                };
                if let Some(p) = &m.presence {
                    thr.push_str(&format!("; presence classifier p >= {}", p.threshold));
                }
                rows.push(vec![
                    n.clone(),
                    m.kind.to_string(),
                    m.model.precision.clone(),
                    format!(
                        "{:.1}",
                        (m.model.bytes + m.periocular_model.as_ref().map_or(0, |p| p.bytes)) as f64
                            / 1e6
                    ),
                    match &m.periocular_model {
                        Some(p) => {
                            format!("{} + periocular {}", &m.model.sha256[..12], &p.sha256[..12])
                        }
                        None => m.model.sha256[..12].to_string(),
                    },
                    thr,
                    signature_cell(&st, policy.is_some()),
                    "ok".into(),
                ]);
            }
            Err(e) => {
                bad += 1;
                rows.push(vec![
                    n.clone(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    e.to_string(),
                ]);
            }
        }
    }
    println!("models in {}", models.display());
    if let Some(p) = &policy {
        println!(
            "signature policy: {} trusted key(s), {}",
            p.trusted_keys.len(),
            if p.allow_unsigned {
                "unsigned or untrusted bundles allowed"
            } else {
                "a trusted signature required"
            }
        );
    }
    print!(
        "{}",
        bench::table(
            &[
                "bundle",
                "kind",
                "precision",
                "MB",
                "sha256",
                "thresholds",
                "signature",
                "check"
            ],
            &rows
        )
    );
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
