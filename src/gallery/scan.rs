//! In-memory scan: an immutable snapshot of all templates laid out as one
//! contiguous, 64-byte-aligned, row-major f32 matrix, plus the user table.
//!
//! Rows are padded to a multiple of 16 floats (64 bytes) so every row starts on
//! a cache line. A search computes the dot product of the (unit) query with
//! every (unit) row — i.e. the cosine similarity — keeps the best template per
//! enabled user and returns the top-k users.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::{GalleryError, Result};
use super::simd::{AlignedF32, AlignedI8, Kernel};
use super::types::{Space, Template, User};

/// Rows scored per block before the scores are folded into per-user maxima
/// (keeps the score buffer in L1).
const BLOCK_ROWS: usize = 256;

/// Rows per thread below which a search stays single-threaded in `auto` mode.
const MIN_ROWS_PER_THREAD: usize = 32 * 1024;

/// Row stride (in f32) for a dimension: rounded up to a whole cache line.
pub fn stride_for(dim: usize) -> usize {
    dim.div_ceil(16) * 16
}

/// The template matrix: row `r` holds template `ids[r]` of user `user_idx[r]`.
#[derive(Clone)]
pub struct Matrix {
    dim: usize,
    stride: usize,
    rows: usize,
    data: AlignedF32,
    ids: Vec<u64>,
    user_idx: Vec<u32>,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("dim", &self.dim)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Matrix {
    /// An empty matrix.
    pub fn empty(dim: usize) -> Self {
        Self::with_rows(dim, 0)
    }

    fn with_rows(dim: usize, rows: usize) -> Self {
        let stride = stride_for(dim);
        Self {
            dim,
            stride,
            rows,
            data: AlignedF32::zeroed(rows * stride),
            ids: Vec::with_capacity(rows),
            user_idx: Vec::with_capacity(rows),
        }
    }

    /// Builds a matrix from `(template id, user index, embedding)` rows.
    pub fn from_rows<'a>(
        dim: usize,
        rows: impl ExactSizeIterator<Item = (u64, u32, &'a [f32])>,
    ) -> Self {
        let mut m = Self::with_rows(dim, rows.len());
        let stride = m.stride;
        let data = m.data.as_mut_slice();
        for (r, (id, u, e)) in rows.enumerate() {
            data[r * stride..r * stride + dim].copy_from_slice(&e[..dim]);
            m.ids.push(id);
            m.user_idx.push(u);
        }
        m
    }

    /// Builds a matrix of `rows` rows by calling `fill(r, row)` for each row,
    /// which writes the embedding and returns `(template id, user index)`.
    pub fn generate(
        dim: usize,
        rows: usize,
        mut fill: impl FnMut(usize, &mut [f32]) -> (u64, u32),
    ) -> Self {
        let mut m = Self::with_rows(dim, rows);
        let stride = m.stride;
        let data = m.data.as_mut_slice();
        for r in 0..rows {
            let (id, u) = fill(r, &mut data[r * stride..r * stride + dim]);
            m.ids.push(id);
            m.user_idx.push(u);
        }
        m
    }

    /// A copy with extra rows appended (copy-on-write update).
    pub fn appended<'a>(
        &self,
        extra: impl ExactSizeIterator<Item = (u64, u32, &'a [f32])>,
    ) -> Self {
        let rows = self.rows + extra.len();
        let (stride, dim) = (self.stride, self.dim);
        let mut data = self.data.extended(rows * stride);
        let mut ids = Vec::with_capacity(rows);
        let mut user_idx = Vec::with_capacity(rows);
        ids.extend_from_slice(&self.ids);
        user_idx.extend_from_slice(&self.user_idx);
        let d = data.as_mut_slice();
        for (k, (id, u, e)) in extra.enumerate() {
            let r = self.rows + k;
            d[r * stride..r * stride + dim].copy_from_slice(&e[..dim]);
            ids.push(id);
            user_idx.push(u);
        }
        Self {
            dim,
            stride,
            rows,
            data,
            ids,
            user_idx,
        }
    }

    /// A copy keeping only the rows for which `keep(id, user_idx)` holds, with
    /// user indices rewritten through `remap`.
    pub fn retained(&self, keep: impl Fn(u64, u32) -> bool, remap: impl Fn(u32) -> u32) -> Self {
        let kept: Vec<usize> = (0..self.rows)
            .filter(|&r| keep(self.ids[r], self.user_idx[r]))
            .collect();
        let mut m = Self::with_rows(self.dim, kept.len());
        let s = self.stride;
        let src = self.data.as_slice();
        let dst = m.data.as_mut_slice();
        for (k, &r) in kept.iter().enumerate() {
            dst[k * s..(k + 1) * s].copy_from_slice(&src[r * s..(r + 1) * s]);
            m.ids.push(self.ids[r]);
            m.user_idx.push(remap(self.user_idx[r]));
        }
        m
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Row stride in f32 (`dim` rounded up to 16).
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// Number of rows (templates).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// The raw row-major data (`rows * stride` values, padding is zero).
    pub fn data(&self) -> &[f32] {
        self.data.as_slice()
    }
    /// Template id of each row.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }
    /// User index of each row.
    pub fn user_indices(&self) -> &[u32] {
        &self.user_idx
    }
    /// Bytes of embedding data read by one full scan.
    pub fn scan_bytes(&self) -> usize {
        self.rows * self.stride * 4
    }

    /// Similarity of `query` with every row, written to `out` (len = rows).
    pub fn scores_into(&self, kernel: Kernel, query: &[f32], out: &mut [f32]) {
        kernel.dot_rows(
            query,
            self.data.as_slice(),
            self.stride,
            &mut out[..self.rows],
        );
    }
}

/// An int8 copy of a [`Matrix`] with one scale per row
/// (`row ≈ scale * q`, `q = round(row / scale)`, `scale = max|row| / 127`).
/// Kept as an experiment: see NOTES.md for why the gallery scans f32.
#[derive(Clone)]
pub struct QuantizedMatrix {
    dim: usize,
    stride: usize,
    rows: usize,
    data: AlignedI8,
    scales: Vec<f32>,
}

impl std::fmt::Debug for QuantizedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantizedMatrix")
            .field("dim", &self.dim)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Quantises `v` to i8 with a symmetric scale; returns the scale.
pub fn quantize_i8(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

impl QuantizedMatrix {
    /// Quantises every row of `m`.
    pub fn from_matrix(m: &Matrix) -> Self {
        let stride = m.dim.div_ceil(64) * 64;
        let mut data = AlignedI8::zeroed(m.rows * stride);
        let mut scales = Vec::with_capacity(m.rows);
        let d = data.as_mut_slice();
        for r in 0..m.rows {
            let row = &m.data()[r * m.stride..r * m.stride + m.dim];
            scales.push(quantize_i8(row, &mut d[r * stride..r * stride + m.dim]));
        }
        Self {
            dim: m.dim,
            stride,
            rows: m.rows,
            data,
            scales,
        }
    }

    /// Bytes read by one full scan.
    pub fn scan_bytes(&self) -> usize {
        self.rows * self.stride
    }

    /// Approximate similarities of `query` with every row.
    pub fn scores_into(&self, kernel: Kernel, query: &[f32], out: &mut [f32]) {
        let mut q = vec![0i8; self.dim];
        let qs = quantize_i8(query, &mut q);
        let mut acc = vec![0i32; BLOCK_ROWS];
        let mut r = 0;
        while r < self.rows {
            let n = BLOCK_ROWS.min(self.rows - r);
            kernel.dot_rows_i8(
                &q,
                &self.data.as_slice()[r * self.stride..],
                self.stride,
                &mut acc[..n],
            );
            for k in 0..n {
                out[r + k] = acc[k] as f32 * qs * self.scales[r + k];
            }
            r += n;
        }
    }
}

/// Per-user data visible to the scan.
#[derive(Debug, Clone, Default)]
pub struct UserTable {
    names: Vec<Arc<str>>,
    uids: Vec<Option<u32>>,
    enabled: Vec<bool>,
    index: HashMap<Arc<str>, u32>,
}

impl UserTable {
    /// Builds the table from user records (index = position).
    pub fn from_users(users: &[User]) -> Self {
        let mut t = UserTable::default();
        for u in users {
            t.push(u);
        }
        t
    }

    fn push(&mut self, u: &User) -> u32 {
        let name: Arc<str> = Arc::from(u.name.as_str());
        let idx = self.names.len() as u32;
        self.names.push(name.clone());
        self.uids.push(u.uid);
        self.enabled.push(u.enabled);
        self.index.insert(name, idx);
        idx
    }

    /// Index of a user by name.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// `true` without users.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Users a search can name (enabled): the N of identification.
    pub fn enabled_count(&self) -> usize {
        self.enabled.iter().filter(|&&e| e).count()
    }

    pub(crate) fn with_user(&self, u: &User) -> Self {
        let mut t = self.clone();
        t.push(u);
        t
    }

    pub(crate) fn with_enabled(&self, idx: u32, enabled: bool) -> Self {
        let mut t = self.clone();
        if let Some(e) = t.enabled.get_mut(idx as usize) {
            *e = enabled;
        }
        t
    }

    /// The table without user `idx`, and the old→new index map.
    pub(crate) fn without(&self, idx: u32) -> (Self, Vec<u32>) {
        let mut t = UserTable::default();
        let mut map = vec![u32::MAX; self.len()];
        for (i, slot) in map.iter_mut().enumerate() {
            if i as u32 == idx {
                continue;
            }
            *slot = t.names.len() as u32;
            let name = self.names[i].clone();
            t.names.push(name.clone());
            t.uids.push(self.uids[i]);
            t.enabled.push(self.enabled[i]);
            t.index.insert(name, *slot);
        }
        (t, map)
    }
}

/// One search hit (one per user).
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// User name.
    pub user: Arc<str>,
    /// User's unix uid, if any.
    pub uid: Option<u32>,
    /// Best cosine similarity over the user's templates.
    pub score: f32,
    /// Template that produced `score`.
    pub template_id: u64,
}

/// Search parameters.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions {
    /// Number of users to return.
    pub k: usize,
    /// Worker threads: 0 = automatic (one per 32k rows, at most the number of
    /// CPUs), 1 = single-threaded, n = at most n.
    pub threads: usize,
    /// Kernel; `None` = best available.
    pub kernel: Option<Kernel>,
    /// Whole-face or periocular templates.
    pub space: Space,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            k: 5,
            threads: 0,
            kernel: None,
            space: Space::Face,
        }
    }
}

