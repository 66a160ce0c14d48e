//! Durable template store on sled 0.34.
//!
//! Layout (one sled database per gallery directory, four trees):
//!
//! | tree        | key                          | value                          |
//! |-------------|------------------------------|--------------------------------|
//! | `meta`      | `schema`, `model`, `dim`, `next_id` | u32 / ModelId / u32 / u64 (LE) |
//! | `users`     | user name (UTF-8)            | encoded [`User`]               |
//! | `templates` | template id (u64 big-endian) | encoded [`Template`]           |
//! | `by_user`   | name ‖ 0x00 ‖ id (BE)        | empty (per-user template index) |
//!
//! Durability and atomicity: every mutating call runs one sled transaction over
//! all trees it touches (all-or-nothing, also across a crash) and then calls
//! `Db::flush()`, which writes and fsyncs the log, before returning. Mutations
//! are serialised by a mutex, so the reads that prepare a transaction (sled's
//! transactional trees cannot iterate) see the state the transaction applies to.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{debug, info, warn};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::error::{GalleryError, Result};
use super::types::{
    decode_model, decode_template, decode_user, encode_model, encode_template, encode_user,
    now_unix, validate_embedding, validate_name, Counts, Dec, Enc, ModelId, NewTemplate, Template,
    User,
};

/// Schema version written by this code.
pub const SCHEMA_VERSION: u32 = 1;

const K_SCHEMA: &[u8] = b"schema";
const K_MODEL: &[u8] = b"model";
const K_DIM: &[u8] = b"dim";
const K_NEXT_ID: &[u8] = b"next_id";

/// Maximum length of a template's `source` string, in bytes.
pub const MAX_SOURCE_LEN: usize = 1024;

/// How [`Store::open`] treats a missing / existing gallery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The gallery must exist.
    Open,
    /// The gallery must not exist yet.
    Create,
    /// Open it, creating it if needed.
    OpenOrCreate,
}

/// Options for opening a gallery.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Embedding dimension (the embedder manifest's `output.dim`: 512 for FaceNet, 192 for MobileFaceNet).
    pub dim: usize,
    /// Model the running daemon uses; must equal the stored one.
    pub model: ModelId,
    /// Create / open behaviour.
    pub mode: OpenMode,
    /// Open even if other users can access the directory or its files, and do
    /// not tighten permissions.
    pub allow_insecure_permissions: bool,
    /// sled page cache size in bytes (default 64 MiB; the scan keeps its own copy).
    pub cache_capacity: u64,
    /// How long to wait for the database lock (another process, or a just-closed
    /// instance in this process whose sled threads have not exited yet).
    pub lock_wait: std::time::Duration,
}

impl StoreOptions {
    /// Options with defaults: `OpenOrCreate`, secure permissions, 64 MiB cache.
    pub fn new(dim: usize, model: ModelId) -> Self {
        Self {
            dim,
            model,
            mode: OpenMode::OpenOrCreate,
            allow_insecure_permissions: false,
            cache_capacity: 64 << 20,
            lock_wait: std::time::Duration::from_secs(3),
        }
    }
}

/// Metadata readable without knowing the model (see [`Store::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GalleryInfo {
    /// Schema version on disk.
    pub schema: u32,
    /// Model the gallery was enrolled with.
    pub model: ModelId,
    /// Embedding dimension.
    pub dim: usize,
    /// Counts.
    pub counts: Counts,
}

/// The durable store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    users: sled::Tree,
    templates: sled::Tree,
    by_user: sled::Tree,
    dim: usize,
    model: ModelId,
    secure: bool,
    write_lock: Mutex<()>,
    /// Extra handle on sled's log file, to fsync it (see `durable`).
    db_file: fs::File,
    /// Blob files already fsynced.
    synced_blobs: Mutex<std::collections::HashSet<std::ffi::OsString>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("dim", &self.dim)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<GalleryError>>;

fn abort<T>(e: GalleryError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tid_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn index_key(user: &str, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 9);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn index_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 1);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k
}

fn u32_value(v: &[u8], what: &str) -> Result<u32> {
    let a: [u8; 4] = v
        .try_into()
        .map_err(|_| GalleryError::Corrupt(format!("meta {what}: bad length {}", v.len())))?;
    Ok(u32::from_le_bytes(a))
}

fn u64_value(v: &[u8], what: &str) -> Result<u64> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| GalleryError::Corrupt(format!("meta {what}: bad length {}", v.len())))?;
    Ok(u64::from_le_bytes(a))
}

fn id_from_key(k: &[u8]) -> Result<u64> {
    let a: [u8; 8] = k
        .try_into()
        .map_err(|_| GalleryError::Corrupt(format!("template key of length {}", k.len())))?;
    Ok(u64::from_be_bytes(a))
}

pub(crate) fn decode_user_bytes(v: &[u8]) -> Result<User> {
    let mut d = Dec::new(v, "user");
    let u = decode_user(&mut d)?;
    d.finish()?;
    Ok(u)
}

pub(crate) fn decode_template_bytes(v: &[u8]) -> Result<Template> {
    let mut d = Dec::new(v, "template");
    let t = decode_template(&mut d)?;
    d.finish()?;
    Ok(t)
}

fn user_bytes(u: &User) -> Vec<u8> {
    let mut e = Enc::with_capacity(32 + u.name.len());
    encode_user(u, &mut e);
    e.buf
}

fn template_bytes(t: &Template) -> Vec<u8> {
    let mut e = Enc::with_capacity(64 + t.embedding.len() * 4);
    encode_template(t, &mut e);
    e.buf
}

