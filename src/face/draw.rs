//! Tiny drawing helpers for annotated images (`facegate detect --draw`).

use image::{Rgb, RgbImage};

use crate::face::detect::Face;

/// Set a pixel if it lies inside the image.
fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u64) < img.width() as u64 && (y as u64) < img.height() as u64 {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Axis-aligned rectangle outline, `t` pixels thick.
pub fn rect(img: &mut RgbImage, b: [f32; 4], t: i64, c: Rgb<u8>) {
    let (x0, y0, x1, y1) = (b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64);
    for k in 0..t {
        for x in x0..=x1 {
            put(img, x, y0 + k, c);
            put(img, x, y1 - k, c);
        }
        for y in y0..=y1 {
            put(img, x0 + k, y, c);
            put(img, x1 - k, y, c);
        }
    }
}

/// Filled disc.
pub fn disc(img: &mut RgbImage, cx: f32, cy: f32, r: f32, c: Rgb<u8>) {
    let ri = r.ceil() as i64;
    for dy in -ri..=ri {
        for dx in -ri..=ri {
            if (dx * dx + dy * dy) as f32 <= r * r {
                put(img, cx as i64 + dx, cy as i64 + dy, c);
            }
        }
    }
}

/// Boxes in green, landmarks in red/blue/yellow (eyes, nose, mouth).
pub fn faces(img: &mut RgbImage, faces: &[Face]) {
    let colours = [
        Rgb([255, 40, 40]),
        Rgb([40, 80, 255]),
        Rgb([255, 230, 0]),
        Rgb([255, 40, 255]),
        Rgb([0, 230, 230]),
    ];
    for f in faces {
        let t = ((f.width() / 100.0).round() as i64).clamp(1, 6);
        rect(img, f.bbox, t, Rgb([0, 255, 0]));
        for (p, c) in f.landmarks.iter().zip(colours) {
            disc(img, p[0], p[1], (f.width() / 60.0).max(1.5), c);
        }
    }
}