/// Immutable view used by searches; replaced atomically on every change.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The whole-face template matrix (shared between snapshots that differ
    /// only in users).
    pub matrix: Arc<Matrix>,
    /// The periocular templates ([`Condition::Periocular`]), scanned only
    /// for periocular probes.
    pub periocular: Arc<Matrix>,
    /// The users.
    pub users: Arc<UserTable>,
}

impl Snapshot {
    /// Builds a snapshot from store contents. Templates whose user is unknown are
    /// skipped (cannot happen with a consistent store).
    pub fn build(dim: usize, users: &[User], templates: &[Template]) -> Self {
        let table = UserTable::from_users(users);
        let rows = |space: Space| -> Vec<(u64, u32, &[f32])> {
            templates
                .iter()
                .filter(|t| t.condition.space() == space)
                .filter_map(|t| {
                    table
                        .index_of(&t.user)
                        .map(|u| (t.id, u, t.embedding.as_slice()))
                })
                .collect()
        };
        Snapshot {
            matrix: Arc::new(Matrix::from_rows(dim, rows(Space::Face).into_iter())),
            periocular: Arc::new(Matrix::from_rows(dim, rows(Space::Periocular).into_iter())),
            users: Arc::new(table),
        }
    }

    /// Number of templates (both matrices).
    pub fn len(&self) -> usize {
        self.matrix.rows() + self.periocular.rows()
    }

