//! The gallery: enrolled users and their face templates.
//!
//! * [`Store`] — durable sled-backed storage (one transaction + fsync per change).
//! * [`Snapshot`] — an immutable, contiguous, 64-byte-aligned matrix of all
//!   templates used by the linear scan; published through an `ArcSwap`, so a
//!   search never waits for a writer and never sees a half-applied change.
//! * [`Gallery`] — both together: every mutation is committed to the store
//!   first and then published as a new snapshot (copy-on-write).
//! * [`simd`] — all `unsafe` code: aligned buffers and the dot-product kernels.
//! * [`export`] — versioned single-file backup / transfer.
//! * [`bench`] — `bench_scan`, the scan benchmark table.

// Only `simd.rs` may contain unsafe code (it opts out with `allow`).
#![deny(unsafe_code)]

pub mod bench;
pub mod error;
pub mod export;
pub mod scan;
pub mod simd;
pub mod store;
pub mod types;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;

pub use error::{GalleryError, Result};
pub use export::{ExportData, ImportMode, ImportReport, EXPORT_MAGIC, EXPORT_VERSION};
pub use scan::{Match, Matrix, QuantizedMatrix, SearchOptions, Snapshot, UserTable};
pub use simd::{Kernel, KernelKind};
pub use store::{GalleryInfo, OpenMode, Store, StoreOptions, SCHEMA_VERSION};
pub use types::{l2_normalized, Condition, Counts, ModelId, NewTemplate, Space, Template, User};

/// A gallery: durable store plus the in-memory scan snapshot.
pub struct Gallery {
    store: Store,
    snapshot: ArcSwap<Snapshot>,
    write: Mutex<()>,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("store", &self.store)
            .field("templates", &self.snapshot.load().len())
            .finish()
    }
}

