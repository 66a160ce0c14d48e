//! Kept enrolment crops (`[enroll] keep_crops`, issue 16 §3): what lets
//! `facegate reenroll` re-embed every user with a new embedder.
//!
//! A capture is kept as the face's neighbourhood in the frame (a square
//! twice the face box, at most [`MAX_SIDE`] pixels) with the detector's box
//! and landmarks in its coordinates: not an embedder's aligned crop, because
//! the next embedder may align to another template or size (MobileFaceNet
//! 112 px, FaceNet 160 px), and synthetic masks are painted on the face
//! before alignment. Re-enrolment then runs the same steps as enrolment
//! ([`crate::engine::templates_for`]).
//!
//! One file per user, `<state_dir>/crops/<hex of the name>.crops`, encrypted
//! with ChaCha20-Poly1305 under a 32-byte key read from a file that only the
//! daemon's user may read (`[enroll] crops_key`, made on first use with mode
//! 0600; a more open or foreign-owned key file is refused). The user's name
//! is authenticated with it, so files cannot be swapped between users.
//! Written to a temporary file, fsynced, renamed; removed with the user.
//! Never logged.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::face::detect::Face;

/// Longest side of a kept crop, pixels.
pub const MAX_SIDE: u32 = 400;

/// First bytes of a crops file (the format version).
const MAGIC: &[u8; 8] = b"FGCROPS1";

/// Authenticated with every file, before the user's name.
const AAD: &[u8] = b"facegate kept crops v1\0";

