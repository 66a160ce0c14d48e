//! Enrolment ([`enroll`], re-exported by [`super::service`]): inline
//! images or camera frames, quality-checked, become unmasked, periocular
//! and synthetic-masked templates; with `[enroll] keep_crops` each accepted
//! capture's face is kept too ([`super::crops`]).

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;

use crate::engine::{quality, templates_for, QualityLimits};
use crate::face::mask::MaskStyle;
use crate::gallery::Condition;
use crate::protocol::{EnrollReport, EnrollSource};

use super::hub::WaitError;
use super::service::{b64, budget, gallery_err, params, ServiceError};
use super::Shared;

/// Enrol `user` from inline images or camera frames: quality-checked
/// captures become unmasked (+ synthetic-masked) templates.
pub fn enroll(
    sh: &Arc<Shared>,
    user: &str,
    uid: Option<u32>,
    source: EnrollSource,
) -> Result<EnrollReport, ServiceError> {
    let cfg = sh.cfg.load();
    let e = &cfg.enroll;
    let lim = QualityLimits {
        min_face_px: e.min_face_px,
        min_sharpness: e.min_sharpness,
        max_yaw: e.max_yaw,
    };
    let styles: Vec<MaskStyle> = e
        .synthetic_masks
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let presence = params(sh).1;
    // One engine and gallery for the whole enrolment, even across a reload.
    let act = sh.active();
    let mut col = Collector {
        rejected: Vec::new(),
        batch: Vec::new(),
        accepted: 0,
        kept: Vec::new(),
        keep_crops: e.keep_crops,
        act: act.clone(),
    };
    let ctx = (user, &lim, styles.as_slice(), e.seed);
    match source {
        EnrollSource::Images { images } => {
            for im in images {
                let label = format!("file:{}", im.name.chars().take(200).collect::<String>());
                let img = match b64()
                    .decode(im.data_b64.as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|b| decode_image(&b))
                {
                    Ok(i) => i,
                    Err(why) => {
                        col.rejected.push(format!("{label}: {why}"));
                        continue;
                    }
                };
                let a = match sh.inference.run(|| act.engine.analyze(&img, 0, presence)) {
                    Ok(a) => a,
                    Err(err) => {
                        col.rejected.push(format!("{label}: {err}"));
                        continue;
                    }
                };
                col.add(sh, ctx, &img, &label, &a)?;
            }
        }
        EnrollSource::Camera { frames, timeout_ms } => {
            let want = if frames == 0 {
                e.frames
            } else {
                frames.min(50)
            };
            let t0 = Instant::now();
            let deadline = t0 + budget(sh, timeout_ms.max(1));
            let mut after = 0;
            while (col.accepted as u32) < want {
                match sh.hub.wait_frame(after, t0, deadline) {
                    Ok((c, frame)) => {
                        after = c;
                        let a = match sh
                            .inference
                            .run(|| act.engine.analyze(&frame.image, 0, presence))
                        {
                            Ok(a) => a,
                            Err(err) => {
                                col.rejected.push(format!("frame {c}: {err}"));
                                continue;
                            }
                        };
                        col.add(sh, ctx, &frame.image, &format!("camera frame {c}"), &a)?;
                    }
                    Err(WaitError::Timeout) => break,
                    Err(WaitError::Gone(why)) => return Err(ServiceError::Source(why)),
                }
            }
        }
    }
    let Collector {
        rejected,
        batch,
        accepted,
        kept,
        ..
    } = col;
    if accepted == 0 {
        return Err(ServiceError::Quality(format!(
            "no usable capture: {}",
            rejected.join("; ")
        )));
    }
    // The crops first: an enrolment whose crops cannot be kept adds nothing.
    let restore = super::reenroll::keep_crops(sh, user, &kept)?;
    let existing = act.gallery.store().user(user);
    let created = match existing {
        Ok(Some(_)) => Ok(()),
        Ok(None) => act.gallery.add_user(user, uid).map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = created {
        restore.undo();
        return Err(gallery_err(e));
    }
    let count = |c: Condition| batch.iter().filter(|t| t.condition == c).count();
    let (unmasked, synthetic, periocular) = (
        count(Condition::Unmasked),
        count(Condition::SyntheticMasked),
        count(Condition::Periocular),
    );
    if let Err(e) = act.gallery.add_templates(batch) {
        restore.undo();
        return Err(gallery_err(e));
    }
    Ok(EnrollReport {
        user: user.to_string(),
        unmasked,
        synthetic_masked: synthetic,
        periocular,
        rejected,
    })
}

struct Collector {
    rejected: Vec<String>,
    batch: Vec<crate::gallery::NewTemplate>,
    accepted: usize,
    /// The accepted captures' neighbourhoods, when `[enroll] keep_crops`.
    kept: Vec<super::crops::KeptCrop>,
    keep_crops: bool,
    act: Arc<super::active::Active>,
}

type EnrollCtx<'a> = (&'a str, &'a QualityLimits, &'a [MaskStyle], u64);

impl Collector {
    /// Quality-check one capture and add its templates.
    fn add(
        &mut self,
        sh: &Shared,
        (user, lim, styles, seed): EnrollCtx<'_>,
        img: &image::RgbImage,
        label: &str,
        a: &crate::engine::Analysis,
    ) -> Result<(), ServiceError> {
        let Some(f) = &a.face else {
            self.rejected.push(format!("{label}: no face"));
            return Ok(());
        };
        if let Err(why) = quality(f, lim) {
            self.rejected.push(format!("{label}: {why}"));
            return Ok(());
        }
        let seed = seed.wrapping_add(self.accepted as u64 * 1000);
        let engine = &self.act.engine;
        match sh
            .inference
            .run(|| templates_for(engine, user, label, img, f, styles, seed))
        {
            Ok(t) => {
                self.batch.extend(t);
                self.accepted += 1;
                if self.keep_crops {
                    self.kept
                        .push(super::crops::KeptCrop::cut(img, &f.face, label));
                }
                Ok(())
            }
            Err(err) => Err(ServiceError::Internal(err.to_string())),
        }
    }
}

fn decode_image(bytes: &[u8]) -> Result<image::RgbImage, String> {
    let mut r = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(crate::face::imageio::MAX_SIDE);
    limits.max_image_height = Some(crate::face::imageio::MAX_SIDE);
    limits.max_alloc = Some(512 << 20);
    r.limits(limits);
    r.decode().map(|i| i.to_rgb8()).map_err(|e| e.to_string())
}
