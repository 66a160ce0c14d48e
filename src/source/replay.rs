//! A [`FrameSource`] that replays image files at a fixed rate, looping.
//!
//! Given a directory, it lists the images in it (sorted by name) *at every
//! frame*, so a test or a demo changes what the "camera" sees by replacing
//! files, and a directory that disappears (renamed away) makes the source
//! [`SourceError::Gone`] — exactly like an unplugged camera. Decoded images are
//! cached by (path, size, mtime), so replay costs a `readdir` per frame.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;

use super::{Frame, FrameSource, SourceError};

const EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "ppm"];

/// Replays images at `fps`.
pub struct ReplaySource {
    name: String,
    inputs: Vec<PathBuf>,
    period: Duration,
    next_due: Instant,
    seq: u64,
    cache: HashMap<PathBuf, (u64, SystemTime, RgbImage)>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

impl ReplaySource {
    /// `inputs`: one directory, or image files. Fails with `Gone` when they
    /// are not there and with `Config` when they hold no image.
    pub fn open(inputs: &[PathBuf], fps: u32) -> Result<ReplaySource, SourceError> {
        if inputs.is_empty() {
            return Err(SourceError::Config(
                "replay needs a directory or images".into(),
            ));
        }
        if fps == 0 {
            return Err(SourceError::Config("replay fps must be > 0".into()));
        }
        let s = ReplaySource {
            name: format!(
                "replay:{}",
                inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            inputs: inputs.to_vec(),
            period: Duration::from_secs_f64(1.0 / f64::from(fps)),
            next_due: Instant::now(),
            seq: 0,
            cache: HashMap::new(),
        };
        if s.files()?.is_empty() {
            return Err(SourceError::Config(format!("{}: no images", s.name)));
        }
        Ok(s)
    }

    /// The current list of images.
    fn files(&self) -> Result<Vec<PathBuf>, SourceError> {
        let gone = |p: &Path, e: std::io::Error| SourceError::Gone(format!("{}: {e}", p.display()));
        if let [dir] = self.inputs.as_slice() {
            let md = std::fs::metadata(dir).map_err(|e| gone(dir, e))?;
            if md.is_dir() {
                let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|e| gone(dir, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_image(p))
                    .collect();
                v.sort();
                return Ok(v);
            }
        }
        for p in &self.inputs {
            std::fs::metadata(p).map_err(|e| gone(p, e))?;
        }
        Ok(self.inputs.clone())
    }

    fn load(&mut self, p: &Path) -> Result<RgbImage, SourceError> {
        let md =
            std::fs::metadata(p).map_err(|e| SourceError::Gone(format!("{}: {e}", p.display())))?;
        let key = (md.len(), md.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        if let Some((len, mtime, img)) = self.cache.get(p) {
            if (*len, *mtime) == key {
                return Ok(img.clone());
            }
        }
        let img =
            crate::face::imageio::load_rgb(p).map_err(|e| SourceError::Decode(e.to_string()))?;
        if self.cache.len() > 64 {
            self.cache.clear();
        }
        self.cache
            .insert(p.to_path_buf(), (key.0, key.1, img.clone()));
        Ok(img)
    }
}

impl FrameSource for ReplaySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        let now = Instant::now();
        if self.next_due > now {
            std::thread::sleep(self.next_due - now);
        }
        self.next_due = self.next_due.max(now - self.period) + self.period;
        let files = self.files()?;
        if files.is_empty() {
            return Err(SourceError::Gone(format!("{}: no images left", self.name)));
        }
        let p = files[(self.seq % files.len() as u64) as usize].clone();
        let image = self.load(&p)?;
        let f = Frame {
            image,
            seq: self.seq,
            captured: Instant::now(),
        };
        self.seq += 1;
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_a_directory_in_order_and_reports_it_gone() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("cam");
        std::fs::create_dir(&dir).unwrap();
        for (i, c) in [10u8, 200].iter().enumerate() {
            RgbImage::from_pixel(8, 8, image::Rgb([*c, 0, 0]))
                .save(dir.join(format!("{i}.png")))
                .unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let mut s = ReplaySource::open(std::slice::from_ref(&dir), 100).unwrap();
        let t0 = Instant::now();
        let reds: Vec<u8> = (0..4)
            .map(|_| s.next_frame().unwrap().image.get_pixel(0, 0)[0])
            .collect();
        assert_eq!(reds, [10, 200, 10, 200]);
        assert!(
            t0.elapsed() >= Duration::from_millis(25),
            "paced at 100 fps"
        );
        std::fs::rename(&dir, t.path().join("away")).unwrap();
        assert!(matches!(s.next_frame(), Err(SourceError::Gone(_))));
        assert!(matches!(
            ReplaySource::open(std::slice::from_ref(&dir), 10),
            Err(SourceError::Gone(_))
        ));
        std::fs::rename(t.path().join("away"), &dir).unwrap();
        assert_eq!(s.next_frame().unwrap().seq, 4);
        let empty = t.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(
            ReplaySource::open(&[empty], 10),
            Err(SourceError::Config(_))
        ));
    }
}
