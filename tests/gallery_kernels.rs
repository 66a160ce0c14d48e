//! Every available SIMD kernel agrees with the scalar reference.
//!
//! Tolerance (f32): |simd - scalar| <= 1e-5 * (1 + Σ|q_i·r_i|). Different
//! summation orders give rounding differences bounded by ~dim·ε·Σ|q_i·r_i|;
//! for unit vectors this is a few 1e-7 in practice, so 1e-5 is loose yet fails
//! on any indexing bug (a wrong or missing element changes the score by ~1/dim).
//! The int8 kernels are exact (integer arithmetic): they must agree bit for bit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use facegate::gallery::{Condition, Kernel, Matrix, SearchOptions, Snapshot, Template, User};
use proptest::prelude::*;

fn scalar_rows(q: &[f32], m: &[f32], stride: usize, rows: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows];
    Kernel::scalar().dot_rows(q, m, stride, &mut out);
    out
}

fn abs_sum(q: &[f32], row: &[f32]) -> f32 {
    q.iter().zip(row).map(|(a, b)| (a * b).abs()).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn f32_kernels_match_scalar(
        dim in 1usize..140,
        rows in 0usize..23,
        pad in 0usize..20,
        offset in 0usize..5,
        seed in any::<u64>(),
    ) {
        let stride = dim + pad;
        let mut x = seed | 1;
        let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0 };
        let q: Vec<f32> = (0..dim).map(|_| next()).collect();
        // `offset` makes the matrix start unaligned: kernels must not assume alignment.
        let buf: Vec<f32> = (0..offset + rows * stride).map(|_| next()).collect();
        let m = &buf[offset..];
        let reference = scalar_rows(&q, m, stride, rows);
        for k in Kernel::available() {
            for interleaved in [false, true] {
                let mut out = vec![f32::NAN; rows];
                if interleaved {
                    k.dot_rows_x4(&q, m, stride, &mut out);
                } else {
                    k.dot_rows(&q, m, stride, &mut out);
                }
                for r in 0..rows {
                    let tol = 1e-5 * (1.0 + abs_sum(&q, &m[r * stride..r * stride + dim]));
                    prop_assert!((out[r] - reference[r]).abs() <= tol,
                        "kernel {} (x4: {}) dim {} rows {} row {}: {} vs {}",
                        k.kind(), interleaved, dim, rows, r, out[r], reference[r]);
                }
            }
        }
    }

    #[test]
    fn i8_kernels_match_scalar_exactly(
        dim in 1usize..300,
        rows in 0usize..23,
        pad in 0usize..70,
        q in proptest::collection::vec(any::<i8>(), 300),
        seed in any::<u64>(),
    ) {
        let stride = dim + pad;
        let q = &q[..dim];
        let mut x = seed | 1;
        let m: Vec<i8> = (0..rows * stride).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 56) as i8 }).collect();
        let mut reference = vec![0i32; rows];
        Kernel::scalar().dot_rows_i8(q, &m, stride, &mut reference);
        for r in 0..rows {
            let expect: i32 = q.iter().zip(&m[r * stride..]).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
            prop_assert_eq!(reference[r], expect);
        }
        for k in Kernel::available() {
            let mut out = vec![i32::MIN; rows];
            k.dot_rows_i8(q, &m, stride, &mut out);
            prop_assert_eq!(&out, &reference, "kernel {}", k.kind());
        }
    }

    #[test]
    fn extreme_i8_values_do_not_overflow(dim in 1usize..600) {
        let q = vec![-128i8; dim];
        let m = vec![-128i8; dim * 5];
        for k in Kernel::available() {
            let mut out = vec![0i32; 5];
            k.dot_rows_i8(&q, &m, dim, &mut out);
            prop_assert!(out.iter().all(|&v| v == 16384 * dim as i32), "{} {:?}", k.kind(), out);
        }
    }

    #[test]
    fn search_matches_brute_force(
        dim in 1usize..70,
        n_rows in 1usize..60,
        n_users in 1usize..8,
        threads in 1usize..4,
        disabled_mask in any::<u8>(),
        seed in any::<u64>(),
    ) {
        let mut x = seed | 1;
        let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0 };
        let mut unit = |d: usize| {
            let v: Vec<f32> = (0..d).map(|_| next()).collect();
            let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-6);
            v.into_iter().map(|a| a / n).collect::<Vec<f32>>()
        };
        let users: Vec<User> = (0..n_users).map(|i| User { name: format!("u{i}"), uid: Some(i as u32), created: 0, enabled: disabled_mask & (1 << i) == 0 }).collect();
        let templates: Vec<Template> = (0..n_rows).map(|i| Template {
            id: 100 + i as u64, user: format!("u{}", i % n_users), embedding: unit(dim),
            condition: Condition::Unmasked, source: String::new(), quality: 1.0, created: 0,
        }).collect();
        let q = unit(dim);
        let snap = Snapshot::build(dim, &users, &templates);
        // brute force, f64
        let mut best: Vec<Option<(f64, u64)>> = vec![None; n_users];
        for t in &templates {
            let u = t.user[1..].parse::<usize>().unwrap();
            if !users[u].enabled { continue; }
            let s: f64 = q.iter().zip(&t.embedding).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            if best[u].is_none_or(|(b, _)| s > b) { best[u] = Some((s, t.id)); }
        }
        let mut expect: Vec<(f64, usize)> = best.iter().enumerate().filter_map(|(u, b)| b.map(|(s, _)| (s, u))).collect();
        expect.sort_by(|a, b| b.0.total_cmp(&a.0));
        for k in Kernel::available() {
            let hits = snap.search(&q, &SearchOptions { k: 3, threads, kernel: Some(k), ..Default::default() }).unwrap();
            prop_assert_eq!(hits.len(), expect.len().min(3));
            for (h, (s, u)) in hits.iter().zip(&expect) {
                prop_assert!((f64::from(h.score) - s).abs() < 1e-5);
                // the user may differ only on a near-tie
                if *h.user != format!("u{u}") {
                    let alt = expect.iter().find(|(_, v)| format!("u{v}") == *h.user).map(|e| e.0);
                    prop_assert!(alt.is_some_and(|a| (a - s).abs() < 1e-5), "wrong user {}", h.user);
                }
                prop_assert!(users[h.user[1..].parse::<usize>().unwrap()].enabled);
            }
        }
    }
}

#[test]
fn matrix_padding_is_zero_and_rows_aligned() {
    let m = Matrix::generate(33, 7, |r, row| {
        row.iter_mut().for_each(|x| *x = 1.0);
        (r as u64, 0)
    });
    assert_eq!(m.stride(), 48);
    for r in 0..7 {
        assert_eq!(m.data()[r * 48..].as_ptr() as usize % 64, 0);
        assert!(m.data()[r * 48 + 33..(r + 1) * 48]
            .iter()
            .all(|&x| x == 0.0));
    }
}
