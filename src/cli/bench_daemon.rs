//! `facegate bench daemon`: the real facegated end to end on a replay camera.

use crate::bench;
use crate::bundle::{self, Bundle};
use crate::face::detect::{largest, Detector, DetectorOptions, TractDetector};
use crate::face::imageio;
use crate::face::mask::{self, MaskStyle};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::bench::{frame_from, parse_size};

#[derive(Args)]
pub(crate) struct BenchDaemonArgs {
    /// Camera frame sizes WxH.
    #[arg(long, value_delimiter = ',', default_value = "640x480,320x240")]
    sizes: Vec<String>,
    /// Timed decisions per row (three rows per frame size; resident memory
    /// is sampled after 1, 10, 100, 1,000, … decisions of a frame size).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Frames fused per decision (the daemon's [decision] min_frames).
    #[arg(long, default_value_t = 2)]
    frames: u32,
    /// Replay camera rate (frames per second).
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// The facegated binary (default: next to this one).
    #[arg(long)]
    facegated: Option<PathBuf>,
    /// The daemon's [models] threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Enrolments before the timed rows (alice, then enrol-2, enrol-3, …,
    /// each from the same two registry photos; the first is timed).
    #[arg(long, default_value_t = 1)]
    enrolments: usize,
    /// The daemon's [models] detect_max_side (0 = never downscale).
    #[arg(long, default_value_t = 1280)]
    detect_max_side: u32,
    /// The daemon's [models] track_every (0 = search every frame whole).
    #[arg(long, default_value_t = 10)]
    track_every: u32,
    /// Pause between decisions, ms: longer than the tracker's 300 ms makes
    /// every decision start with a whole-frame search (a login after idle).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Add an IR replay camera showing a grey copy of each frame, and
    /// require the IR liveness check for every decision ([liveness] pam
    /// and door = "ir"): its cost shows in the liveness column.
    #[arg(long)]
    ir: bool,
    /// Require the RGB anti-spoofing check for every decision ([liveness]
    /// "rgb", or "ir+rgb" with --ir; min_score 0.01 so that it measures
    /// the cost, not refusals).
    #[arg(long)]
    rgb: bool,
}

/// The IR camera and `[liveness]` sections `--ir` / `--rgb` ask for.
fn liveness_config(a: &BenchDaemonArgs, ir_dir: &Path, w: u32, h: u32) -> String {
    let mut s = String::new();
    if a.ir {
        s += &format!(
            "[camera.ir]\nkind = \"replay\"\nreplay = [{:?}]\nfps = {}\nwidth = {w}\nheight = {h}\n",
            ir_dir.display().to_string(),
            a.fps
        );
    }
    let policy = match (a.ir, a.rgb) {
        (false, false) => return s,
        (true, false) => "ir",
        (false, true) => "rgb",
        (true, true) => "ir+rgb",
    };
    s += &format!("[liveness]\npam = {policy:?}\ndoor = {policy:?}\n");
    if a.rgb {
        s += "[liveness.rgb]\nmin_score = 0.01\n";
    }
    s
}

/// A facegated child for `bench daemon`, killed when dropped.
pub(crate) struct BenchDaemon(std::process::Child);

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

