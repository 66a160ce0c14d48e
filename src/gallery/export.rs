//! Versioned single-file export / import of a gallery (format: docs/GALLERY.md).
//!
//! ```text
//! offset  size  field
//! 0       8     magic  "FGGALLRY"
//! 8       4     format version (u32 LE) = 1
//! 12      8     body length B (u64 LE)
//! 20      B     body
//! 20+B    32    sha256 of bytes 0 .. 20+B (header and body)
//! ```

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::{info, warn};
use sha2::{Digest, Sha256};

use super::error::{GalleryError, Result};
use super::store::{Store, SCHEMA_VERSION};
use super::types::{
    decode_model, decode_template, decode_user, encode_model, encode_template, encode_user,
    now_unix, validate_embedding, validate_name, Dec, Enc, ModelId, Template, User,
};

/// First 8 bytes of every export file.
pub const EXPORT_MAGIC: [u8; 8] = *b"FGGALLRY";
/// Format version written and read by this build.
pub const EXPORT_VERSION: u32 = 1;
const HEADER_LEN: usize = 20;
const HASH_LEN: usize = 32;

/// What to do with an existing gallery on import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// The gallery must have no user and no template; ids, users and flags are
    /// restored exactly (restore from backup, moving to a new board).
    IntoEmpty,
    /// Merge (see docs/GALLERY.md): users missing from the gallery are added as
    /// in the file; users present in both keep the gallery's record (uid,
    /// enabled); every file template gets a new id, except templates whose
    /// embedding is bit-identical to one the same user already has, which are
    /// skipped (so importing the same file twice changes nothing).
    Merge,
}

/// Outcome of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Users created.
    pub users_added: usize,
    /// Users that already existed (gallery record kept).
    pub users_kept: usize,
    /// Templates inserted.
    pub templates_added: usize,
    /// Templates skipped as duplicates.
    pub templates_skipped: usize,
}

/// Parsed content of an export file.
#[derive(Debug, Clone)]
pub struct ExportData {
    /// Schema version of the exporting gallery.
    pub schema: u32,
    /// Model of the exporting gallery.
    pub model: ModelId,
    /// Embedding dimension.
    pub dim: usize,
    /// Export time, unix seconds.
    pub exported_at: u64,
    /// `next_id` of the exporting gallery.
    pub next_id: u64,
    /// Users.
    pub users: Vec<User>,
    /// Templates.
    pub templates: Vec<Template>,
}

/// Serialises a gallery into the export format (in memory).
pub fn encode_export(data: &ExportData) -> Vec<u8> {
    let mut body = Enc::with_capacity(64 + data.templates.len() * (data.dim * 4 + 64));
    body.u32(data.schema);
    encode_model(&data.model, &mut body);
    body.u32(data.dim as u32);
    body.u64(data.exported_at);
    body.u64(data.next_id);
    body.u32(data.users.len() as u32);
    for u in &data.users {
        encode_user(u, &mut body);
    }
    body.u64(data.templates.len() as u64);
    for t in &data.templates {
        encode_template(t, &mut body);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.buf.len() + HASH_LEN);
    out.extend_from_slice(&EXPORT_MAGIC);
    out.extend_from_slice(&EXPORT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.buf.len() as u64).to_le_bytes());
    out.extend_from_slice(&body.buf);
    let hash = Sha256::digest(&out);
    out.extend_from_slice(&hash);
    out
}

/// Parses and verifies an export file's bytes. `path` is only used in messages.
pub fn decode_export(bytes: &[u8], path: &Path) -> Result<ExportData> {
    let n = bytes.len() as u64;
    let magic_len = bytes.len().min(EXPORT_MAGIC.len());
    if bytes[..magic_len] != EXPORT_MAGIC[..magic_len] || bytes.is_empty() {
        return Err(GalleryError::ExportBadMagic(path.to_path_buf()));
    }
    if bytes.len() < HEADER_LEN {
        return Err(GalleryError::ExportTruncated {
            expected: (HEADER_LEN + HASH_LEN) as u64,
            found: n,
        });
    }
    let mut h = Dec::new(&bytes[8..HEADER_LEN], "export header");
    let version = h.u32()?;
    let body_len = h.u64()?;
    if version != EXPORT_VERSION {
        return Err(GalleryError::ExportUnsupportedVersion {
            found: version,
            supported: EXPORT_VERSION,
        });
    }
    let expected = (HEADER_LEN as u64)
        .saturating_add(body_len)
        .saturating_add(HASH_LEN as u64);
    if n < expected {
        return Err(GalleryError::ExportTruncated { expected, found: n });
    }
    if n > expected {
        return Err(GalleryError::ExportTrailingData {
            extra: n - expected,
        });
    }
    let split = HEADER_LEN + body_len as usize;
    let digest = Sha256::digest(&bytes[..split]);
    if digest.as_slice() != &bytes[split..] {
        return Err(GalleryError::ExportChecksumMismatch);
    }
    let mut d = Dec::new(&bytes[HEADER_LEN..split], "export body");
    let schema = d.u32()?;
    let model = decode_model(&mut d)?;
    let dim = d.u32()? as usize;
    let exported_at = d.u64()?;
    let next_id = d.u64()?;
    let n_users = d.u32()? as usize;
    let mut users = Vec::with_capacity(n_users.min(1 << 20));
    for _ in 0..n_users {
        users.push(decode_user(&mut d)?);
    }
    let n_templates = d.u64()? as usize;
    let mut templates = Vec::with_capacity(n_templates.min(1 << 20));
    for _ in 0..n_templates {
        templates.push(decode_template(&mut d)?);
    }
    d.finish()?;
    Ok(ExportData {
        schema,
        model,
        dim,
        exported_at,
        next_id,
        users,
        templates,
    })
}