/// Permission policy, applied before sled touches anything:
///
/// * the gallery directory itself with any "other" permission bit →
///   [`GalleryError::InsecurePermissions`] (refuse);
/// * an entry *inside* that private (0700) directory — file or sub-directory —
///   with "other" bits could never be reached by other users (they cannot
///   traverse the gallery directory). The only way this arises by itself is a
///   crash between sled creating the entry under the process umask (`blobs/`
///   on creation, a new `snap.*` later) and our chmod right after it, so it is
///   repaired (0600 / 0700) with a warning instead of making a crashed gallery
///   unopenable (found by the crash test).
fn check_permissions(dir: &Path) -> Result<()> {
    let md = fs::symlink_metadata(dir).map_err(|e| GalleryError::io(dir, e))?;
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 || !md.is_dir() {
        return Err(GalleryError::InsecurePermissions {
            path: dir.to_path_buf(),
            mode,
        });
    }
    repair_inside(dir)
}

fn repair_inside(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| GalleryError::io(dir, e))? {
        let entry = entry.map_err(|e| GalleryError::io(dir, e))?;
        let path = entry.path();
        let md = fs::symlink_metadata(&path).map_err(|e| GalleryError::io(&path, e))?;
        if md.file_type().is_symlink() {
            continue;
        }
        let mode = md.permissions().mode() & 0o7777;
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        if mode & 0o007 != 0 {
            warn!(
                "{} had mode {mode:04o} inside the private gallery directory (interrupted \
                 write?); setting {want:04o}",
                path.display()
            );
            fs::set_permissions(&path, fs::Permissions::from_mode(want))
                .map_err(|e| GalleryError::io(&path, e))?;
        }
        if md.is_dir() {
            repair_inside(&path)?;
        }
    }
    Ok(())
}