impl Gallery {
    /// Opens (or creates, per `opts.mode`) the gallery at `path` and loads the
    /// scan matrix. See [`Store::open`] for the errors.
    pub fn open(path: impl AsRef<Path>, opts: &StoreOptions) -> Result<Gallery> {
        let store = Store::open(path, opts)?;
        let snapshot = Snapshot::build(store.dim(), &store.users()?, &store.templates()?);
        log::info!(
            "gallery loaded: {} users, {} templates, kernel {}",
            snapshot.users.len(),
            snapshot.len(),
            Kernel::best().kind()
        );
        Ok(Gallery {
            store,
            snapshot: ArcSwap::from_pointee(snapshot),
            write: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The durable store (read-only helpers: users, templates, verify…).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current immutable snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Top-k enabled users for a unit-norm `query`.
    pub fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<Vec<Match>> {
        self.snapshot.load().search(query, opts)
    }

    /// Adds a user.
    pub fn add_user(&self, name: &str, uid: Option<u32>) -> Result<User> {
        let _g = self.lock();
        let u = self.store.add_user(name, uid)?;
        let old = self.snapshot.load_full();
        self.snapshot.store(Arc::new(Snapshot {
            matrix: old.matrix.clone(),
            periocular: old.periocular.clone(),
            users: Arc::new(old.users.with_user(&u)),
        }));
        Ok(u)
    }

    /// Enables or disables a user (disabled users never match).
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<User> {
        let _g = self.lock();
        let u = self.store.set_enabled(name, enabled)?;
        let old = self.snapshot.load_full();
        if let Some(idx) = old.users.index_of(name) {
            self.snapshot.store(Arc::new(Snapshot {
                matrix: old.matrix.clone(),
                periocular: old.periocular.clone(),
                users: Arc::new(old.users.with_enabled(idx, enabled)),
            }));
        }
        Ok(u)
    }

    /// Removes a user and their templates; returns the removed template ids.
    pub fn remove_user(&self, name: &str) -> Result<Vec<u64>> {
        let _g = self.lock();
        let ids = self.store.remove_user(name)?;
        let old = self.snapshot.load_full();
        if let Some(idx) = old.users.index_of(name) {
            let (users, map) = old.users.without(idx);
            let keep = |_: u64, u: u32| u != idx;
            let remap = |u: u32| map[u as usize];
            self.snapshot.store(Arc::new(Snapshot {
                matrix: Arc::new(old.matrix.retained(keep, remap)),
                periocular: Arc::new(old.periocular.retained(keep, remap)),
                users: Arc::new(users),
            }));
        }
        Ok(ids)
    }

    /// Adds one template.
    pub fn add_template(&self, t: NewTemplate) -> Result<Template> {
        let mut v = self.add_templates(vec![t])?;
        v.pop()
            .ok_or_else(|| GalleryError::Corrupt("batch insert returned nothing".into()))
    }

    /// Adds templates atomically; they are searchable when this returns.
    pub fn add_templates(&self, batch: Vec<NewTemplate>) -> Result<Vec<Template>> {
        let _g = self.lock();
        let added = self.store.add_templates(batch)?;
        let old = self.snapshot.load_full();
        let rows = |space: Space| -> Vec<(u64, u32, &[f32])> {
            added
                .iter()
                .filter(|t| t.condition.space() == space)
                .filter_map(|t| {
                    old.users
                        .index_of(&t.user)
                        .map(|u| (t.id, u, t.embedding.as_slice()))
                })
                .collect()
        };
        let grow = |m: &Arc<Matrix>, space: Space| {
            let r = rows(space);
            if r.is_empty() {
                m.clone()
            } else {
                Arc::new(m.appended(r.into_iter()))
            }
        };
        self.snapshot.store(Arc::new(Snapshot {
            matrix: grow(&old.matrix, Space::Face),
            periocular: grow(&old.periocular, Space::Periocular),
            users: old.users.clone(),
        }));
        Ok(added)
    }

    /// Replaces all templates of `users` by `batch`, atomically (see
    /// [`Store::replace_templates`]), and reloads the scan matrix.
    pub fn replace_templates(
        &self,
        users: &[String],
        batch: Vec<NewTemplate>,
    ) -> Result<Vec<Template>> {
        let _g = self.lock();
        let added = self.store.replace_templates(users, batch)?;
        let snap = Snapshot::build(
            self.store.dim(),
            &self.store.users()?,
            &self.store.templates()?,
        );
        self.snapshot.store(Arc::new(snap));
        Ok(added)
    }

    /// Removes one template.
    pub fn remove_template(&self, id: u64) -> Result<Template> {
        let _g = self.lock();
        let t = self.store.remove_template(id)?;
        let old = self.snapshot.load_full();
        let keep = |i: u64, _: u32| i != id;
        let (matrix, periocular) = match t.condition.space() {
            Space::Face => (
                Arc::new(old.matrix.retained(keep, |u| u)),
                old.periocular.clone(),
            ),
            Space::Periocular => (
                old.matrix.clone(),
                Arc::new(old.periocular.retained(keep, |u| u)),
            ),
        };
        self.snapshot.store(Arc::new(Snapshot {
            matrix,
            periocular,
            users: old.users.clone(),
        }));
        Ok(t)
    }

    /// All users.
    pub fn users(&self) -> Result<Vec<User>> {
        self.store.users()
    }

    /// All templates.
    pub fn templates(&self) -> Result<Vec<Template>> {
        self.store.templates()
    }

    /// Counts.
    pub fn counts(&self) -> Result<Counts> {
        self.store.counts()
    }

    /// Writes a verified backup file (see docs/GALLERY.md).
    pub fn export(&self, path: impl AsRef<Path>) -> Result<u64> {
        let _g = self.lock();
        export::export_to(&self.store, path.as_ref())
    }

    /// Imports a backup file atomically and reloads the scan matrix.
    pub fn import(&self, path: impl AsRef<Path>, mode: ImportMode) -> Result<ImportReport> {
        let _g = self.lock();
        let report = export::import_from(&self.store, path.as_ref(), mode)?;
        let snap = Snapshot::build(
            self.store.dim(),
            &self.store.users()?,
            &self.store.templates()?,
        );
        self.snapshot.store(Arc::new(snap));
        Ok(report)
    }
}