/// Largest crops file read (50 captures of 400x400 PNG fit easily).
const MAX_FILE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CropError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("crops key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("kept crops of {user:?} ({path}): {message}")]
    Corrupt {
        user: String,
        path: PathBuf,
        message: String,
    },
    #[error("kept crop: {0}")]
    Image(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CropError + '_ {
    move |source| CropError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One kept capture: the face's neighbourhood and where the face is in it.
#[derive(Debug, Clone)]
pub struct KeptCrop {
    /// The enrolment's label for the capture ("camera frame 12", "file:a.jpg").
    pub source: String,
    /// The face, in the crop's coordinates.
    pub face: Face,
    pub image: RgbImage,
}

impl KeptCrop {
    /// Cut the neighbourhood of `face` out of `img` (a square twice the
    /// face box, clipped to the frame, scaled down to at most [`MAX_SIDE`]).
    pub fn cut(img: &RgbImage, face: &Face, source: &str) -> KeptCrop {
        let (w, h) = (img.width() as f32, img.height() as f32);
        let side = 2.0 * (face.bbox[2] - face.bbox[0]).max(face.bbox[3] - face.bbox[1]);
        let (cx, cy) = (
            (face.bbox[0] + face.bbox[2]) / 2.0,
            (face.bbox[1] + face.bbox[3]) / 2.0,
        );
        let x0 = (cx - side / 2.0).clamp(0.0, w - 1.0).floor();
        let y0 = (cy - side / 2.0).clamp(0.0, h - 1.0).floor();
        let x1 = (cx + side / 2.0).clamp(x0 + 1.0, w).ceil();
        let y1 = (cy + side / 2.0).clamp(y0 + 1.0, h).ceil();
        let (cw, ch) = ((x1 - x0) as u32, (y1 - y0) as u32);
        let region = image::imageops::crop_imm(img, x0 as u32, y0 as u32, cw, ch).to_image();
        let scale = (MAX_SIDE as f32 / cw.max(ch) as f32).min(1.0);
        let image = if scale < 1.0 {
            let nw = ((cw as f32 * scale).round() as u32).max(1);
            let nh = ((ch as f32 * scale).round() as u32).max(1);
            image::imageops::resize(&region, nw, nh, image::imageops::FilterType::CatmullRom)
        } else {
            region
        };
        let map = |x: f32, y: f32| [(x - x0) * scale, (y - y0) * scale];
        let b = map(face.bbox[0], face.bbox[1]);
        let e = map(face.bbox[2], face.bbox[3]);
        KeptCrop {
            source: source.chars().take(200).collect(),
            face: Face {
                bbox: [b[0], b[1], e[0], e[1]],
                score: face.score,
                landmarks: face.landmarks.map(|[x, y]| map(x, y)),
            },
            image,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    user: String,
    captures: Vec<StoredCapture>,
}

#[derive(Serialize, Deserialize)]
struct StoredCapture {
    source: String,
    score: f32,
    bbox: [f32; 4],
    landmarks: [[f32; 2]; 5],
    png_b64: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Read the key at `path`, or make one (mode 0600) when there is none and
/// `create`. Refuses a key file that is not a regular file of 32 bytes
/// owned by this process's user with no access for group or others.
pub fn load_key(path: &Path, create: bool) -> Result<[u8; 32], CropError> {
    let bad = |message: String| CropError::Key {
        path: path.to_path_buf(),
        message,
    };
    match fs::symlink_metadata(path) {
        Ok(md) => {
            if !md.file_type().is_file() {
                return Err(bad("not a regular file".into()));
            }
            if md.mode() & 0o077 != 0 {
                return Err(bad(format!(
                    "mode {:04o} lets group or others read it; chmod 600 it (and consider the crops it protected exposed)",
                    md.mode() & 0o7777
                )));
            }
            let me = nix::unistd::geteuid().as_raw();
            if md.uid() != me {
                return Err(bad(format!(
                    "owned by uid {}, not by the daemon's uid {me}",
                    md.uid()
                )));
            }
            let bytes = fs::read(path).map_err(io(path))?;
            bytes
                .try_into()
                .map_err(|b: Vec<u8>| bad(format!("{} bytes, not 32", b.len())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut key = [0u8; 32];
            getrandom::getrandom(&mut key).map_err(|e| bad(format!("no randomness: {e}")))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io(dir))?;
            }
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io(path))?;
            f.write_all(&key)
                .and_then(|_| f.sync_all())
                .map_err(io(path))?;
            sync_parent(path)?;
            log::info!("made the kept-crops key {}", path.display());
            Ok(key)
        }
        Err(e) => Err(io(path)(e)),
    }
}

fn sync_parent(path: &Path) -> Result<(), CropError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// The file holding `user`'s crops in `dir` (the name in hex: any user
/// name is a safe file name).
pub fn file_of(dir: &Path, user: &str) -> PathBuf {
    let hex: String = user.bytes().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.crops"))
}

/// The kept crops of every user, under one key.
pub struct CropStore {
    dir: PathBuf,
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for CropStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CropStore").field("dir", &self.dir).finish()
    }
}

impl CropStore {
    /// The store in `dir` (made 0700 when missing) under `key`.
    pub fn open(dir: &Path, key: &[u8; 32]) -> Result<CropStore, CropError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        Ok(CropStore {
            dir: dir.to_path_buf(),
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        })
    }

    fn path_of(&self, user: &str) -> PathBuf {
        file_of(&self.dir, user)
    }

    fn aad(user: &str) -> Vec<u8> {
        [AAD, user.as_bytes()].concat()
    }

    /// The captures kept for `user` (none: empty).
    pub fn load(&self, user: &str) -> Result<Vec<KeptCrop>, CropError> {
        let path = self.path_of(user);
        let corrupt = |message: String| CropError::Corrupt {
            user: user.to_string(),
            path: path.clone(),
            message,
        };
        let md = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        if md.len() > MAX_FILE {
            return Err(corrupt(format!("{} bytes, more than {MAX_FILE}", md.len())));
        }
        let bytes = fs::read(&path).map_err(io(&path))?;
        if bytes.len() < MAGIC.len() + 12 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a kept-crops file".into()));
        }
        let (nonce, ct) = bytes[MAGIC.len()..].split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &Self::aad(user),
                },
            )
            .map_err(|_| {
                corrupt("does not decrypt (another key, another user's file, or damaged)".into())
            })?;
        let st: Stored =
            serde_json::from_slice(&plain).map_err(|e| corrupt(format!("contents: {e}")))?;
        if st.user != user {
            return Err(corrupt(format!("holds the crops of {:?}", st.user)));
        }
        st.captures
            .into_iter()
            .map(|c| {
                let png = b64()
                    .decode(c.png_b64.as_bytes())
                    .map_err(|e| corrupt(format!("image: {e}")))?;
                let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
                    .map_err(|e| corrupt(format!("image: {e}")))?
                    .to_rgb8();
                Ok(KeptCrop {
                    source: c.source,
                    face: Face {
                        bbox: c.bbox,
                        score: c.score,
                        landmarks: c.landmarks,
                    },
                    image,
                })
            })
            .collect()
    }

    /// Replace the captures kept for `user` by `crops` (empty: remove).
    pub fn save(&self, user: &str, crops: &[KeptCrop]) -> Result<(), CropError> {
        let path = self.path_of(user);
        if crops.is_empty() {
            return self.remove(user);
        }
        let mut captures = Vec::with_capacity(crops.len());
        for c in crops {
            let mut png = Vec::new();
            c.image
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| CropError::Image(e.to_string()))?;
            captures.push(StoredCapture {
                source: c.source.clone(),
                score: c.face.score,
                bbox: c.face.bbox,
                landmarks: c.face.landmarks,
                png_b64: b64().encode(png),
            });
        }
        let plain = serde_json::to_vec(&Stored {
            user: user.to_string(),
            captures,
        })
        .map_err(|e| CropError::Image(e.to_string()))?;
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).map_err(|e| CropError::Key {
            path: path.clone(),
            message: format!("no randomness: {e}"),
        })?;
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &Self::aad(user),
                },
            )
            .map_err(|_| CropError::Image("encryption failed".into()))?;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&nonce)?;
            f.write_all(&ct)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io(&path)(e));
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_parent(&path)
    }

    /// Add `crops` to those kept for `user`.
    pub fn append(&self, user: &str, crops: &[KeptCrop]) -> Result<(), CropError> {
        let mut all = self.load(user)?;
        all.extend(crops.iter().cloned());
        self.save(user, &all)
    }

    /// Forget `user`'s crops.
    pub fn remove(&self, user: &str) -> Result<(), CropError> {
        let path = self.path_of(user);
        match fs::remove_file(&path) {
            Ok(()) => sync_parent(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Does `user` have kept crops?
    pub fn has(&self, user: &str) -> bool {
        self.path_of(user).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face() -> Face {
        Face {
            bbox: [100.0, 80.0, 200.0, 210.0],
            score: 0.99,
            landmarks: [
                [130.0, 130.0],
                [170.0, 130.0],
                [150.0, 155.0],
                [135.0, 180.0],
                [165.0, 180.0],
            ],
        }
    }

    fn frame() -> RgbImage {
        RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, 7])
        })
    }

    #[test]
    fn a_cut_keeps_the_landmarks_on_the_same_pixels() {
        let img = frame();
        let c = KeptCrop::cut(&img, &face(), "file:a.jpg");
        // 2 x 130 px around the box centre, within the frame, not scaled.
        assert_eq!(c.image.dimensions(), (260, 260));
        for (orig, kept) in face().landmarks.iter().zip(c.face.landmarks) {
            let p = img.get_pixel(orig[0] as u32, orig[1] as u32);
            let q = c.image.get_pixel(kept[0] as u32, kept[1] as u32);
            assert_eq!(p, q);
        }
        // A big face is scaled down to MAX_SIDE, landmarks with it.
        let mut big = face();
        big.bbox = [0.0, 0.0, 400.0, 400.0];
        let c = KeptCrop::cut(&img, &big, "x");
        assert!(c.image.width() <= MAX_SIDE && c.image.height() <= MAX_SIDE);
    }

    #[test]
    fn crops_round_trip_encrypted_and_bound_to_their_user() {
        let tmp = tempfile::tempdir().unwrap();
        let key = load_key(&tmp.path().join("k"), true).unwrap();
        assert_eq!(
            fs::metadata(tmp.path().join("k")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(load_key(&tmp.path().join("k"), true).unwrap(), key);
        let s = CropStore::open(&tmp.path().join("crops"), &key).unwrap();
        let c = KeptCrop::cut(&frame(), &face(), "file:a.jpg");
        s.append("alice", std::slice::from_ref(&c)).unwrap();
        s.append("alice", std::slice::from_ref(&c)).unwrap();
        let back = s.load("alice").unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].image, c.image);
        assert_eq!(back[0].face.landmarks, c.face.landmarks);
        // Nothing readable at rest.
        let raw = fs::read(s.path_of("alice")).unwrap();
        assert!(!raw.windows(8).any(|w| w == b"file:a.j"));
        // Another user's file under alice's name does not decrypt.
        fs::copy(s.path_of("alice"), s.path_of("bob")).unwrap();
        let err = s.load("bob").unwrap_err().to_string();
        assert!(err.contains("does not decrypt"), "{err}");
        // Another key does not either.
        let other = CropStore::open(&tmp.path().join("crops"), &[9; 32]).unwrap();
        assert!(other.load("alice").is_err());
        s.remove("alice").unwrap();
        assert!(s.load("alice").unwrap().is_empty());
        assert!(!s.has("alice"));
    }

    #[test]
    fn an_open_key_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        load_key(&p, true).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_key(&p, true).unwrap_err().to_string();
        assert!(err.contains("0640") && err.contains("chmod 600"), "{err}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, b"short").unwrap();
        assert!(load_key(&p, true)
            .unwrap_err()
            .to_string()
            .contains("5 bytes"));
    }
}
