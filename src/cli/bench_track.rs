//! `facegate bench track`: detection by tracking against the whole-frame
//! detector on sequences built from registry photos (issue 17 §1).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::bench;
use crate::bundle::{self, Bundle};
use crate::eval::track::{
    self, background, mean, quantile, subjects, Scenario, SeqReport, Subject,
};
use crate::face::detect::{DetectorOptions, TractDetector};
use crate::face::track::TrackOptions;

use super::bench::parse_size;

#[derive(Args)]
pub(crate) struct BenchTrackArgs {
    /// Frame sizes WxH.
    #[arg(long, value_delimiter = ',', default_value = "640x480")]
    sizes: Vec<String>,
    /// Whole-frame search every N frames (the daemon's `[models]
    /// track_every`); several values make several rows.
    #[arg(long, value_delimiter = ',', default_value = "10")]
    every: Vec<u32>,
    /// Side of the network's input for a tracked face, pixels.
    #[arg(long, default_value_t = TrackOptions::default().side)]
    side: u32,
    /// Region side over the face's size.
    #[arg(long, default_value_t = TrackOptions::default().margin)]
    margin: f32,
    /// Frames per sequence.
    #[arg(long, default_value_t = 90)]
    frames: usize,
    /// Sequences to run (default: all).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Inference threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The daemon's detect_max_side for the whole-frame path (0: never downscale).
    #[arg(long, default_value_t = 1280)]
    max_side: u32,
    /// Longer side of the padded retry when a frame has no face (the
    /// daemon's; 0: the frame's own, padded).
    #[arg(long, default_value_t = crate::face::detect::CAMERA_PAD_MAX_SIDE)]
    pad_max_side: u32,
    /// Also embed the picked face on both paths' landmarks with this
    /// embedder bundle (cosine columns); "none" to skip.
    #[arg(long)]
    embedder: Option<String>,
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "–".into()
    } else {
        format!("{:.1}", 100.0 * a as f64 / b as f64)
    }
}

fn avg(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

fn row(size: &str, every: u32, r: &SeqReport) -> Vec<String> {
    vec![
        size.to_string(),
        every.to_string(),
        r.name.clone(),
        r.frames.to_string(),
        r.searches.to_string(),
        format!(
            "{} ({}/{})",
            pct(r.ref_matched, r.ref_faces),
            r.ref_matched,
            r.ref_faces
        ),
        r.extra.to_string(),
        format!(
            "{:.3} / {:.3} / {:.3}",
            avg(&r.nme),
            quantile(&r.nme, 0.95),
            quantile(&r.nme, 1.0)
        ),
        pct(r.same_pick, r.frames),
        format!(
            "{} / {}",
            pct(r.truth_ref, r.truth),
            pct(r.truth_tracked, r.truth)
        ),
        if r.cos_ref.is_empty() {
            "–".into()
        } else {
            format!(
                "{:.4} / {:.4}; {:.4} / {:.4}",
                avg(&r.cos_ref),
                quantile(&r.cos_ref, 0.0),
                avg(&r.cos_truth_ref),
                avg(&r.cos_truth_tracked)
            )
        },
        format!(
            "{:.3} / {:.3}",
            avg(&r.truth_nme_ref),
            avg(&r.truth_nme_tracked)
        ),
        format!("{:.1} / {:.1}", mean(&r.ref_ms), quantile(&r.ref_ms, 0.5)),
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1}",
            mean(&r.tracked_ms),
            quantile(&r.tracked_ms, 0.5),
            quantile(&r.tracked_ms, 0.95),
            quantile(&r.tracked_ms, 1.0)
        ),
    ]
}