    /// `true` without templates.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The matrix of `space`.
    pub fn matrix_of(&self, space: Space) -> &Matrix {
        match space {
            Space::Face => &self.matrix,
            Space::Periocular => &self.periocular,
        }
    }

    /// Top-k users by best template similarity in `opts.space`; disabled
    /// users are excluded.
    pub fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<Vec<Match>> {
        let m = self.matrix_of(opts.space);
        if query.len() != m.dim() {
            return Err(GalleryError::InvalidQuery(format!(
                "query has {} values, the gallery needs {}",
                query.len(),
                m.dim()
            )));
        }
        if opts.k == 0 {
            return Err(GalleryError::InvalidQuery("k must be at least 1".into()));
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(GalleryError::InvalidQuery("non-finite query value".into()));
        }
        let kernel = opts.kernel.unwrap_or_else(Kernel::best);
        let threads = effective_threads(opts.threads, m.rows());
        let best = if threads <= 1 {
            self.best_per_user(m, kernel, query, 0, m.rows())
        } else {
            let chunk = m.rows().div_ceil(threads);
            let parts: Vec<Vec<(f32, u32)>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let start = (t * chunk).min(m.rows());
                        let end = ((t + 1) * chunk).min(m.rows());
                        s.spawn(move || self.best_per_user(m, kernel, query, start, end))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            if parts.iter().any(|p| p.len() != self.users.len()) {
                return Err(GalleryError::InvalidQuery("a scan thread panicked".into()));
            }
            let mut best = vec![(f32::NEG_INFINITY, u32::MAX); self.users.len()];
            for p in parts {
                for (b, x) in best.iter_mut().zip(p) {
                    if x.0 > b.0 {
                        *b = x;
                    }
                }
            }
            best
        };
        let mut hits: Vec<Match> = best
            .into_iter()
            .enumerate()
            .filter(|(_, (_, row))| *row != u32::MAX)
            .map(|(u, (score, row))| Match {
                user: self.users.names[u].clone(),
                uid: self.users.uids[u],
                score,
                template_id: m.ids()[row as usize],
            })
            .collect();
        let by_score = |a: &Match, b: &Match| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.template_id.cmp(&b.template_id))
        };
        if hits.len() > opts.k {
            hits.select_nth_unstable_by(opts.k - 1, by_score);
            hits.truncate(opts.k);
        }
        hits.sort_by(by_score);
        Ok(hits)
    }

    /// Best (score, row) per user over rows `start..end`; row = u32::MAX if none.
    fn best_per_user(
        &self,
        m: &Matrix,
        kernel: Kernel,
        query: &[f32],
        start: usize,
        end: usize,
    ) -> Vec<(f32, u32)> {
        let enabled = &self.users.enabled;
        let uidx = m.user_indices();
        let mut best = vec![(f32::NEG_INFINITY, u32::MAX); self.users.len()];
        let mut scores = [0.0f32; BLOCK_ROWS];
        let mut r = start;
        while r < end {
            let n = BLOCK_ROWS.min(end - r);
            kernel.dot_rows(
                query,
                &m.data()[r * m.stride()..],
                m.stride(),
                &mut scores[..n],
            );
            for (k, &s) in scores[..n].iter().enumerate() {
                let u = uidx[r + k] as usize;
                if s > best[u].0 && enabled[u] {
                    best[u] = (s, (r + k) as u32);
                }
            }
            r += n;
        }
        best
    }
}

