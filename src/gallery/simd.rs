//! The only module of the gallery that contains `unsafe` code.
//!
//! It provides:
//! * [`AlignedF32`] / [`AlignedI8`]: heap buffers whose first element is
//!   64-byte aligned (one cache line), used for the template matrix;
//! * dot-product kernels ("one query against many rows") for f32 and int8:
//!   a scalar reference, AVX2+FMA and AVX-512 on x86_64, NEON on aarch64;
//! * a streaming read kernel ([`Kernel::sum`]) used to measure the memory
//!   read bandwidth of the machine next to the scan.
//!
//! Every kernel is reached through the safe [`Kernel`] handle. A `Kernel` can
//! only be constructed for an instruction set the running CPU supports (checked
//! with `is_x86_feature_detected!` at construction), and every safe wrapper
//! checks the slice bounds before calling into the `unsafe` code, so safe
//! callers cannot trigger undefined behaviour.
//!
//! Layout contract for the row kernels: row `i` starts at `i * stride` and has
//! `dim = query.len()` elements, `stride >= dim`. The kernels process 4 rows per
//! pass (4 independent load streams keep the memory bus busy) and handle any
//! `dim` (tail elements) and any row count (tail rows).
#![allow(unsafe_code)]

use std::fmt;

/// One cache line of f32.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct LineF32([f32; 16]);

/// One cache line of i8.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct LineI8([i8; 64]);

/// A zero-initialised, 64-byte-aligned, fixed-length buffer of `f32`.
#[derive(Clone)]
pub struct AlignedF32 {
    lines: Vec<LineF32>,
    len: usize,
}

/// Asks the kernel to back a large buffer with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`, effective when THP is in `madvise` or `always`
/// mode) before it is first touched: a 2 GB matrix then takes ~1000 page
/// faults instead of ~500 000, which makes copy-on-write updates and the scan
/// itself (fewer TLB misses) cheaper. Purely advisory: errors are ignored.
fn advise_huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const MIN: usize = 4 << 20;
        const PAGE: usize = 4096;
        let start = v.as_ptr() as usize;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < MIN {
            return;
        }
        let s = (start + PAGE - 1) & !(PAGE - 1);
        let e = (start + bytes) & !(PAGE - 1);
        if e > s {
            // SAFETY: [s, e) lies inside the allocation owned by `v`; MADV_HUGEPAGE
            // only changes the paging policy and never the contents.
            let _ = unsafe { libc::madvise(s as *mut libc::c_void, e - s, libc::MADV_HUGEPAGE) };
        }
    }
}

impl AlignedF32 {
    /// A buffer of `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        let n = len.div_ceil(16);
        let mut lines = Vec::with_capacity(n);
        advise_huge_pages(&lines);
        lines.resize(n, LineF32([0.0; 16]));
        Self { lines, len }
    }

    /// A copy of this buffer grown to `len >= self.len()` elements; the new
    /// elements are zero. One pass over the old data (no zero-fill first).
    pub fn extended(&self, len: usize) -> Self {
        let len = len.max(self.len);
        let n = len.div_ceil(16);
        let mut lines = Vec::with_capacity(n);
        advise_huge_pages(&lines);
        lines.extend_from_slice(&self.lines);
        lines.resize(n, LineF32([0.0; 16]));
        Self { lines, len }
    }

    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements; the first one is 64-byte aligned.
    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: `lines` holds `lines.len() * 16 >= len` contiguous,
        // initialised f32 values (LineF32 is repr(C) over [f32; 16], so it has
        // no padding), and the pointer is valid for the lifetime of `&self`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

impl fmt::Debug for AlignedF32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the contents: they are embeddings.
        write!(f, "AlignedF32 {{ len: {} }}", self.len)
    }
}

/// A zero-initialised, 64-byte-aligned, fixed-length buffer of `i8`.
#[derive(Clone)]
pub struct AlignedI8 {
    lines: Vec<LineI8>,
    len: usize,
}

