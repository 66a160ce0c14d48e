//! Bundle archives: one file that carries a bundle from the workstation to a
//! device (issue 16 §3, docs/MODELS_SHIPPING.md).
//!
//! An archive is a gzip-compressed tar (a plain tar is read as well) of flat
//! entries, no folders:
//!
//! | entry           | what                                                   |
//! | --------------- | ------------------------------------------------------ |
//! | `manifest.toml` | the bundle's manifest, byte for byte                    |
//! | `manifest.sig`  | its signature, when the bundle is signed               |
//! | `<model file>`  | the model the manifest names (`model.onnx`)            |
//! | `<periocular>`  | `[periocular_model]`'s file, when the bundle has one   |
//! | `SHA256SUMS`    | `sha256sum` lines for each of the entries above        |
//!
//! [`pack`] writes one from a bundle folder (verified first). [`install`]
//! streams an archive into a staging folder inside `<models>/bundles`,
//! refuses anything but those regular files (no links, no folders, no `..`,
//! no duplicates, sizes bounded), checks `SHA256SUMS`, opens the result as the
//! daemon would (signature per the policy, then the model against the
//! manifest), fsyncs it, and only then renames it into place. Until that
//! rename nothing outside the staging folder changes, and the staging folder
//! is removed on every error: a bad archive changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::sign::{Status, TrustPolicy, SIG_FILE};
use super::{sha256_hex, Bundle, BundleError, MAX_MODEL_BYTES};

/// The manifest's file name inside a bundle and an archive.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// The checksum list inside an archive.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// Largest manifest or checksum list read from an archive.
const MAX_SMALL_BYTES: u64 = 64 * 1024;

/// Most entries an archive may hold (manifest, signature, model, sums).
const MAX_ENTRIES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("archive {archive}: {message}")]
    Invalid { archive: PathBuf, message: String },
    #[error("archive {archive}: {source}")]
    Bundle {
        archive: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("a different bundle named {name} is already installed in {dir} (model sha256 {installed}, the archive's {archive_sha}); pass --force to replace it")]
    Exists {
        name: String,
        dir: PathBuf,
        installed: String,
        archive_sha: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new bundle folder.
    Installed,
    /// The same bundle was already there (same manifest and signature):
    /// nothing written.
    AlreadyInstalled,
    /// A different bundle of that name was replaced (`force`).
    Replaced,
}

/// The result of [`install`].
#[derive(Debug, Clone)]
pub struct Installed {
    pub name: String,
    pub dir: PathBuf,
    pub sha256: String,
    pub signature: Status,
    pub outcome: Outcome,
}

/// Write the bundle in `bundle_dir` (verified first) as an archive at `out`
/// (written to a temporary file beside it, then renamed). Deterministic:
/// fixed order, times, owners and modes.
pub fn pack(bundle_dir: &Path, out: &Path) -> Result<Bundle, ArchiveError> {
    let b = Bundle::open(bundle_dir).map_err(|source| ArchiveError::Bundle {
        archive: out.to_path_buf(),
        source,
    })?;
    // A signature that does not verify would be refused on the device: say so here.
    b.signature_status(&[])
        .map_err(|source| ArchiveError::Bundle {
            archive: out.to_path_buf(),
            source: BundleError::Signature {
                dir: b.dir.clone(),
                source,
            },
        })?;
    let mut files: Vec<(String, Vec<u8>)> = vec![(MANIFEST_FILE.into(), b.manifest_bytes.clone())];
    if let Some(sig) = &b.signature {
        files.push((SIG_FILE.into(), sig.as_bytes().to_vec()));
    }
    let sums: String = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .chain(b.model_files())
        .map(|(n, d)| format!("{}  {n}\n", sha256_hex(d)))
        .collect();
    let tmp = out.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let f = fs::File::create(&tmp)?;
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, data)
        };
        for (n, d) in &files {
            add(n, d)?;
        }
        for (n, d) in b.model_files() {
            add(n, d)?;
        }
        add(SUMS_FILE, sums.as_bytes())?;
        let gz = tar.into_inner()?;
        let f = gz.finish()?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io(out)(e));
    }
    fs::rename(&tmp, out).map_err(io(out))?;
    Ok(b)
}

/// Removes the staging folder unless disarmed.
struct Staging {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("cannot remove {}: {e}", self.dir.display());
                }
            }
        }
    }
}

fn fsync_dir(dir: &Path) -> Result<(), ArchiveError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// A name an archive entry may have: one plain path component.
fn plain_name(raw: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(raw).ok()?;
    let s = s.strip_prefix("./").unwrap_or(s);
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains('/')
        && !s.contains('\0')
        && !s.starts_with('.');
    ok.then_some(s)
}