/// Threads to use for `rows` rows given the requested count (0 = auto).
pub fn effective_threads(requested: usize, rows: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_size = (rows / MIN_ROWS_PER_THREAD).max(1);
    match requested {
        0 => by_size.min(cpus),
        n => n.min(rows.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::types::{l2_normalized, Condition};

    fn user(name: &str, enabled: bool) -> User {
        User {
            name: name.into(),
            uid: None,
            created: 0,
            enabled,
        }
    }

    fn tpl(id: u64, user: &str, e: Vec<f32>) -> Template {
        Template {
            id,
            user: user.into(),
            embedding: e,
            condition: Condition::Unmasked,
            source: String::new(),
            quality: 1.0,
            created: 0,
        }
    }

    fn unit(dim: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        l2_normalized(&v).unwrap()
    }

    #[test]
    fn aggregates_per_user_and_skips_disabled() {
        let dim = 37;
        let users = vec![user("a", true), user("b", true), user("c", false)];
        let q = unit(dim, 1);
        let mut near = q.clone();
        near[0] += 0.2;
        let near = l2_normalized(&near).unwrap();
        let templates = vec![
            tpl(1, "a", unit(dim, 2)),
            tpl(2, "a", near.clone()),
            tpl(3, "b", unit(dim, 3)),
            tpl(4, "c", q.clone()), // exact match but disabled
        ];
        let snap = Snapshot::build(dim, &users, &templates);
        assert_eq!((snap.users.len(), snap.users.enabled_count()), (3, 2));
        for threads in [1, 2, 3] {
            let hits = snap
                .search(
                    &q,
                    &SearchOptions {
                        k: 5,
                        threads,
                        kernel: None,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(hits.len(), 2, "one hit per enabled user");
            assert_eq!(&*hits[0].user, "a");
            assert_eq!(hits[0].template_id, 2);
            let expect: f32 = q.iter().zip(&near).map(|(a, b)| a * b).sum();
            assert!((hits[0].score - expect).abs() < 1e-5);
            assert_eq!(&*hits[1].user, "b");
        }
        let top1 = snap
            .search(
                &q,
                &SearchOptions {
                    k: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(top1.len(), 1);
        assert!(snap.search(&q[..5], &SearchOptions::default()).is_err());
    }

    #[test]
    fn matrix_rows_are_aligned_and_updates_copy() {
        let dim = 20;
        let users = vec![user("a", true), user("b", true)];
        let t: Vec<Template> = (0..5)
            .map(|i| tpl(i, if i % 2 == 0 { "a" } else { "b" }, unit(dim, i)))
            .collect();
        let snap = Snapshot::build(dim, &users, &t);
        let m = &snap.matrix;
        assert_eq!(m.stride(), 32);
        assert_eq!(m.data().as_ptr() as usize % 64, 0);
        let extra = unit(dim, 99);
        let m2 = m.appended(std::iter::once((99u64, 1u32, extra.as_slice())));
        assert_eq!(m2.rows(), 6);
        assert_eq!(m.rows(), 5);
        assert_eq!(&m2.data()[5 * 32..5 * 32 + dim], extra.as_slice());
        let m3 = m2.retained(|id, _| id != 2, |u| u);
        assert_eq!(m3.ids(), &[0, 1, 3, 4, 99]);
        assert_eq!(&m3.data()[2 * 32..2 * 32 + dim], t[3].embedding.as_slice());
    }

    #[test]
    fn int8_scores_are_close() {
        let dim = 512;
        let t: Vec<Template> = (0..300).map(|i| tpl(i, "a", unit(dim, i))).collect();
        let snap = Snapshot::build(dim, &[user("a", true)], &t);
        let qm = QuantizedMatrix::from_matrix(&snap.matrix);
        let q = unit(dim, 12345);
        let mut exact = vec![0.0; 300];
        let mut approx = vec![0.0; 300];
        for k in Kernel::available() {
            snap.matrix.scores_into(Kernel::scalar(), &q, &mut exact);
            qm.scores_into(k, &q, &mut approx);
            let err = exact
                .iter()
                .zip(&approx)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.01, "{}: {err}", k.kind());
        }
    }
}
