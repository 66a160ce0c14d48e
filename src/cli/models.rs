//! `facegate models` and `facegate cpu`: the bundles and the CPU features in use.

use crate::bench;
use crate::bundle::{self, Bundle, Kind};
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn cpu_report() -> Result<ExitCode> {
    let r = crate::cpu::kernel_report();
    let applied = crate::cpu::ensure();
    println!("isa            {}", r.isa);
    println!("int8 kernel    {}", r.int8_kernel);
    println!("f32 kernel     {}", r.f32_kernel);
    println!("amx            {}", if r.amx_in_use { "on" } else { "off" });
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

pub(crate) fn list_models(models: &Path) -> Result<ExitCode> {
    let names = bundle::list(models)?;
    let mut rows = Vec::new();
    let mut bad = 0;
    for n in &names {
        match Bundle::open_named(models, n) {
            Ok(b) => {
                let m = &b.manifest;
                let thr = match (m.kind, m.calibrated_thresholds()) {
                    (Kind::Detector, _) => "-".to_string(),
                    (_, None) => "uncalibrated".to_string(),
                    (_, Some(t)) => format!("unmasked {:?} masked {:?}", t.unmasked, t.masked),
                };
                rows.push(vec![
                    n.clone(),
                    m.kind.to_string(),
                    m.model.precision.clone(),
                    format!("{:.1}", m.model.bytes as f64 / 1e6),
                    m.model.sha256[..12].to_string(),
                    thr,
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
                    e.to_string(),
                ]);
            }
        }
    }
    println!("models in {}", models.display());
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