/// Reads and verifies an export file.
pub fn read_export(path: &Path) -> Result<ExportData> {
    let bytes = fs::read(path).map_err(|e| GalleryError::io(path, e))?;
    decode_export(&bytes, path)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir),
/// with mode 0600.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "gallery-export".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| GalleryError::io(&tmp, e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(|e| GalleryError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| GalleryError::io(&tmp, e))?;
        f.sync_all().map_err(|e| GalleryError::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| GalleryError::io(path, e))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| GalleryError::io(&dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Snapshot of a store as export data.
pub fn export_data(store: &Store) -> Result<ExportData> {
    Ok(ExportData {
        schema: SCHEMA_VERSION,
        model: store.model().clone(),
        dim: store.dim(),
        exported_at: now_unix(),
        next_id: store.next_id()?,
        users: store.users()?,
        templates: store.templates()?,
    })
}

/// Exports the store to `path` (atomic, 0600). Returns the number of bytes.
pub fn export_to(store: &Store, path: &Path) -> Result<u64> {
    let data = export_data(store)?;
    let bytes = encode_export(&data);
    write_atomically(path, &bytes)?;
    info!(
        "exported {} users / {} templates to {}",
        data.users.len(),
        data.templates.len(),
        path.display()
    );
    Ok(bytes.len() as u64)
}

/// Imports a verified export into `store` in one atomic transaction.
pub fn import_data(store: &Store, data: ExportData, mode: ImportMode) -> Result<ImportReport> {
    if data.model != *store.model() {
        return Err(GalleryError::ImportModelMismatch {
            file: data.model,
            gallery: store.model().clone(),
        });
    }
    if data.dim != store.dim() {
        return Err(GalleryError::DimensionMismatch {
            stored: store.dim(),
            requested: data.dim,
        });
    }
    if data.schema > SCHEMA_VERSION {
        return Err(GalleryError::UnsupportedSchema {
            found: data.schema,
            supported: SCHEMA_VERSION,
        });
    }
    // Validate the file's content as if it were entered by hand.
    let mut file_users = HashSet::new();
    for u in &data.users {
        validate_name(&u.name)?;
        if !file_users.insert(u.name.clone()) {
            return Err(GalleryError::Corrupt(format!(
                "export lists user {:?} twice",
                u.name
            )));
        }
    }
    let mut ids = HashSet::new();
    for t in &data.templates {
        validate_embedding(&t.embedding, store.dim())?;
        if !file_users.contains(&t.user) {
            return Err(GalleryError::Corrupt(format!(
                "export template {} belongs to unlisted user {:?}",
                t.id, t.user
            )));
        }
        if !ids.insert(t.id) {
            return Err(GalleryError::Corrupt(format!(
                "export lists template id {} twice",
                t.id
            )));
        }
    }

    let mut report = ImportReport::default();
    match mode {
        ImportMode::IntoEmpty => {
            let c = store.counts()?;
            if c.users > 0 || c.templates > 0 {
                return Err(GalleryError::ImportTargetNotEmpty { users: c.users });
            }
            let mut templates = data.templates;
            store.apply_import(&data.users, &mut templates, true)?;
            report.users_added = data.users.len();
            report.templates_added = templates.len();
        }
        ImportMode::Merge => {
            let existing: HashMap<String, User> = store
                .users()?
                .into_iter()
                .map(|u| (u.name.clone(), u))
                .collect();
            let mut new_users = Vec::new();
            for u in &data.users {
                match existing.get(&u.name) {
                    Some(old) => {
                        if old.uid != u.uid {
                            warn!(
                                "import: user {:?} exists with uid {:?}; keeping it (file has {:?})",
                                u.name, old.uid, u.uid
                            );
                        }
                        report.users_kept += 1;
                    }
                    None => new_users.push(u.clone()),
                }
            }
            // Existing embeddings per user, as raw bits, to skip duplicates.
            let mut seen: HashMap<String, HashSet<Vec<u32>>> = HashMap::new();
            for name in existing.keys() {
                let mut set = HashSet::new();
                for id in store.template_ids_of(name)? {
                    if let Some(t) = store.template(id)? {
                        set.insert(t.embedding.iter().map(|x| x.to_bits()).collect());
                    }
                }
                seen.insert(name.clone(), set);
            }
            let mut templates = Vec::new();
            for t in data.templates {
                let bits: Vec<u32> = t.embedding.iter().map(|x| x.to_bits()).collect();
                if seen.entry(t.user.clone()).or_default().insert(bits) {
                    templates.push(t);
                } else {
                    report.templates_skipped += 1;
                }
            }
            store.apply_import(&new_users, &mut templates, false)?;
            report.users_added = new_users.len();
            report.templates_added = templates.len();
        }
    }
    info!("import: {report:?}");
    Ok(report)
}

/// Reads, verifies and imports `path`.
pub fn import_from(store: &Store, path: &Path, mode: ImportMode) -> Result<ImportReport> {
    let data = read_export(path)?;
    import_data(store, data, mode)
}