/// All sequences' results pooled.
fn total(rs: &[SeqReport]) -> SeqReport {
    let mut t = SeqReport {
        name: "all".into(),
        ..Default::default()
    };
    for r in rs {
        t.frames += r.frames;
        t.searches += r.searches;
        t.ref_faces += r.ref_faces;
        t.ref_matched += r.ref_matched;
        t.extra += r.extra;
        t.nme.extend(&r.nme);
        t.same_pick += r.same_pick;
        t.truth += r.truth;
        t.truth_ref += r.truth_ref;
        t.truth_tracked += r.truth_tracked;
        t.truth_nme_ref.extend(&r.truth_nme_ref);
        t.truth_nme_tracked.extend(&r.truth_nme_tracked);
        t.cos_ref.extend(&r.cos_ref);
        t.cos_truth_ref.extend(&r.cos_truth_ref);
        t.cos_truth_tracked.extend(&r.cos_truth_tracked);
        t.ref_ms.extend(&r.ref_ms);
        t.tracked_ms.extend(&r.tracked_ms);
    }
    t
}

pub(crate) fn bench_track(models: &Path, a: BenchTrackArgs) -> Result<ExitCode> {
    let scenarios: Vec<Scenario> = if a.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        a.scenarios
            .iter()
            .map(|n| {
                Scenario::ALL
                    .into_iter()
                    .find(|s| s.name() == n)
                    .with_context(|| {
                        format!(
                            "no sequence {n:?} (there are {})",
                            Scenario::ALL.map(|s| s.name()).join(", ")
                        )
                    })
            })
            .collect::<Result<_>>()?
    };
    let b = Bundle::open_named(models, bundle::DEFAULT_DETECTOR)?;
    let det = TractDetector::from_bundle(
        &b,
        &DetectorOptions {
            threads: a.threads.max(1),
            max_side: (a.max_side > 0).then_some(a.max_side),
            pad_max_side: (a.pad_max_side > 0).then_some(a.pad_max_side),
            ..Default::default()
        },
    )?;
    let embedder = super::face::embedder_name(models, &a.embedder);
    let recognition = match embedder.as_str() {
        "none" => None,
        name => {
            let e = super::face::load_embedder(models, name, 1, 1, Default::default())?;
            let align = super::face::align_section(models, name)?;
            Some((e, align))
        }
    };
    let rec = recognition
        .as_ref()
        .map(|(e, align)| track::Recognition { embedder: e, align });
    let mut rows = Vec::new();
    for size in &a.sizes {
        let (w, h) = parse_size(size)?;
        let bg = background(models, w, h)?;
        let mut subs = Vec::new();
        for &sc in &scenarios {
            subs.push((
                sc,
                subjects(models, &det, sc, h).with_context(|| format!("sequence {}", sc.name()))?,
            ));
        }
        for &every in &a.every {
            let opts = TrackOptions {
                every,
                side: a.side,
                margin: a.margin,
                ..TrackOptions::default()
            };
            let mut reports = Vec::new();
            for (sc, s) in &subs {
                let refs: Vec<&Subject> = s.iter().collect();
                // One untimed pass builds the plans (frame and region sizes).
                if reports.is_empty() {
                    track::run(&det, &opts, *sc, &refs, &bg, 3, None)?;
                }
                let r = track::run(&det, &opts, *sc, &refs, &bg, a.frames, rec.as_ref())?;
                eprintln!(
                    "  {size} every {every} {}: tracked {:.1} ms/frame, whole frame {:.1}",
                    r.name,
                    mean(&r.tracked_ms),
                    mean(&r.ref_ms)
                );
                rows.push(row(size, every, &r));
                reports.push(r);
            }
            rows.push(row(size, every, &total(&reports)));
        }
    }
    println!(
        "detection by tracking ({}): {} frames per sequence, region {} px at the network, margin {}, {} thread(s); reference = the whole frame every frame (detect_max_side {}, padded retry at {})",
        b.name(),
        a.frames,
        a.side,
        a.margin,
        a.threads.max(1),
        a.max_side,
        a.pad_max_side
    );
    print!(
        "{}",
        bench::table(
            &[
                "frame",
                "every",
                "sequence",
                "frames",
                "searches",
                "reference faces found, %",
                "extra",
                "landmarks NME mean / p95 / max",
                "same face picked, %",
                "true faces found, % (whole / tracked)",
                "embedding cos tracked:whole mean / min; to truth whole / tracked",
                "NME to truth (whole / tracked)",
                "whole frame ms mean / p50",
                "tracked ms mean / p50 / p95 / max",
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}