/// Sets 0700 on directories and 0600 on files under `dir` (inclusive),
/// whatever the umask was when they were created.
pub(crate) fn tighten_permissions(dir: &Path) -> Result<()> {
    let md = fs::symlink_metadata(dir).map_err(|e| GalleryError::io(dir, e))?;
    if md.file_type().is_symlink() {
        return Ok(());
    }
    let want = if md.is_dir() { 0o700 } else { 0o600 };
    if md.permissions().mode() & 0o7777 != want {
        debug!("setting mode {want:o} on {}", dir.display());
        fs::set_permissions(dir, fs::Permissions::from_mode(want))
            .map_err(|e| GalleryError::io(dir, e))?;
    }
    if md.is_dir() {
        for entry in fs::read_dir(dir).map_err(|e| GalleryError::io(dir, e))? {
            let entry = entry.map_err(|e| GalleryError::io(dir, e))?;
            tighten_permissions(&entry.path())?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| GalleryError::io(dir, e))
}

/// Opens sled, retrying while its file lock is held. sled 0.34 releases the lock
/// only when its last background thread lets go of the log file, which can be
/// a little after the `Db` was dropped (seen under qemu); another process
/// holding the gallery gives [`GalleryError::Locked`] after `lock_wait`.
fn open_sled(path: &Path, cache_capacity: u64, lock_wait: std::time::Duration) -> Result<sled::Db> {
    let start = std::time::Instant::now();
    let retry = |start: std::time::Instant| -> Result<()> {
        if start.elapsed() >= lock_wait {
            return Err(GalleryError::Locked(path.to_path_buf()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        Ok(())
    };
    loop {
        if !remove_stale_snapshots(path)? {
            retry(start)?;
            continue;
        }
        remove_interrupted_conf(path)?;
        let res = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .open();
        match res {
            Ok(db) => {
                // New files (conf, db, blobs/) must survive a power loss too.
                // sled writes `conf` once, at creation, without fsync.
                let conf = path.join("conf");
                fs::File::open(&conf)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| GalleryError::io(&conf, e))?;
                sync_dir(path)?;
                return Ok(db);
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                retry(start)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Works around a sled 0.34.7 creation bug: on a new database sled writes
/// `conf` (settings, then a CRC32 trailer, two writes, no fsync) *before* it
/// creates the `db` file, and on open it only warns about a bad CRC, cuts the
/// last four bytes and parses the rest. A process killed between those writes
/// leaves a `conf` that fails to parse, and `sled::open` returns `Corruption`
/// forever (found by `tests/gallery_crash.rs::crash_during_creation` under
/// qemu). A `conf` whose CRC does not match while `db` is missing or empty can
/// only come from an interrupted creation, so nothing was ever stored: remove
/// it and let sled write it again. A bad `conf` next to a non-empty `db` is
/// left alone (sled reports it; we never delete data).
fn remove_interrupted_conf(path: &Path) -> Result<()> {
    let conf = path.join("conf");
    let bytes = match fs::read(&conf) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(GalleryError::io(&conf, e)),
    };
    // sled itself treats <= 8 bytes as "no config" and rewrites it.
    if bytes.len() <= 8 || sled_conf_crc_ok(&bytes) {
        return Ok(());
    }
    let db_path = path.join("db");
    let db_empty = match fs::metadata(&db_path) {
        Ok(m) => m.len() == 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(GalleryError::io(&db_path, e)),
    };
    if !db_empty {
        warn!(
            "sled settings file {} fails its checksum next to a non-empty database; leaving it",
            conf.display()
        );
        return Ok(());
    }
    warn!(
        "removing sled settings file {} left by a creation that was interrupted",
        conf.display()
    );
    fs::remove_file(&conf).map_err(|e| GalleryError::io(&conf, e))?;
    sync_dir(path)
}

/// sled 0.34's `conf`: the settings text followed by its CRC32 (little endian).
fn sled_conf_crc_ok(bytes: &[u8]) -> bool {
    let Some(split) = bytes.len().checked_sub(4) else {
        return false;
    };
    let (body, trailer) = bytes.split_at(split);
    let mut expected = [0u8; 4];
    expected.copy_from_slice(trailer);
    crc32fast::hash(body) == u32::from_le_bytes(expected)
}

/// Works around a sled 0.34.7 recovery bug: sled writes a snapshot to
/// `snap.<lsn>.generating`, fsyncs it and renames it to `snap.<lsn>`, but on
/// open it takes the lexicographically last `snap.*` file *including* a
/// `.generating` leftover (its filter only skips `.in___motion`). After a crash
/// while a snapshot was being written, that partial file fails its CRC and
/// `sled::open` returns `Corruption` forever: the gallery would not open.
/// A `.generating` file is only complete once renamed, so removing leftovers
/// is always safe — but only while nobody has the database open, which we
/// check by taking the same `flock` sled takes on the `db` file.
///
/// Returns `false` if the database is locked (caller retries).
fn remove_stale_snapshots(path: &Path) -> Result<bool> {
    let db_path = path.join("db");
    let db_file = match fs::File::open(&db_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(GalleryError::io(&db_path, e)),
    };
    match db_file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(false),
        Err(fs::TryLockError::Error(e)) => return Err(GalleryError::io(&db_path, e)),
    }
    for entry in fs::read_dir(path).map_err(|e| GalleryError::io(path, e))? {
        let entry = entry.map_err(|e| GalleryError::io(path, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            warn!(
                "removing incomplete sled snapshot {} left by an interrupted write",
                entry.path().display()
            );
            fs::remove_file(entry.path()).map_err(|e| GalleryError::io(entry.path(), e))?;
        }
    }
    // The lock is released when `db_file` is dropped, before sled takes it.
    drop(db_file);
    Ok(true)
}

fn is_sled_dir(dir: &Path) -> bool {
    dir.join("conf").exists() || dir.join("db").exists()
}

impl Store {
    /// Opens (and/or creates) the gallery at `path`.
    ///
    /// Errors: [`GalleryError::NotFound`], [`GalleryError::AlreadyExists`],
    /// [`GalleryError::InsecurePermissions`], [`GalleryError::ModelMismatch`],
    /// [`GalleryError::DimensionMismatch`], [`GalleryError::UnsupportedSchema`],
    /// [`GalleryError::NotAGallery`], I/O and database errors.
    pub fn open(path: impl AsRef<Path>, opts: &StoreOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let exists = path.exists();
        let has_db = exists && is_sled_dir(&path);
        match opts.mode {
            OpenMode::Open if !has_db => return Err(GalleryError::NotFound(path)),
            OpenMode::Create if has_db => return Err(GalleryError::AlreadyExists(path)),
            _ => {}
        }
        if opts.dim == 0 || opts.dim > 65536 {
            return Err(GalleryError::InvalidEmbedding(format!(
                "unsupported dimension {}",
                opts.dim
            )));
        }
        if !exists {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|e| GalleryError::io(&path, e))?;
            // The umask may have removed bits from 0700; set it explicitly.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                .map_err(|e| GalleryError::io(&path, e))?;
        }
        let secure = !opts.allow_insecure_permissions;
        if secure {
            check_permissions(&path)?;
        } else {
            warn!(
                "opening gallery {} without permission checks (allow_insecure_permissions)",
                path.display()
            );
        }

        let db = open_sled(&path, opts.cache_capacity, opts.lock_wait)?;
        if secure {
            tighten_permissions(&path)?;
        }
        let db_path = path.join("db");
        let db_file = fs::File::open(&db_path).map_err(|e| GalleryError::io(&db_path, e))?;
        let meta = db.open_tree("meta")?;
        let users = db.open_tree("users")?;
        let templates = db.open_tree("templates")?;
        let by_user = db.open_tree("by_user")?;

        let store = Store {
            path: path.clone(),
            db,
            meta,
            users,
            templates,
            by_user,
            dim: opts.dim,
            model: opts.model.clone(),
            secure,
            write_lock: Mutex::new(()),
            db_file,
            synced_blobs: Mutex::new(Default::default()),
        };

        match store.read_meta()? {
            None => {
                if opts.mode == OpenMode::Open {
                    return Err(GalleryError::NotAGallery(path));
                }
                if store.users.len() + store.templates.len() > 0 {
                    return Err(GalleryError::NotAGallery(path));
                }
                store.init_meta()?;
                info!(
                    "created gallery {} (dim {}, model {})",
                    path.display(),
                    opts.dim,
                    opts.model
                );
            }
            Some((schema, model, dim)) => {
                if schema != SCHEMA_VERSION {
                    return Err(GalleryError::UnsupportedSchema {
                        found: schema,
                        supported: SCHEMA_VERSION,
                    });
                }
                if model != opts.model {
                    return Err(GalleryError::ModelMismatch {
                        stored: model,
                        running: opts.model.clone(),
                    });
                }
                if dim != opts.dim {
                    return Err(GalleryError::DimensionMismatch {
                        stored: dim,
                        requested: opts.dim,
                    });
                }
                debug!("opened gallery {}", path.display());
            }
        }
        Ok(store)
    }

    /// Reads schema, model, dimension and counts without requiring a model match
    /// (for `facegate gallery info`, or to explain a mismatch). Opens read-write
    /// under the hood (sled has no read-only mode) but writes nothing.
    pub fn inspect(
        path: impl AsRef<Path>,
        allow_insecure_permissions: bool,
    ) -> Result<GalleryInfo> {
        let path = path.as_ref();
        if !is_sled_dir(path) {
            return Err(GalleryError::NotFound(path.to_path_buf()));
        }
        if !allow_insecure_permissions {
            check_permissions(path)?;
        }
        let db = open_sled(path, 16 << 20, std::time::Duration::from_secs(3))?;
        let meta = db.open_tree("meta")?;
        let get = |k: &[u8]| -> Result<sled::IVec> {
            meta.get(k)?
                .ok_or_else(|| GalleryError::NotAGallery(path.to_path_buf()))
        };
        let schema = u32_value(&get(K_SCHEMA)?, "schema")?;
        let model_bytes = get(K_MODEL)?;
        let mut d = Dec::new(&model_bytes, "model");
        let model = decode_model(&mut d)?;
        let dim = u32_value(&get(K_DIM)?, "dim")? as usize;
        let counts = Counts {
            users: db.open_tree("users")?.len(),
            templates: db.open_tree("templates")?.len(),
        };
        Ok(GalleryInfo {
            schema,
            model,
            dim,
            counts,
        })
    }

    fn read_meta(&self) -> Result<Option<(u32, ModelId, usize)>> {
        let (Some(schema), Some(model), Some(dim)) = (
            self.meta.get(K_SCHEMA)?,
            self.meta.get(K_MODEL)?,
            self.meta.get(K_DIM)?,
        ) else {
            return Ok(None);
        };
        let mut d = Dec::new(&model, "model");
        let model = decode_model(&mut d)?;
        d.finish()?;
        Ok(Some((
            u32_value(&schema, "schema")?,
            model,
            u32_value(&dim, "dim")? as usize,
        )))
    }

    fn init_meta(&self) -> Result<()> {
        let mut e = Enc::default();
        encode_model(&self.model, &mut e);
        let model = e.buf;
        let dim = (self.dim as u32).to_le_bytes();
        self.meta.transaction(|m| {
            m.insert(K_SCHEMA, &SCHEMA_VERSION.to_le_bytes())?;
            m.insert(K_MODEL, model.as_slice())?;
            m.insert(K_DIM, &dim)?;
            m.insert(K_NEXT_ID, &1u64.to_le_bytes())?;
            Ok::<_, ConflictableTransactionError<GalleryError>>(())
        })?;
        self.durable()
    }

    /// Makes every committed change durable and re-applies permissions to
    /// files sled may have created meanwhile.
    ///
    /// `Db::flush()` alone is not enough for power loss: sled 0.34 makes log
    /// writes "stable" with `sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER)`,
    /// which neither flushes the drive's write cache nor the file's metadata
    /// (size of the growing log), and writes blob files (pages > ~128 KiB)
    /// without any fsync. So after the flush we `fsync` the log file, every new
    /// blob file and both directories.
    fn durable(&self) -> Result<()> {
        self.db.flush()?;
        let db_path = || self.path.join("db");
        self.db_file
            .sync_all()
            .map_err(|e| GalleryError::io(db_path(), e))?;
        let blobs = self.path.join("blobs");
        let mut new_blob = false;
        if let Ok(rd) = fs::read_dir(&blobs) {
            let mut synced = self
                .synced_blobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for entry in rd.flatten() {
                let name = entry.file_name();
                if synced.contains(&name) {
                    continue;
                }
                // A blob may be garbage-collected concurrently: ignore NotFound.
                match fs::File::open(entry.path()).and_then(|f| f.sync_all()) {
                    Ok(()) => {
                        synced.insert(name);
                        new_blob = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(GalleryError::io(entry.path(), e)),
                }
            }
        }
        if new_blob {
            sync_dir(&blobs)?;
        }
        if self.secure {
            tighten_permissions(&self.path)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave sled half-written (each
        // change is one transaction), so a poisoned lock is safe to reuse.
        self.write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Directory of the gallery.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Model identity of the gallery.
    pub fn model(&self) -> &ModelId {
        &self.model
    }

    /// Adds a user. Errors with [`GalleryError::UserExists`] if the name is taken.
    pub fn add_user(&self, name: &str, uid: Option<u32>) -> Result<User> {
        validate_name(name)?;
        let _g = self.lock();
        let user = User {
            name: name.to_string(),
            uid,
            created: now_unix(),
            enabled: true,
        };
        let bytes = user_bytes(&user);
        self.users.transaction(|u| {
            if u.get(name.as_bytes())?.is_some() {
                return abort(GalleryError::UserExists(name.to_string()));
            }
            u.insert(name.as_bytes(), bytes.as_slice())?;
            Ok(())
        })?;
        self.durable()?;
        info!("added user {name:?}");
        Ok(user)
    }

    /// Enables or disables a user; returns the updated record.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<User> {
        let _g = self.lock();
        let user = self.users.transaction(|u| {
            let Some(v) = u.get(name.as_bytes())? else {
                return abort(GalleryError::UnknownUser(name.to_string()));
            };
            let mut user = decode_user_bytes(&v).or_else(abort)?;
            user.enabled = enabled;
            u.insert(name.as_bytes(), user_bytes(&user))?;
            Ok(user)
        })?;
        self.durable()?;
        info!("user {name:?} enabled={enabled}");
        Ok(user)
    }

    /// Removes a user and all their templates atomically; returns the ids removed.
    pub fn remove_user(&self, name: &str) -> Result<Vec<u64>> {
        let _g = self.lock();
        if self.users.get(name.as_bytes())?.is_none() {
            return Err(GalleryError::UnknownUser(name.to_string()));
        }
        let ids = self.template_ids_of_unlocked(name)?;
        (&self.users, &self.templates, &self.by_user).transaction(|(u, t, i)| {
            u.remove(name.as_bytes())?;
            for &id in &ids {
                t.remove(&tid_key(id))?;
                i.remove(index_key(name, id))?;
            }
            Ok::<_, ConflictableTransactionError<GalleryError>>(())
        })?;
        self.durable()?;
        info!("removed user {name:?} and {} templates", ids.len());
        Ok(ids)
    }

    /// Adds one template; see [`Store::add_templates`].
    pub fn add_template(&self, t: NewTemplate) -> Result<Template> {
        let mut v = self.add_templates(vec![t])?;
        v.pop()
            .ok_or_else(|| GalleryError::Corrupt("batch insert returned nothing".into()))
    }

    /// Adds a batch of templates atomically (all or none); returns them with
    /// their new ids. Every owner must exist.
    pub fn add_templates(&self, batch: Vec<NewTemplate>) -> Result<Vec<Template>> {
        for t in &batch {
            validate_embedding(&t.embedding, self.dim)?;
            if t.source.len() > MAX_SOURCE_LEN {
                return Err(GalleryError::InvalidEmbedding(format!(
                    "source string longer than {MAX_SOURCE_LEN} bytes"
                )));
            }
            if !t.quality.is_finite() {
                return Err(GalleryError::InvalidEmbedding("non-finite quality".into()));
            }
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let _g = self.lock();
        let created = now_unix();
        let out = (&self.meta, &self.users, &self.templates, &self.by_user)
            .transaction(|(m, u, t, i)| insert_batch_tx(m, u, t, i, &batch, created))?;
        self.durable()?;
        debug!("added {} templates", out.len());
        Ok(out)
    }

    /// Replaces every template of `users` by `batch` in one transaction
    /// (all or nothing): re-enrolment with a new embedder. Every owner in
    /// `batch` must be one of `users` and exist.
    pub fn replace_templates(
        &self,
        users: &[String],
        batch: Vec<NewTemplate>,
    ) -> Result<Vec<Template>> {
        for t in &batch {
            validate_embedding(&t.embedding, self.dim)?;
            if t.source.len() > MAX_SOURCE_LEN || !t.quality.is_finite() {
                return Err(GalleryError::InvalidEmbedding(
                    "source too long or non-finite quality".into(),
                ));
            }
            if !users.contains(&t.user) {
                return Err(GalleryError::UnknownUser(t.user.clone()));
            }
        }
        let _g = self.lock();
        let mut old = Vec::new();
        for name in users {
            for id in self.template_ids_of_unlocked(name)? {
                old.push((name.clone(), id));
            }
        }
        let created = now_unix();
        let out = (&self.meta, &self.users, &self.templates, &self.by_user).transaction(
            |(m, u, t, i)| {
                for (name, id) in &old {
                    t.remove(&tid_key(*id))?;
                    i.remove(index_key(name, *id))?;
                }
                insert_batch_tx(m, u, t, i, &batch, created)
            },
        )?;
        self.durable()?;
        info!(
            "replaced {} templates of {} users by {}",
            old.len(),
            users.len(),
            out.len()
        );
        Ok(out)
    }

    /// Removes one template; returns it.
    pub fn remove_template(&self, id: u64) -> Result<Template> {
        let _g = self.lock();
        let tpl = (&self.templates, &self.by_user).transaction(|(t, i)| {
            let Some(v) = t.remove(&tid_key(id))? else {
                return abort(GalleryError::UnknownTemplate(id));
            };
            let tpl = decode_template_bytes(&v).or_else(abort)?;
            i.remove(index_key(&tpl.user, id))?;
            Ok(tpl)
        })?;
        self.durable()?;
        debug!("removed template {id}");
        Ok(tpl)
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        self.users
            .get(name.as_bytes())?
            .map(|v| decode_user_bytes(&v))
            .transpose()
    }

    /// All users, ordered by name.
    pub fn users(&self) -> Result<Vec<User>> {
        self.users
            .iter()
            .map(|r| decode_user_bytes(&r?.1))
            .collect()
    }

    /// One template.
    pub fn template(&self, id: u64) -> Result<Option<Template>> {
        self.templates
            .get(tid_key(id))?
            .map(|v| decode_template_bytes(&v))
            .transpose()
    }

    /// All templates, ordered by id.
    pub fn templates(&self) -> Result<Vec<Template>> {
        self.templates
            .iter()
            .map(|r| decode_template_bytes(&r?.1))
            .collect()
    }

    /// Ids of the templates of `name`, ordered.
    pub fn template_ids_of(&self, name: &str) -> Result<Vec<u64>> {
        self.template_ids_of_unlocked(name)
    }

    fn template_ids_of_unlocked(&self, name: &str) -> Result<Vec<u64>> {
        let prefix = index_prefix(name);
        self.by_user
            .scan_prefix(&prefix)
            .map(|r| {
                let (k, _) = r?;
                id_from_key(&k[prefix.len()..])
            })
            .collect()
    }

    /// Numbers of users and templates.
    pub fn counts(&self) -> Result<Counts> {
        Ok(Counts {
            users: self.users.len(),
            templates: self.templates.len(),
        })
    }

    /// Full consistency check: every record decodes, every template's owner
    /// exists, has the gallery's dimension and appears in the per-user index,
    /// every index entry points at a template of that user, and ids are below
    /// `next_id`. Returns the counts.
    pub fn verify(&self) -> Result<Counts> {
        let _g = self.lock();
        let next = match self.meta.get(K_NEXT_ID)? {
            Some(v) => u64_value(&v, "next_id")?,
            None => return Err(GalleryError::Corrupt("missing next_id".into())),
        };
        let users = self.users()?;
        let mut names = std::collections::HashSet::new();
        for u in &users {
            names.insert(u.name.clone());
        }
        let mut n_templates = 0;
        for r in self.templates.iter() {
            let (k, v) = r?;
            let id = id_from_key(&k)?;
            let t = decode_template_bytes(&v)?;
            if t.id != id || id >= next {
                return Err(GalleryError::Corrupt(format!(
                    "template key {id} holds id {} (next_id {next})",
                    t.id
                )));
            }
            if !names.contains(&t.user) {
                return Err(GalleryError::Corrupt(format!(
                    "template {id} belongs to missing user {:?}",
                    t.user
                )));
            }
            if t.embedding.len() != self.dim {
                return Err(GalleryError::Corrupt(format!(
                    "template {id} has dimension {}",
                    t.embedding.len()
                )));
            }
            if self.by_user.get(index_key(&t.user, id))?.is_none() {
                return Err(GalleryError::Corrupt(format!(
                    "template {id} missing from the index of {:?}",
                    t.user
                )));
            }
            n_templates += 1;
        }
        let mut n_index = 0;
        for r in self.by_user.iter() {
            let (k, _) = r?;
            let Some(pos) = k.iter().position(|&b| b == 0) else {
                return Err(GalleryError::Corrupt("index key without separator".into()));
            };
            let name = std::str::from_utf8(&k[..pos])
                .map_err(|_| GalleryError::Corrupt("index key not UTF-8".into()))?;
            let id = id_from_key(&k[pos + 1..])?;
            match self.template(id)? {
                Some(t) if t.user == name => {}
                _ => {
                    return Err(GalleryError::Corrupt(format!(
                        "index entry ({name:?}, {id}) has no matching template"
                    )))
                }
            }
            n_index += 1;
        }
        if n_index != n_templates {
            return Err(GalleryError::Corrupt(format!(
                "{n_index} index entries for {n_templates} templates"
            )));
        }
        Ok(Counts {
            users: users.len(),
            templates: n_templates,
        })
    }

    /// Applies an import plan in one transaction (see `export.rs`).
    pub(crate) fn apply_import(
        &self,
        new_users: &[User],
        new_templates: &mut [Template],
        keep_ids: bool,
    ) -> Result<()> {
        let _g = self.lock();
        // Ids are assigned before the transaction (the closure may be retried
        // and must be idempotent); the write lock makes this race-free.
        let mut next = self.next_id()?;
        for tpl in new_templates.iter_mut() {
            if keep_ids {
                next = next.max(tpl.id + 1);
            } else {
                tpl.id = next;
                next += 1;
            }
        }
        let templates: &[Template] = new_templates;
        (&self.meta, &self.users, &self.templates, &self.by_user).transaction(|(m, u, t, i)| {
            for user in new_users {
                u.insert(user.name.as_bytes(), user_bytes(user))?;
            }
            for tpl in templates {
                if t.get(tid_key(tpl.id))?.is_some() {
                    return abort(GalleryError::Corrupt(format!(
                        "import: template id {} already present",
                        tpl.id
                    )));
                }
                insert_template_tx(t, i, tpl)?;
            }
            m.insert(K_NEXT_ID, &next.to_le_bytes())?;
            Ok(())
        })?;
        self.durable()
    }

    /// The id the next added template will get (ids are assigned in order and
    /// never reused; a failed or rolled-back batch consumes none).
    pub fn next_id(&self) -> Result<u64> {
        match self.meta.get(K_NEXT_ID)? {
            Some(v) => u64_value(&v, "next_id"),
            None => Err(GalleryError::Corrupt("missing next_id".into())),
        }
    }
}

/// Inside a transaction: `batch` as new templates with ids from `next_id`
/// on (every owner must exist), `next_id` advanced past them.
fn insert_batch_tx(
    m: &TransactionalTree,
    u: &TransactionalTree,
    t: &TransactionalTree,
    i: &TransactionalTree,
    batch: &[NewTemplate],
    created: u64,
) -> TxResult<Vec<Template>> {
    let next = match m.get(K_NEXT_ID)? {
        Some(v) => u64_value(&v, "next_id").or_else(abort)?,
        None => return abort(GalleryError::Corrupt("missing next_id".into())),
    };
    let mut out = Vec::with_capacity(batch.len());
    for (k, nt) in batch.iter().enumerate() {
        if u.get(nt.user.as_bytes())?.is_none() {
            return abort(GalleryError::UnknownUser(nt.user.clone()));
        }
        let tpl = Template {
            id: next + k as u64,
            user: nt.user.clone(),
            embedding: nt.embedding.clone(),
            condition: nt.condition,
            source: nt.source.clone(),
            quality: nt.quality,
            created,
        };
        insert_template_tx(t, i, &tpl)?;
        out.push(tpl);
    }
    m.insert(K_NEXT_ID, &(next + batch.len() as u64).to_le_bytes())?;
    Ok(out)
}

fn insert_template_tx(
    t: &TransactionalTree,
    i: &TransactionalTree,
    tpl: &Template,
) -> TxResult<()> {
    t.insert(&tid_key(tpl.id), template_bytes(tpl))?;
    i.insert(index_key(&tpl.user, tpl.id), &[] as &[u8])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::types::Condition;

    fn model() -> ModelId {
        ModelId::new("test-model", "00ff")
    }

    fn emb(dim: usize, seed: u64) -> Vec<f32> {
        let v: Vec<f32> = (0..dim)
            .map(|i| ((seed * 31 + i as u64 * 7) % 13) as f32 - 6.0)
            .collect();
        crate::gallery::l2_normalized(&v).unwrap()
    }

    fn nt(user: &str, dim: usize, seed: u64) -> NewTemplate {
        NewTemplate {
            user: user.into(),
            embedding: emb(dim, seed),
            condition: Condition::Masked,
            source: "test".into(),
            quality: 0.5,
        }
    }

    #[test]
    fn replace_templates_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("g"), &StoreOptions::new(16, model())).unwrap();
        for u in ["alice", "bob", "carol"] {
            s.add_user(u, None).unwrap();
        }
        s.add_templates(vec![
            nt("alice", 16, 1),
            nt("alice", 16, 2),
            nt("bob", 16, 3),
            nt("carol", 16, 4),
        ])
        .unwrap();
        let users = vec!["alice".to_string(), "bob".to_string()];
        // An owner outside `users`, or a bad embedding: nothing changes.
        let before = s.templates().unwrap();
        assert!(matches!(
            s.replace_templates(&users, vec![nt("alice", 16, 9), nt("carol", 16, 9)]),
            Err(GalleryError::UnknownUser(_))
        ));
        assert!(s
            .replace_templates(&users, vec![nt("alice", 8, 9)])
            .is_err());
        assert_eq!(s.templates().unwrap(), before);
        // Replaced: alice and bob's old templates go, carol's stay.
        let new = s
            .replace_templates(&users, vec![nt("alice", 16, 7), nt("bob", 16, 8)])
            .unwrap();
        assert_eq!(new.iter().map(|t| t.id).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(s.template_ids_of("alice").unwrap(), vec![5]);
        assert_eq!(s.template_ids_of("bob").unwrap(), vec![6]);
        assert_eq!(s.template_ids_of("carol").unwrap(), vec![4]);
        assert_eq!(s.verify().unwrap().templates, 3);
    }

    #[test]
    fn crud_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g");
        let s = Store::open(&p, &StoreOptions::new(16, model())).unwrap();
        s.add_user("alice", Some(1000)).unwrap();
        s.add_user("bob", None).unwrap();
        assert!(matches!(
            s.add_user("alice", None),
            Err(GalleryError::UserExists(_))
        ));
        assert!(matches!(
            s.add_template(nt("carol", 16, 1)),
            Err(GalleryError::UnknownUser(_))
        ));
        let ts = s
            .add_templates(vec![
                nt("alice", 16, 1),
                nt("alice", 16, 2),
                nt("bob", 16, 3),
            ])
            .unwrap();
        assert_eq!(ts.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(s.template_ids_of("alice").unwrap(), vec![1, 2]);
        // a failing batch adds nothing
        assert!(s
            .add_templates(vec![nt("alice", 16, 4), nt("nobody", 16, 5)])
            .is_err());
        assert_eq!(s.counts().unwrap().templates, 3);
        s.remove_template(2).unwrap();
        assert!(matches!(
            s.remove_template(2),
            Err(GalleryError::UnknownTemplate(2))
        ));
        assert!(!s.set_enabled("bob", false).unwrap().enabled);
        assert_eq!(s.remove_user("alice").unwrap(), vec![1]);
        assert_eq!(
            s.verify().unwrap(),
            Counts {
                users: 1,
                templates: 1
            }
        );
        drop(s);
        let s = Store::open(&p, &StoreOptions::new(16, model())).unwrap();
        assert_eq!(
            s.verify().unwrap(),
            Counts {
                users: 1,
                templates: 1
            }
        );
        assert!(!s.user("bob").unwrap().unwrap().enabled);
        // ids are never reused (ids 1..=3 were handed out; the failed batch
        // consumed none, and removed ids 1 and 2 are not handed out again)
        assert_eq!(s.add_template(nt("bob", 16, 9)).unwrap().id, 4);
    }

    #[test]
    fn rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("g"), &StoreOptions::new(8, model())).unwrap();
        assert!(matches!(
            s.add_user("", None),
            Err(GalleryError::InvalidName { .. })
        ));
        assert!(matches!(
            s.add_user("a\0b", None),
            Err(GalleryError::InvalidName { .. })
        ));
        s.add_user("a", None).unwrap();
        let mut t = nt("a", 8, 1);
        t.embedding.push(0.0);
        assert!(matches!(
            s.add_template(t),
            Err(GalleryError::WrongEmbeddingDim {
                expected: 8,
                got: 9
            })
        ));
        let mut t = nt("a", 8, 1);
        t.embedding[0] += 1.0;
        assert!(matches!(
            s.add_template(t),
            Err(GalleryError::InvalidEmbedding(_))
        ));
        let mut t = nt("a", 8, 1);
        t.embedding[0] = f32::NAN;
        assert!(matches!(
            s.add_template(t),
            Err(GalleryError::InvalidEmbedding(_))
        ));
    }

    #[test]
    fn model_dim_and_mode_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g");
        let mut o = StoreOptions::new(8, model());
        o.mode = OpenMode::Open;
        assert!(matches!(
            Store::open(&p, &o),
            Err(GalleryError::NotFound(_))
        ));
        o.mode = OpenMode::Create;
        drop(Store::open(&p, &o).unwrap());
        assert!(matches!(
            Store::open(&p, &o),
            Err(GalleryError::AlreadyExists(_))
        ));
        let other = StoreOptions::new(8, ModelId::new("other", "abcd"));
        let err = Store::open(&p, &other).unwrap_err();
        assert!(matches!(err, GalleryError::ModelMismatch { .. }));
        let msg = err.to_string();
        assert!(msg.contains("test-model") && msg.contains("other"));
        assert!(msg.contains("facegate enroll"), "{msg}");
        assert!(matches!(
            Store::open(&p, &StoreOptions::new(16, model())),
            Err(GalleryError::DimensionMismatch {
                stored: 8,
                requested: 16
            })
        ));
        let info = Store::inspect(&p, false).unwrap();
        assert_eq!(info.model, model());
        assert_eq!(info.dim, 8);
        assert_eq!(info.schema, SCHEMA_VERSION);
    }

    #[test]
    fn leftover_generating_snapshot_is_removed_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g");
        {
            let s = Store::open(&p, &StoreOptions::new(8, model())).unwrap();
            s.add_user("a", None).unwrap();
            s.add_template(nt("a", 8, 1)).unwrap();
        }
        // What a SIGKILL during sled's snapshot write leaves behind.
        let junk = p.join("snap.00000000000FFFFF.generating");
        fs::write(&junk, b"partial snapshot, no valid crc").unwrap();
        fs::set_permissions(&junk, fs::Permissions::from_mode(0o600)).unwrap();
        // Plain sled 0.34.7 picks it up and refuses to open (the upstream bug)...
        let copy = dir.path().join("copy");
        fs::create_dir(&copy).unwrap();
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                fs::copy(e.path(), copy.join(e.file_name())).unwrap();
            }
        }
        match sled::open(&copy) {
            Err(sled::Error::Corruption { .. }) => {}
            other => panic!(
                "expected sled to report corruption, got {:?}",
                other.map(|_| ())
            ),
        }
        // ...the store removes the leftover and opens with all data.
        let s = Store::open(&p, &StoreOptions::new(8, model())).unwrap();
        assert!(!junk.exists());
        assert_eq!(
            s.verify().unwrap(),
            Counts {
                users: 1,
                templates: 1
            }
        );
    }

    #[test]
    fn creation_interrupted_while_sled_wrote_conf_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        // A finished sled `conf`, as sled writes it on creation.
        let good = {
            let p = dir.path().join("ref");
            drop(Store::open(&p, &StoreOptions::new(8, model())).unwrap());
            fs::read(p.join("conf")).unwrap()
        };
        assert!(sled_conf_crc_ok(&good));
        // Every prefix a kill can leave (> 8 bytes: shorter ones sled rewrites
        // itself): settings written, CRC missing or partial.
        for cut in 9..good.len() {
            let p = dir.path().join(format!("g{cut}"));
            fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
            let conf = p.join("conf");
            fs::write(&conf, &good[..cut]).unwrap();
            fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).unwrap();
            let s = Store::open(&p, &StoreOptions::new(8, model()))
                .unwrap_or_else(|e| panic!("conf cut at {cut}: {e}"));
            s.add_user("a", None).unwrap();
            drop(s);
            assert_eq!(fs::read(&conf).unwrap(), good);
        }
        // Plain sled fails on such a directory (the upstream bug this covers).
        let p = dir.path().join("plain");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("conf"), &good[..good.len() - 4]).unwrap();
        assert!(matches!(
            sled::open(&p),
            Err(sled::Error::Corruption { .. })
        ));
    }

    #[test]
    fn bad_conf_next_to_data_is_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g");
        {
            let s = Store::open(&p, &StoreOptions::new(8, model())).unwrap();
            s.add_user("a", None).unwrap();
        }
        let conf = p.join("conf");
        let good = fs::read(&conf).unwrap();
        fs::write(&conf, &good[..good.len() - 4]).unwrap();
        assert!(Store::open(&p, &StoreOptions::new(8, model())).is_err());
        // Left for a human (or a restore), not silently recreated.
        assert_eq!(fs::read(&conf).unwrap(), &good[..good.len() - 4]);
        assert!(fs::metadata(p.join("db")).unwrap().len() > 0);
    }

    fn modes_under(p: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
        let md = fs::symlink_metadata(p).unwrap();
        out.push((
            p.to_path_buf(),
            md.permissions().mode() & 0o7777,
            md.is_dir(),
        ));
        if md.is_dir() {
            for e in fs::read_dir(p).unwrap() {
                modes_under(&e.unwrap().path(), out);
            }
        }
    }

    #[test]
    fn permissions_are_private_and_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g");
        {
            let s = Store::open(&p, &StoreOptions::new(8, model())).unwrap();
            s.add_user("a", None).unwrap();
            s.add_template(nt("a", 8, 1)).unwrap();
        }
        let mut modes = Vec::new();
        modes_under(&p, &mut modes);
        assert!(modes.len() >= 3, "{modes:?}");
        for (path, mode, is_dir) in &modes {
            let want = if *is_dir { 0o700 } else { 0o600 };
            assert_eq!(*mode, want, "{}", path.display());
        }
        // a world-readable file inside the private directory (what a crash
        // right after sled created a file leaves) is repaired, not refused
        let conf = p.join("conf");
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(&p, &StoreOptions::new(8, model())).unwrap());
        assert_eq!(
            fs::metadata(&conf).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        // same for a sub-directory (sled creates blobs/ under the umask)
        let blobs = p.join("blobs");
        fs::set_permissions(&blobs, fs::Permissions::from_mode(0o755)).unwrap();
        drop(Store::open(&p, &StoreOptions::new(8, model())).unwrap());
        assert_eq!(
            fs::metadata(&blobs).unwrap().permissions().mode() & 0o7777,
            0o700
        );
        // a world-readable gallery directory -> distinct error
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        let err = Store::open(&p, &StoreOptions::new(8, model())).unwrap_err();
        assert!(
            matches!(err, GalleryError::InsecurePermissions { mode: 0o755, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("allow_insecure_permissions"));
        let mut o = StoreOptions::new(8, model());
        o.allow_insecure_permissions = true;
        let s = Store::open(&p, &o).unwrap();
        assert_eq!(s.counts().unwrap().templates, 1);
    }
}