/// Stream the archive's entries into `stage`; returns each file's sha256.
fn extract(archive: &Path, stage: &Path) -> Result<BTreeMap<String, String>, ArchiveError> {
    let bad = |message: String| ArchiveError::Invalid {
        archive: archive.to_path_buf(),
        message,
    };
    let mut f = BufReader::new(fs::File::open(archive).map_err(io(archive))?);
    let mut magic = [0u8; 2];
    let gz = {
        let buf = std::io::BufRead::fill_buf(&mut f).map_err(io(archive))?;
        if buf.len() >= 2 {
            magic.copy_from_slice(&buf[..2]);
        }
        magic == [0x1f, 0x8b]
    };
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut tar = tar::Archive::new(reader);
    let mut sums = BTreeMap::new();
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable entry: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let Some(name) = plain_name(&raw).map(str::to_string) else {
            return Err(bad(format!(
                "entry {shown:?} is not a plain file name (folders, absolute paths and `..` are refused)"
            )));
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!(
                "entry {name:?} is not a regular file ({:?})",
                entry.header().entry_type()
            )));
        }
        if sums.contains_key(&name) {
            return Err(bad(format!("entry {name:?} appears twice")));
        }
        if sums.len() >= MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let small = name == MANIFEST_FILE || name == SIG_FILE || name == SUMS_FILE;
        let limit = if small {
            MAX_SMALL_BYTES
        } else {
            MAX_MODEL_BYTES
        };
        let size = entry.header().size().map_err(|e| bad(e.to_string()))?;
        if size > limit {
            return Err(bad(format!(
                "entry {name:?} is {size} bytes (at most {limit})"
            )));
        }
        let path = stage.join(&name);
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("entry {name:?} is truncated or corrupt: {e}")))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > limit {
                return Err(bad(format!("entry {name:?} is larger than {limit} bytes")));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io(&path))?;
        }
        out.sync_all().map_err(io(&path))?;
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sums.insert(name, digest);
    }
    // Whatever follows the tar's end (a truncated or corrupt gzip stream
    // fails here too): read the rest through so that the gzip trailer's CRC
    // is checked.
    let mut rest = tar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| bad(format!("corrupt after the last entry: {e}")))?;
    Ok(sums)
}

