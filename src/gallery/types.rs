//! Data model of the gallery and its binary encoding (shared by the sled
//! records and the export file; all integers little-endian).

use std::fmt;

use super::error::{GalleryError, Result};

/// Identity of the face model that produced the embeddings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelId {
    /// Human-readable model name, e.g. `"arcface-r50-masked"`.
    pub name: String,
    /// Hex sha256 of the model file.
    pub sha256: String,
}

impl ModelId {
    /// Convenience constructor.
    pub fn new(name: impl Into<String>, sha256: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            sha256: sha256.into(),
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (sha256 {})", self.name, self.sha256)
    }
}

/// Capture condition of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// Plain face.
    Unmasked,
    /// Real mask worn during enrolment.
    Masked,
    /// Mask rendered synthetically onto an unmasked capture.
    SyntheticMasked,
    /// Periocular crop (the face greyed below the eyes) of an unmasked
    /// capture: compared only with periocular probes (masked faces), in its
    /// own scan matrix ([`crate::face::periocular`]).
    Periocular,
}

impl Condition {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Condition::Unmasked => 0,
            Condition::Masked => 1,
            Condition::SyntheticMasked => 2,
            Condition::Periocular => 3,
        }
    }

    /// The scan matrix templates of this condition live in.
    pub fn space(self) -> Space {
        match self {
            Condition::Periocular => Space::Periocular,
            _ => Space::Face,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Condition::Unmasked),
            1 => Ok(Condition::Masked),
            2 => Ok(Condition::SyntheticMasked),
            3 => Ok(Condition::Periocular),
            other => Err(GalleryError::Corrupt(format!(
                "unknown condition code {other}"
            ))),
        }
    }
}

/// Which embeddings a probe is compared with: whole faces (every condition
/// but periocular) or periocular crops. Scores of the two are never mixed:
/// each has its own thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Space {
    #[default]
    Face,
    Periocular,
}

/// An enrolled person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Unique name (1..=64 bytes, no control characters, no `/`).
    pub name: String,
    /// Optional unix uid this user maps to (for login unlock).
    pub uid: Option<u32>,
    /// Creation time, unix seconds.
    pub created: u64,
    /// Disabled users are kept but never match.
    pub enabled: bool,
}

/// One stored embedding.
#[derive(Clone, PartialEq)]
pub struct Template {
    /// Gallery-unique id, assigned by the gallery (monotonic, never reused).
    pub id: u64,
    /// Owner's name.
    pub user: String,
    /// L2-normalised embedding of the gallery's dimension.
    pub embedding: Vec<f32>,
    /// Capture condition.
    pub condition: Condition,
    /// Free-form origin (camera, file, "import:…").
    pub source: String,
    /// Quality score from the detector/quality model.
    pub quality: f32,
    /// Creation time, unix seconds.
    pub created: u64,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The embedding is biometric data: never printed, only its size.
        f.debug_struct("Template")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("dim", &self.embedding.len())
            .field("condition", &self.condition)
            .field("source", &self.source)
            .field("quality", &self.quality)
            .field("created", &self.created)
            .finish()
    }
}

/// A template to be added (the id is assigned by the gallery).
#[derive(Clone)]
pub struct NewTemplate {
    /// Owner's name; the user must exist.
    pub user: String,
    /// L2-normalised embedding (|norm - 1| <= 1e-3), finite values.
    pub embedding: Vec<f32>,
    /// Capture condition.
    pub condition: Condition,
    /// Free-form origin.
    pub source: String,
    /// Quality score.
    pub quality: f32,
}

impl fmt::Debug for NewTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewTemplate")
            .field("user", &self.user)
            .field("dim", &self.embedding.len())
            .field("condition", &self.condition)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Summary counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Number of users (enabled or not).
    pub users: usize,
    /// Number of templates.
    pub templates: usize,
}