pub(crate) fn bench_daemon(models: &Path, a: BenchDaemonArgs) -> Result<ExitCode> {
    use crate::protocol::{Client, EnrollSource, InlineImage, Request, Response, Stages};
    use std::time::{Duration, Instant};
    let facegated = match a.facegated.clone() {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("locating facegated")?
            .join("facegated"),
    };
    let photos = models.join("photos/face_recognition");
    let photo = imageio::load_rgb(&photos.join("obama3.jpg"))?;
    let det = TractDetector::from_bundle(
        &Bundle::open_named(models, bundle::DEFAULT_DETECTOR)?,
        &DetectorOptions::default(),
    )?;
    // Frame the photo like a login/door camera at arm's length: a 4:3
    // region three face-widths wide around the face, scaled into the frame
    // (the face is then about a third of the frame's width).
    let probe = {
        let faces = det.detect(&photo)?;
        let f = largest(&faces).context("no face in the benchmark photo")?;
        let fw = f.bbox[2] - f.bbox[0];
        let cx = (f.bbox[0] + f.bbox[2]) / 2.0;
        let cy = (f.bbox[1] + f.bbox[3]) / 2.0;
        let rw = (3.0 * fw)
            .min(photo.width() as f32)
            .min(photo.height() as f32 * 4.0 / 3.0);
        let rh = rw * 3.0 / 4.0;
        let x0 = (cx - rw / 2.0).clamp(0.0, photo.width() as f32 - rw) as u32;
        let y0 = (cy - rh / 2.0).clamp(0.0, photo.height() as f32 - rh) as u32;
        image::imageops::crop_imm(&photo, x0, y0, rw as u32, rh as u32).to_image()
    };
    let work = std::env::temp_dir().join(format!("facegate-bench-daemon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("cam"))?;
    std::fs::create_dir_all(work.join("ir"))?;
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(work.clone());
    let sock = work.join("facegate.sock");
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for size in &a.sizes {
        let (w, h) = parse_size(size)?;
        // The probe frames: unmasked, and masked at the detected landmarks.
        let plain = frame_from(&probe, w, h);
        let faces = det.detect(&plain)?;
        let face = largest(&faces)
            .with_context(|| format!("no face in the {w}x{h} benchmark frame"))?
            .clone();
        let mut masked = plain.clone();
        mask::paint(
            &mut masked,
            &face,
            &MaskStyle::Procedural(mask::Procedural::ALL[0]),
            7,
        )?;
        let show = |img: &image::RgbImage| -> Result<()> {
            let tmp = work.join("next.png.tmp");
            img.save_with_format(&tmp, image::ImageFormat::Png)?;
            std::fs::rename(&tmp, work.join("cam/frame.png"))?;
            if a.ir {
                // What an IR camera beside it would see of a live face: grey.
                image::DynamicImage::ImageRgb8(img.clone())
                    .to_luma8()
                    .save_with_format(&tmp, image::ImageFormat::Png)?;
                std::fs::rename(&tmp, work.join("ir/frame.png"))?;
            }
            // Let the replay source move on to the new picture.
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        };
        show(&plain)?;
        let state = work.join(format!("state-{w}x{h}"));
        let cfg = format!(
            "[daemon]\nsocket = {sock:?}\nstate_dir = {state:?}\n[models]\ndir = {models:?}\n\
             threads = {threads}\ndetect_max_side = {max_side}\ntrack_every = {track}\n[camera]\nkind = \"replay\"\nreplay = [{cam:?}]\nfps = {fps}\nwidth = {w}\nheight = {h}\n\
             [decision]\nmin_frames = {f}\nmax_frames = {f}\n\
             [thresholds]\nunmasked = 0.5\nmasked = 0.5\n[lockout]\nfree_failures = 1000\n{ir}",
            sock = sock.display().to_string(),
            state = state.display().to_string(),
            models = models.display().to_string(),
            cam = work.join("cam").display().to_string(),
            fps = a.fps,
            f = a.frames.max(1),
            threads = a.threads,
            max_side = a.detect_max_side,
            track = a.track_every,
            ir = liveness_config(&a, &work.join("ir"), w, h),
        );
        std::fs::write(work.join("config.toml"), cfg)?;
        let t0 = Instant::now();
        let child = std::process::Command::new(&facegated)
            .arg("--config")
            .arg(work.join("config.toml"))
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(work.join("facegated.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", facegated.display()))?;
        let mut daemon = BenchDaemon(child);
        let ready = loop {
            if let Ok(mut c) = Client::connect(&sock, 1000) {
                if let Ok(Response::Status(_)) = c.call(&Request::Status) {
                    break t0.elapsed();
                }
            }
            if let Some(st) = daemon.0.try_wait()? {
                bail!(
                    "facegated exited ({st}): {}",
                    std::fs::read_to_string(work.join("facegated.log")).unwrap_or_default()
                );
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("facegated not ready after 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rss_ready = proc_rss_kib(daemon.0.id());
        let call =
            |req: &Request| -> Result<Response> { Ok(Client::connect(&sock, 60_000)?.call(req)?) };
        let mut images = Vec::new();
        for f in ["obama.jpg", "obama2.jpg"] {
            images.push(InlineImage {
                name: f.into(),
                data_b64: base64::engine::general_purpose::STANDARD
                    .encode(std::fs::read(photos.join(f))?),
            });
        }
        let t_enrol = Instant::now();
        let mut enrol_ms = 0.0;
        for k in 0..a.enrolments.max(1) {
            let user = if k == 0 {
                "alice".to_string()
            } else {
                format!("enrol-{}", k + 1)
            };
            match call(&Request::Enroll {
                user,
                uid: None,
                source: EnrollSource::Images {
                    images: images.clone(),
                },
            })? {
                Response::Enrolled(_) => {}
                other => bail!("enrolment failed: {other:?}"),
            }
            if k == 0 {
                enrol_ms = t_enrol.elapsed().as_secs_f64() * 1e3;
            }
        }
        let rss_enrolled = proc_rss_kib(daemon.0.id());
        // Resident memory after 1, 10, 100, 1,000, … decisions (counted
        // over the rows of this frame size).
        let mut decisions = 0usize;
        let mut rss_marks: Vec<(usize, Option<u64>)> = Vec::new();
        for (label, img) in [
            ("verify, masked", &masked),
            ("verify, unmasked", &plain),
            ("identify, masked", &masked),
        ] {
            show(img)?;
            let mut total = Vec::new();
            let mut st = Stages::default();
            let mut frames = 0u32;
            let mut unlocks = 0usize;
            for _ in 0..a.runs.max(1) {
                if a.pause_ms > 0 {
                    std::thread::sleep(Duration::from_millis(a.pause_ms));
                }
                let req = if label.starts_with("identify") {
                    Request::Identify { timeout_ms: 5_000 }
                } else {
                    Request::Verify {
                        user: "alice".into(),
                        timeout_ms: 5_000,
                    }
                };
                let t = Instant::now();
                let r = call(&req)?;
                total.push(t.elapsed());
                decisions += 1;
                if is_power_of_ten(decisions) {
                    rss_marks.push((decisions, proc_rss_kib(daemon.0.id())));
                }
                match r {
                    Response::Unlock {
                        stages, frames: n, ..
                    } => {
                        unlocks += 1;
                        st.add(&stages);
                        // `frames` counts frames that passed; all did when unlocked.
                        frames += n.max(1);
                    }
                    other => {
                        // Not a latency figure; say so once and move on.
                        notes.push(format!("{w}x{h} {label}: {other:?} (row stopped)"));
                        break;
                    }
                }
            }
            let per = |x: f64| format!("{:.1}", x / frames.max(1) as f64);
            let med = bench::median(&total).as_secs_f64() * 1e3;
            rows.push(vec![
                format!("{w}x{h}"),
                label.to_string(),
                format!("{unlocks}/{}", total.len()),
                per(st.capture_ms),
                per(st.detect_ms),
                format!("{}/{}", st.tracked, frames),
                per(st.align_ms),
                per(st.presence_ms),
                per(st.embed_ms),
                per(st.scan_ms),
                format!("{:.1}", st.liveness_ms / unlocks.max(1) as f64),
                format!(
                    "{:.1}",
                    (st.detect_ms + st.align_ms + st.presence_ms + st.embed_ms + st.scan_ms)
                        / frames.max(1) as f64
                ),
                format!("{med:.0}"),
            ]);
        }
        let rss_after = proc_rss_kib(daemon.0.id());
        let mib = |k: Option<u64>| k.map_or("?".into(), |k| (k / 1024).to_string());
        notes.push(format!(
            "{w}x{h}: start → ready {:.2} s; enrolment of 2 photos {:.0} ms; resident memory {} MiB at ready, {} MiB after the runs ({} decisions)",
            ready.as_secs_f64(),
            enrol_ms,
            mib(rss_ready),
            mib(rss_after),
            decisions,
        ));
        notes.push(format!(
            "{w}x{h}: resident memory (MiB): ready {}, after {} enrolment(s) {}{}",
            mib(rss_ready),
            a.enrolments.max(1),
            mib(rss_enrolled),
            rss_marks
                .iter()
                .map(|(n, k)| format!(", after {n} decision(s) {}", mib(*k)))
                .collect::<String>(),
        ));
        drop(daemon);
    }
    println!(
        "daemon benchmark: facegated on a replay camera ({} fps), {} decisions per row, {} frame(s) fused per decision, \
         [models] threads = {}, detect_max_side = {}, track_every = {}; {} ms between decisions; IR liveness check {}; RGB anti-spoofing check {}; stage columns are ms per frame (mean), as the daemon reports them",
        a.fps, a.runs, a.frames, a.threads, a.detect_max_side, a.track_every, a.pause_ms,
        if a.ir { "on (grey replay IR camera)" } else { "off" },
        if a.rgb { "on" } else { "off" }
    );
    print!(
        "{}",
        bench::table(
            &[
                "frame",
                "request",
                "unlocked",
                "capture wait",
                "detect",
                "tracked frames",
                "align",
                "presence",
                "embed",
                "scan",
                "liveness / decision",
                "compute / frame",
                "request → decision (median ms)",
            ],
            &rows
        )
    );
    for n in notes {
        println!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// 1, 10, 100, … (the decision counts at which `bench daemon` samples RSS).
fn is_power_of_ten(mut n: usize) -> bool {
    if n == 0 {
        return false;
    }
    while n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

pub(crate) fn proc_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn powers_of_ten() {
        let got: Vec<usize> = (0..=2000).filter(|&n| super::is_power_of_ten(n)).collect();
        assert_eq!(got, vec![1, 10, 100, 1000]);
    }
}