impl AlignedI8 {
    /// A buffer of `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        let n = len.div_ceil(64);
        let mut lines = Vec::with_capacity(n);
        advise_huge_pages(&lines);
        lines.resize(n, LineI8([0; 64]));
        Self { lines, len }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements; the first one is 64-byte aligned.
    pub fn as_slice(&self) -> &[i8] {
        // SAFETY: `lines` holds `lines.len() * 64 >= len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<i8>(), self.len) }
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [i8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<i8>(), self.len) }
    }
}

impl fmt::Debug for AlignedI8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedI8 {{ len: {} }}", self.len)
    }
}

/// Instruction sets a [`Kernel`] can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// Portable scalar code; the reference the others are tested against.
    Scalar,
    /// x86_64 AVX2 + FMA (8 f32 lanes).
    Avx2Fma,
    /// x86_64 AVX-512F (16 f32 lanes); its int8 path additionally needs AVX-512BW
    /// and falls back to AVX2 / scalar without it.
    Avx512,
    /// aarch64 Advanced SIMD (4 f32 lanes).
    Neon,
}

impl KernelKind {
    /// Short lowercase name, used in logs and bench tables.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Scalar => "scalar",
            KernelKind::Avx2Fma => "avx2+fma",
            KernelKind::Avx512 => "avx512f",
            KernelKind::Neon => "neon",
        }
    }

    /// Whether the running CPU supports this kind.
    pub fn is_supported(self) -> bool {
        match self {
            KernelKind::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx2Fma => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "aarch64")]
            KernelKind::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A handle to a set of kernels that the running CPU is known to support.
///
/// The field is private: the only constructors check CPU support, which is what
/// makes the safe methods sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel(KernelKind);

impl Kernel {
    /// The scalar reference kernel (always available).
    pub fn scalar() -> Self {
        Kernel(KernelKind::Scalar)
    }

    /// The kernel of `kind` if the running CPU supports it.
    pub fn new(kind: KernelKind) -> Option<Self> {
        kind.is_supported().then_some(Kernel(kind))
    }

    /// The fastest kernel the running CPU supports (run-time detection).
    pub fn best() -> Self {
        for kind in [KernelKind::Avx512, KernelKind::Avx2Fma, KernelKind::Neon] {
            if let Some(k) = Kernel::new(kind) {
                return k;
            }
        }
        Kernel::scalar()
    }

    /// Every kernel the running CPU supports, scalar first.
    pub fn available() -> Vec<Self> {
        [
            KernelKind::Scalar,
            KernelKind::Avx2Fma,
            KernelKind::Avx512,
            KernelKind::Neon,
        ]
        .into_iter()
        .filter_map(Kernel::new)
        .collect()
    }

    /// Which instruction set this kernel uses.
    pub fn kind(self) -> KernelKind {
        self.0
    }