/// Returns `v / |v|`; `None` for a zero or non-finite vector.
pub fn l2_normalized(v: &[f32]) -> Option<Vec<f32>> {
    let n = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if !(n.is_finite() && n > 0.0) {
        return None;
    }
    Some(v.iter().map(|x| (f64::from(*x) / n) as f32).collect())
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(GalleryError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 64 {
        return bad("longer than 64 bytes");
    }
    if name.chars().any(|c| c.is_control() || c == '/') {
        return bad("contains a control character or '/'");
    }
    Ok(())
}

pub(crate) fn validate_embedding(e: &[f32], dim: usize) -> Result<()> {
    if e.len() != dim {
        return Err(GalleryError::WrongEmbeddingDim {
            expected: dim,
            got: e.len(),
        });
    }
    if e.iter().any(|x| !x.is_finite()) {
        return Err(GalleryError::InvalidEmbedding("non-finite value".into()));
    }
    let n2: f64 = e.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
    if (n2.sqrt() - 1.0).abs() > 1e-3 {
        return Err(GalleryError::InvalidEmbedding(format!(
            "not L2-normalised (norm {:.4}); use l2_normalized()",
            n2.sqrt()
        )));
    }
    Ok(())
}

/// Little-endian encoder.
#[derive(Default)]
pub(crate) struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// String with a u16 length prefix (callers validate lengths <= 65535).
    pub fn str(&mut self, s: &str) {
        let b = s.as_bytes();
        let n = b.len().min(u16::MAX as usize);
        self.buf.extend_from_slice(&(n as u16).to_le_bytes());
        self.buf.extend_from_slice(&b[..n]);
    }
    /// f32 vector with a u32 length prefix.
    pub fn f32s(&mut self, v: &[f32]) {
        self.u32(v.len() as u32);
        for x in v {
            self.f32(*x);
        }
    }
}

/// Little-endian decoder over a byte slice; every read is bounds-checked.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(GalleryError::Corrupt(format!(
                "{}: record too short (need {} bytes at offset {}, have {})",
                self.what,
                n,
                self.pos,
                self.buf.len()
            ))),
        }
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.arr()?))
    }
    pub fn str(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| GalleryError::Corrupt(format!("{}: invalid UTF-8 string", self.what)))
    }
    pub fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.u32()? as usize;
        let b = self.take(n.checked_mul(4).ok_or_else(|| {
            GalleryError::Corrupt(format!("{}: vector length overflow", self.what))
        })?)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    pub fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(GalleryError::Corrupt(format!(
                "{}: {} unexpected trailing bytes",
                self.what,
                self.buf.len() - self.pos
            )))
        }
    }
}

pub(crate) fn encode_user(u: &User, e: &mut Enc) {
    e.str(&u.name);
    e.u8(u8::from(u.enabled) | (u8::from(u.uid.is_some()) << 1));
    e.u32(u.uid.unwrap_or(0));
    e.u64(u.created);
}

pub(crate) fn decode_user(d: &mut Dec<'_>) -> Result<User> {
    let name = d.str()?;
    let flags = d.u8()?;
    let uid = d.u32()?;
    let created = d.u64()?;
    Ok(User {
        name,
        uid: (flags & 2 != 0).then_some(uid),
        created,
        enabled: flags & 1 != 0,
    })
}

pub(crate) fn encode_template(t: &Template, e: &mut Enc) {
    e.u64(t.id);
    e.str(&t.user);
    e.u8(t.condition.to_u8());
    e.f32(t.quality);
    e.u64(t.created);
    e.str(&t.source);
    e.f32s(&t.embedding);
}

pub(crate) fn decode_template(d: &mut Dec<'_>) -> Result<Template> {
    Ok(Template {
        id: d.u64()?,
        user: d.str()?,
        condition: Condition::from_u8(d.u8()?)?,
        quality: d.f32()?,
        created: d.u64()?,
        source: d.str()?,
        embedding: d.f32s()?,
    })
}

pub(crate) fn encode_model(m: &ModelId, e: &mut Enc) {
    e.str(&m.name);
    e.str(&m.sha256);
}

pub(crate) fn decode_model(d: &mut Dec<'_>) -> Result<ModelId> {
    Ok(ModelId {
        name: d.str()?,
        sha256: d.str()?,
    })
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