/// Check `SHA256SUMS` against the files extracted: it must list each of
/// them, and nothing else, with the right digest.
fn check_sums(
    archive: &Path,
    stage: &Path,
    got: &BTreeMap<String, String>,
) -> Result<(), ArchiveError> {
    let bad = |message: String| ArchiveError::Invalid {
        archive: archive.to_path_buf(),
        message,
    };
    if !got.contains_key(SUMS_FILE) {
        return Err(bad(format!("no {SUMS_FILE} entry")));
    }
    let text =
        fs::read_to_string(stage.join(SUMS_FILE)).map_err(|e| bad(format!("{SUMS_FILE}: {e}")))?;
    let mut listed = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (digest, name) = line
            .split_once("  ")
            .ok_or_else(|| bad(format!("{SUMS_FILE}: malformed line {line:?}")))?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("{SUMS_FILE}: malformed digest for {name:?}")));
        }
        if listed
            .insert(name.to_string(), digest.to_ascii_lowercase())
            .is_some()
        {
            return Err(bad(format!("{SUMS_FILE} lists {name:?} twice")));
        }
    }
    for (name, digest) in got.iter().filter(|(n, _)| n.as_str() != SUMS_FILE) {
        match listed.remove(name) {
            None => return Err(bad(format!("{name:?} is not listed in {SUMS_FILE}"))),
            Some(want) if &want != digest => {
                return Err(bad(format!(
                    "{name:?} has sha256 {digest} but {SUMS_FILE} says {want} (corrupt or tampered)"
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(name) = listed.keys().next() {
        return Err(bad(format!(
            "{SUMS_FILE} lists {name:?}, which the archive does not hold"
        )));
    }
    Ok(())
}

/// Is the installed bundle at `dir` the same as the staged one (same
/// manifest, same signature)? The manifest pins the model's sha256.
fn same_bundle(dir: &Path, staged: &Bundle) -> bool {
    let read = |p: PathBuf| fs::read(p).ok();
    read(dir.join(MANIFEST_FILE)).as_deref() == Some(staged.manifest_bytes.as_slice())
        && read(dir.join(SIG_FILE)).map(|s| String::from_utf8_lossy(&s).into_owned())
            == staged.signature
        && Bundle::open(dir).is_ok()
}

/// Verify `archive` and install it as `<models_dir>/bundles/<name>`,
/// atomically. `policy`: the daemon's signature policy (None: any signature
/// present must still verify). A different bundle of the same name is
/// replaced only with `force`.
pub fn install(
    archive: &Path,
    models_dir: &Path,
    policy: Option<&TrustPolicy>,
    force: bool,
) -> Result<Installed, ArchiveError> {
    let bundles = models_dir.join("bundles");
    fs::create_dir_all(&bundles).map_err(io(&bundles))?;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let stage_dir = bundles.join(format!(
        ".install-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    fs::create_dir(&stage_dir).map_err(io(&stage_dir))?;
    let mut stage = Staging {
        dir: stage_dir.clone(),
        keep: false,
    };
    let got = extract(archive, &stage_dir)?;
    check_sums(archive, &stage_dir, &got)?;
    fs::remove_file(stage_dir.join(SUMS_FILE)).map_err(io(&stage_dir))?;
    let in_bundle = |source| ArchiveError::Bundle {
        archive: archive.to_path_buf(),
        source,
    };
    let (b, signature) = match policy {
        Some(p) => Bundle::open_trusted(&stage_dir, p).map_err(in_bundle)?,
        None => {
            let b = Bundle::open(&stage_dir).map_err(in_bundle)?;
            let st = b.signature_status(&[]).map_err(|source| {
                in_bundle(BundleError::Signature {
                    dir: stage_dir.clone(),
                    source,
                })
            })?;
            (b, st)
        }
    };
    // Only the manifest, its signature and its model files.
    let models = b.model_files();
    if let Some(extra) = got.keys().find(|n| {
        ![MANIFEST_FILE, SIG_FILE, SUMS_FILE].contains(&n.as_str())
            && !models.iter().any(|(m, _)| m == n)
    }) {
        return Err(ArchiveError::Invalid {
            archive: archive.to_path_buf(),
            message: format!("entry {extra:?} is not part of bundle {}", b.name()),
        });
    }
    let name = b.name().to_string();
    let Some(_) = plain_name(name.as_bytes()) else {
        return Err(ArchiveError::Invalid {
            archive: archive.to_path_buf(),
            message: format!("bundle name {name:?} cannot be a folder name"),
        });
    };
    let target = bundles.join(&name);
    let sha256 = b.sha256().to_string();
    let done = |outcome| Installed {
        name: name.clone(),
        dir: target.clone(),
        sha256: sha256.clone(),
        signature,
        outcome,
    };
    let exists = fs::symlink_metadata(&target).is_ok();
    if exists && same_bundle(&target, &b) {
        return Ok(done(Outcome::AlreadyInstalled));
    }
    for f in fs::read_dir(&stage_dir).map_err(io(&stage_dir))? {
        let f = f.map_err(io(&stage_dir))?.path();
        let _ = fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    }
    let _ = fs::set_permissions(
        &stage_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    );
    fsync_dir(&stage_dir)?;
    if !exists {
        // rename(2) of a folder onto a missing name: all or nothing.
        fs::rename(&stage_dir, &target).map_err(io(&target))?;
        stage.keep = true;
        fsync_dir(&bundles)?;
        return Ok(done(Outcome::Installed));
    }
    if !force {
        let installed = Bundle::open(&target)
            .map(|t| t.sha256().to_string())
            .unwrap_or_else(|e| format!("unreadable: {e}"));
        return Err(ArchiveError::Exists {
            name,
            dir: target.clone(),
            installed,
            archive_sha: sha256,
        });
    }
    // Swap the two folders in one step; the old bundle ends up in the
    // staging folder, which is then removed.
    exchange(&stage_dir, &target).map_err(io(&target))?;
    fsync_dir(&bundles)?;
    Ok(done(Outcome::Replaced))
}

/// Swap two folders in one step (renameat2 RENAME_EXCHANGE).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
}

/// Without renameat2: move `b` aside, `a` into place, the old one to `a`.
/// A crash in between leaves `b` missing and its copy at `a`'s name.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let aside = a.with_extension("old");
    fs::rename(b, &aside)?;
    if let Err(e) = fs::rename(a, b) {
        let _ = fs::rename(&aside, b);
        return Err(e);
    }
    fs::rename(&aside, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_entries() {
        for ok in ["manifest.toml", "./model.onnx", "SHA256SUMS"] {
            assert!(plain_name(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "a/b",
            "..",
            ".",
            "",
            ".hidden",
            "./../x",
        ] {
            assert!(plain_name(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(plain_name(&[0xff, 0xfe]).is_none());
    }
}