    /// `out[i] = dot(query, matrix[i*stride .. i*stride + query.len()])` for every
    /// `i < out.len()`.
    ///
    /// # Panics
    /// If `stride < query.len()` or `matrix` is too short for `out.len()` rows.
    pub fn dot_rows(self, query: &[f32], matrix: &[f32], stride: usize, out: &mut [f32]) {
        check_rows(query.len(), matrix.len(), stride, out.len());
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel of this kind exists only if the CPU supports
            // AVX2+FMA; bounds were checked above.
            KernelKind::Avx2Fma => unsafe { x86::dot_rows_avx2(query, matrix, stride, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel of this kind exists only if the CPU supports
            // AVX-512F; bounds were checked above.
            KernelKind::Avx512 => unsafe { x86::dot_rows_avx512(query, matrix, stride, out) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON was detected; bounds were checked above.
            KernelKind::Neon => unsafe { arm::dot_rows_neon(query, matrix, stride, out) },
            _ => dot_rows_scalar(query, matrix, stride, out),
        }
    }

    /// Same result as [`Kernel::dot_rows`], but processing 4 consecutive rows per
    /// pass (4 interleaved load streams sharing each query load). Kept for the
    /// benchmark: on the x86 machine measured (NOTES.md) it reached only about half
    /// the memory bandwidth of the sequential one-row-at-a-time kernel, because 4
    /// short (2 KiB) streams defeat the hardware prefetcher.
    ///
    /// # Panics
    /// As [`Kernel::dot_rows`].
    pub fn dot_rows_x4(self, query: &[f32], matrix: &[f32], stride: usize, out: &mut [f32]) {
        check_rows(query.len(), matrix.len(), stride, out.len());
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2+FMA supported (kernel kind); bounds checked above.
            KernelKind::Avx2Fma => unsafe { x86::dot_rows_avx2_x4(query, matrix, stride, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F supported (kernel kind); bounds checked above.
            KernelKind::Avx512 => unsafe { x86::dot_rows_avx512_x4(query, matrix, stride, out) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON detected; bounds checked above.
            KernelKind::Neon => unsafe { arm::dot_rows_neon_x4(query, matrix, stride, out) },
            _ => dot_rows_scalar(query, matrix, stride, out),
        }
    }

    /// Integer variant of [`Kernel::dot_rows`]: `out[i] = Σ q[j] * row_i[j]` in
    /// exact i32 arithmetic (no overflow for `dim <= 65536`).
    ///
    /// # Panics
    /// If `stride < query.len()`, `query.len() > 65536`, or `matrix` is too short.
    pub fn dot_rows_i8(self, query: &[i8], matrix: &[i8], stride: usize, out: &mut [i32]) {
        assert!(query.len() <= 65536, "int8 kernel supports dim <= 65536");
        check_rows(query.len(), matrix.len(), stride, out.len());
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512 | KernelKind::Avx2Fma => {
                if std::is_x86_feature_detected!("avx512bw") && self.0 == KernelKind::Avx512 {
                    // SAFETY: AVX-512BW detected just above; bounds checked.
                    unsafe { x86::dot_rows_i8_avx512bw(query, matrix, stride, out) }
                } else if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 detected just above; bounds checked.
                    unsafe { x86::dot_rows_i8_avx2(query, matrix, stride, out) }
                } else {
                    dot_rows_i8_scalar(query, matrix, stride, out)
                }
            }
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON was detected; bounds were checked above.
            KernelKind::Neon => unsafe { arm::dot_rows_i8_neon(query, matrix, stride, out) },
            _ => dot_rows_i8_scalar(query, matrix, stride, out),
        }
    }

    /// Sum of all elements, reading the buffer as fast as possible (4+
    /// independent accumulators). Used to measure memory read bandwidth.
    pub fn sum(self, data: &[f32]) -> f32 {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 support implied by the kernel kind.
            KernelKind::Avx2Fma => unsafe { x86::sum_avx2(data) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F support implied by the kernel kind.
            KernelKind::Avx512 => unsafe { x86::sum_avx512(data) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON detected.
            KernelKind::Neon => unsafe { arm::sum_neon(data) },
            _ => sum_scalar(data),
        }
    }
}

fn check_rows(dim: usize, matrix_len: usize, stride: usize, rows: usize) {
    assert!(stride >= dim, "stride {stride} < dim {dim}");
    if rows > 0 {
        let need = (rows - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(dim));
        assert!(
            need.is_some_and(|n| n <= matrix_len),
            "matrix of {matrix_len} elements too short for {rows} rows of stride {stride}, dim {dim}"
        );
    }
}

/// Scalar reference: sequential f32 accumulation (not auto-vectorised, since
/// reordering a float sum is not allowed without fast-math).
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

fn dot_rows_scalar(q: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
    let d = q.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = dot_scalar(q, &m[i * stride..i * stride + d]);
    }
}

fn dot_rows_i8_scalar(q: &[i8], m: &[i8], stride: usize, out: &mut [i32]) {
    let d = q.len();
    for (i, o) in out.iter_mut().enumerate() {
        let row = &m[i * stride..i * stride + d];
        *o = q
            .iter()
            .zip(row)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
    }
}

fn sum_scalar(data: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum256_i32(v: __m256i) -> i32 {
        let lo = _mm256_castsi256_si128(v);
        let hi = _mm256_extracti128_si256::<1>(v);
        let s = _mm_add_epi32(lo, hi);
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// One row at a time, 4 accumulators: a single sequential read stream.
    ///
    /// # Safety
    /// CPU supports AVX2+FMA; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_rows_avx2(q: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
        let d = q.len();
        let d32 = d & !31;
        let d8 = d & !7;
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        for (r, o) in out.iter_mut().enumerate() {
            let p = mp.add(r * stride);
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = _mm256_setzero_ps();
            let mut a2 = _mm256_setzero_ps();
            let mut a3 = _mm256_setzero_ps();
            let mut j = 0;
            while j < d32 {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(j)), _mm256_loadu_ps(p.add(j)), a0);
                a1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(qp.add(j + 8)),
                    _mm256_loadu_ps(p.add(j + 8)),
                    a1,
                );
                a2 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(qp.add(j + 16)),
                    _mm256_loadu_ps(p.add(j + 16)),
                    a2,
                );
                a3 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(qp.add(j + 24)),
                    _mm256_loadu_ps(p.add(j + 24)),
                    a3,
                );
                j += 32;
            }
            while j < d8 {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(j)), _mm256_loadu_ps(p.add(j)), a0);
                j += 8;
            }
            let mut s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
            for j in d8..d {
                s += *qp.add(j) * *p.add(j);
            }
            *o = s;
        }
    }

    /// # Safety
    /// CPU supports AVX2+FMA; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_rows_avx2_x4(q: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
        let d = q.len();
        let d8 = d & !7;
        let rows = out.len();
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        let mut r = 0;
        while r + 4 <= rows {
            let p0 = mp.add(r * stride);
            let p1 = p0.add(stride);
            let p2 = p1.add(stride);
            let p3 = p2.add(stride);
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = _mm256_setzero_ps();
            let mut a2 = _mm256_setzero_ps();
            let mut a3 = _mm256_setzero_ps();
            let mut j = 0;
            while j < d8 {
                let qv = _mm256_loadu_ps(qp.add(j));
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p0.add(j)), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p1.add(j)), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p2.add(j)), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p3.add(j)), a3);
                j += 8;
            }
            let mut s = [hsum256(a0), hsum256(a1), hsum256(a2), hsum256(a3)];
            for j in d8..d {
                let qj = *qp.add(j);
                s[0] += qj * *p0.add(j);
                s[1] += qj * *p1.add(j);
                s[2] += qj * *p2.add(j);
                s[3] += qj * *p3.add(j);
            }
            out[r..r + 4].copy_from_slice(&s);
            r += 4;
        }
        while r < rows {
            let p = mp.add(r * stride);
            let mut a = _mm256_setzero_ps();
            let mut j = 0;
            while j < d8 {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(j)), _mm256_loadu_ps(p.add(j)), a);
                j += 8;
            }
            let mut s = hsum256(a);
            for j in d8..d {
                s += *qp.add(j) * *p.add(j);
            }
            out[r] = s;
            r += 1;
        }
    }

    /// One row at a time, 4 accumulators: a single sequential read stream.
    ///
    /// # Safety
    /// CPU supports AVX-512F; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_rows_avx512(q: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
        let d = q.len();
        let d64 = d & !63;
        let d16 = d & !15;
        let tail = d - d16;
        let mask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        for (r, o) in out.iter_mut().enumerate() {
            let p = mp.add(r * stride);
            let mut a0 = _mm512_setzero_ps();
            let mut a1 = _mm512_setzero_ps();
            let mut a2 = _mm512_setzero_ps();
            let mut a3 = _mm512_setzero_ps();
            let mut j = 0;
            while j < d64 {
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qp.add(j)), _mm512_loadu_ps(p.add(j)), a0);
                a1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(qp.add(j + 16)),
                    _mm512_loadu_ps(p.add(j + 16)),
                    a1,
                );
                a2 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(qp.add(j + 32)),
                    _mm512_loadu_ps(p.add(j + 32)),
                    a2,
                );
                a3 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(qp.add(j + 48)),
                    _mm512_loadu_ps(p.add(j + 48)),
                    a3,
                );
                j += 64;
            }
            while j < d16 {
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qp.add(j)), _mm512_loadu_ps(p.add(j)), a0);
                j += 16;
            }
            if tail > 0 {
                a1 = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(mask, qp.add(j)),
                    _mm512_maskz_loadu_ps(mask, p.add(j)),
                    a1,
                );
            }
            *o = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        }
    }

    /// # Safety
    /// CPU supports AVX-512F; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_rows_avx512_x4(q: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
        let d = q.len();
        let d16 = d & !15;
        let tail = d - d16;
        // Masked loads never touch masked-off lanes, so the tail is read safely.
        let mask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
        let rows = out.len();
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        let mut r = 0;
        while r + 4 <= rows {
            let p0 = mp.add(r * stride);
            let p1 = p0.add(stride);
            let p2 = p1.add(stride);
            let p3 = p2.add(stride);
            let mut a0 = _mm512_setzero_ps();
            let mut a1 = _mm512_setzero_ps();
            let mut a2 = _mm512_setzero_ps();
            let mut a3 = _mm512_setzero_ps();
            let mut j = 0;
            while j < d16 {
                let qv = _mm512_loadu_ps(qp.add(j));
                a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(p0.add(j)), a0);
                a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(p1.add(j)), a1);
                a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(p2.add(j)), a2);
                a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(p3.add(j)), a3);
                j += 16;
            }
            if tail > 0 {
                let qv = _mm512_maskz_loadu_ps(mask, qp.add(j));
                a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mask, p0.add(j)), a0);
                a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mask, p1.add(j)), a1);
                a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mask, p2.add(j)), a2);
                a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mask, p3.add(j)), a3);
            }
            out[r] = _mm512_reduce_add_ps(a0);
            out[r + 1] = _mm512_reduce_add_ps(a1);
            out[r + 2] = _mm512_reduce_add_ps(a2);
            out[r + 3] = _mm512_reduce_add_ps(a3);
            r += 4;
        }
        while r < rows {
            let p = mp.add(r * stride);
            let mut a = _mm512_setzero_ps();
            let mut j = 0;
            while j < d16 {
                a = _mm512_fmadd_ps(_mm512_loadu_ps(qp.add(j)), _mm512_loadu_ps(p.add(j)), a);
                j += 16;
            }
            if tail > 0 {
                a = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(mask, qp.add(j)),
                    _mm512_maskz_loadu_ps(mask, p.add(j)),
                    a,
                );
            }
            out[r] = _mm512_reduce_add_ps(a);
            r += 1;
        }
    }

    /// Loads 16 i8 and sign-extends them to 16 i16.
    ///
    /// # Safety
    /// `p` is valid for reading 16 bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn ld(p: *const i8) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast::<__m128i>()))
    }

    /// Loads 32 i8 and sign-extends them to 32 i16.
    ///
    /// # Safety
    /// `p` is valid for reading 32 bytes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn ld32(p: *const i8) -> __m512i {
        _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.cast::<__m256i>()))
    }

    /// # Safety
    /// CPU supports AVX2; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_rows_i8_avx2(q: &[i8], m: &[i8], stride: usize, out: &mut [i32]) {
        let d = q.len();
        let d16 = d & !15;
        let rows = out.len();
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        // One row at a time: a single sequential read stream (see dot_rows_x4).
        let mut r = 0;
        while r < rows {
            let p = mp.add(r * stride);
            let mut a = _mm256_setzero_si256();
            let mut j = 0;
            while j < d16 {
                a = _mm256_add_epi32(a, _mm256_madd_epi16(ld(qp.add(j)), ld(p.add(j))));
                j += 16;
            }
            let mut s = hsum256_i32(a);
            for j in d16..d {
                s += i32::from(*qp.add(j)) * i32::from(*p.add(j));
            }
            out[r] = s;
            r += 1;
        }
    }

    /// # Safety
    /// CPU supports AVX-512F+BW; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn dot_rows_i8_avx512bw(q: &[i8], m: &[i8], stride: usize, out: &mut [i32]) {
        let d = q.len();
        let d32 = d & !31;
        let rows = out.len();
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        // One row at a time: a single sequential read stream (see dot_rows_x4).
        let mut r = 0;
        while r < rows {
            let p = mp.add(r * stride);
            let mut a = _mm512_setzero_si512();
            let mut j = 0;
            while j < d32 {
                a = _mm512_add_epi32(a, _mm512_madd_epi16(ld32(qp.add(j)), ld32(p.add(j))));
                j += 32;
            }
            let mut s = _mm512_reduce_add_epi32(a);
            for j in d32..d {
                s += i32::from(*qp.add(j)) * i32::from(*p.add(j));
            }
            out[r] = s;
            r += 1;
        }
    }

    /// # Safety
    /// CPU supports AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sum_avx2(data: &[f32]) -> f32 {
        let n = data.len();
        let n32 = n & !31;
        let p = data.as_ptr();
        let mut a = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < n32 {
            a[0] = _mm256_add_ps(a[0], _mm256_loadu_ps(p.add(i)));
            a[1] = _mm256_add_ps(a[1], _mm256_loadu_ps(p.add(i + 8)));
            a[2] = _mm256_add_ps(a[2], _mm256_loadu_ps(p.add(i + 16)));
            a[3] = _mm256_add_ps(a[3], _mm256_loadu_ps(p.add(i + 24)));
            i += 32;
        }
        let v = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
        let mut buf = [0.0f32; 8];
        _mm256_storeu_ps(buf.as_mut_ptr(), v);
        buf.iter().sum::<f32>() + data[n32..].iter().sum::<f32>()
    }

    /// # Safety
    /// CPU supports AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sum_avx512(data: &[f32]) -> f32 {
        let n = data.len();
        let n64 = n & !63;
        let p = data.as_ptr();
        let mut a = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i < n64 {
            a[0] = _mm512_add_ps(a[0], _mm512_loadu_ps(p.add(i)));
            a[1] = _mm512_add_ps(a[1], _mm512_loadu_ps(p.add(i + 16)));
            a[2] = _mm512_add_ps(a[2], _mm512_loadu_ps(p.add(i + 32)));
            a[3] = _mm512_add_ps(a[3], _mm512_loadu_ps(p.add(i + 48)));
            i += 64;
        }
        let v = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
        _mm512_reduce_add_ps(v) + data[n64..].iter().sum::<f32>()
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    /// One row at a time, 4 accumulators: a single sequential read stream.
    ///
    /// # Safety
    /// CPU supports NEON; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn dot_rows_neon(q: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
        let d = q.len();
        let d16 = d & !15;
        let d4 = d & !3;
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        for (r, o) in out.iter_mut().enumerate() {
            let p = mp.add(r * stride);
            let mut a0 = vdupq_n_f32(0.0);
            let mut a1 = vdupq_n_f32(0.0);
            let mut a2 = vdupq_n_f32(0.0);
            let mut a3 = vdupq_n_f32(0.0);
            let mut j = 0;
            while j < d16 {
                a0 = vfmaq_f32(a0, vld1q_f32(qp.add(j)), vld1q_f32(p.add(j)));
                a1 = vfmaq_f32(a1, vld1q_f32(qp.add(j + 4)), vld1q_f32(p.add(j + 4)));
                a2 = vfmaq_f32(a2, vld1q_f32(qp.add(j + 8)), vld1q_f32(p.add(j + 8)));
                a3 = vfmaq_f32(a3, vld1q_f32(qp.add(j + 12)), vld1q_f32(p.add(j + 12)));
                j += 16;
            }
            while j < d4 {
                a0 = vfmaq_f32(a0, vld1q_f32(qp.add(j)), vld1q_f32(p.add(j)));
                j += 4;
            }
            let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
            for j in d4..d {
                s += *qp.add(j) * *p.add(j);
            }
            *o = s;
        }
    }

    /// # Safety
    /// CPU supports NEON; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn dot_rows_neon_x4(q: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
        let d = q.len();
        let d4 = d & !3;
        let rows = out.len();
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        let mut r = 0;
        while r + 4 <= rows {
            let p0 = mp.add(r * stride);
            let p1 = p0.add(stride);
            let p2 = p1.add(stride);
            let p3 = p2.add(stride);
            let mut a0 = vdupq_n_f32(0.0);
            let mut a1 = vdupq_n_f32(0.0);
            let mut a2 = vdupq_n_f32(0.0);
            let mut a3 = vdupq_n_f32(0.0);
            let mut j = 0;
            while j < d4 {
                let qv = vld1q_f32(qp.add(j));
                a0 = vfmaq_f32(a0, qv, vld1q_f32(p0.add(j)));
                a1 = vfmaq_f32(a1, qv, vld1q_f32(p1.add(j)));
                a2 = vfmaq_f32(a2, qv, vld1q_f32(p2.add(j)));
                a3 = vfmaq_f32(a3, qv, vld1q_f32(p3.add(j)));
                j += 4;
            }
            let mut s = [
                vaddvq_f32(a0),
                vaddvq_f32(a1),
                vaddvq_f32(a2),
                vaddvq_f32(a3),
            ];
            for j in d4..d {
                let qj = *qp.add(j);
                s[0] += qj * *p0.add(j);
                s[1] += qj * *p1.add(j);
                s[2] += qj * *p2.add(j);
                s[3] += qj * *p3.add(j);
            }
            out[r..r + 4].copy_from_slice(&s);
            r += 4;
        }
        while r < rows {
            let p = mp.add(r * stride);
            let mut a = vdupq_n_f32(0.0);
            let mut j = 0;
            while j < d4 {
                a = vfmaq_f32(a, vld1q_f32(qp.add(j)), vld1q_f32(p.add(j)));
                j += 4;
            }
            let mut s = vaddvq_f32(a);
            for j in d4..d {
                s += *qp.add(j) * *p.add(j);
            }
            out[r] = s;
            r += 1;
        }
    }

    #[inline]
    #[target_feature(enable = "neon")]
    fn mac16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }

    /// # Safety
    /// CPU supports NEON; `m` holds `out.len()` rows of `stride >= q.len()`.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn dot_rows_i8_neon(q: &[i8], m: &[i8], stride: usize, out: &mut [i32]) {
        let d = q.len();
        let d16 = d & !15;
        let rows = out.len();
        let qp = q.as_ptr();
        let mp = m.as_ptr();
        // One row at a time: a single sequential read stream (see dot_rows_x4).
        let mut r = 0;
        while r < rows {
            let p = mp.add(r * stride);
            let mut a = vdupq_n_s32(0);
            let mut j = 0;
            while j < d16 {
                a = mac16(a, vld1q_s8(qp.add(j)), vld1q_s8(p.add(j)));
                j += 16;
            }
            let mut s = vaddvq_s32(a);
            for j in d16..d {
                s += i32::from(*qp.add(j)) * i32::from(*p.add(j));
            }
            out[r] = s;
            r += 1;
        }
    }

    /// # Safety
    /// CPU supports NEON.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn sum_neon(data: &[f32]) -> f32 {
        let n = data.len();
        let n16 = n & !15;
        let p = data.as_ptr();
        let mut a = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i < n16 {
            a[0] = vaddq_f32(a[0], vld1q_f32(p.add(i)));
            a[1] = vaddq_f32(a[1], vld1q_f32(p.add(i + 4)));
            a[2] = vaddq_f32(a[2], vld1q_f32(p.add(i + 8)));
            a[3] = vaddq_f32(a[3], vld1q_f32(p.add(i + 12)));
            i += 16;
        }
        let v = vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3]));
        vaddvq_f32(v) + data[n16..].iter().sum::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_cache_line_aligned() {
        for len in [0usize, 1, 15, 16, 17, 1000] {
            let b = AlignedF32::zeroed(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
            let c = AlignedI8::zeroed(len);
            assert_eq!(c.as_slice().len(), len);
            assert_eq!(c.as_slice().as_ptr() as usize % 64, 0);
        }
    }

    #[test]
    fn best_kernel_is_supported_and_listed() {
        let best = Kernel::best();
        assert!(best.kind().is_supported());
        assert!(Kernel::available().contains(&best));
        assert!(Kernel::available().contains(&Kernel::scalar()));
    }

    #[test]
    #[should_panic(expected = "too short")]
    fn short_matrix_panics_instead_of_reading_out_of_bounds() {
        let q = [1.0f32; 8];
        let m = [1.0f32; 15];
        let mut out = [0.0f32; 2];
        Kernel::best().dot_rows(&q, &m, 8, &mut out);
    }

    #[test]
    fn sum_matches_scalar() {
        let data: Vec<f32> = (0..1003).map(|i| (i % 7) as f32).collect();
        let expect: f32 = data.iter().sum();
        for k in Kernel::available() {
            assert_eq!(k.sum(&data), expect, "{}", k.kind());
        }
    }
}
