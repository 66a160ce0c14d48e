//! V4L2 camera frames through the `v4l` crate.
//!
//! [`V4l2Source::open`] checks that the device is a streaming video-capture
//! device, negotiates MJPEG, YUYV or GREY at the configured size and rate, and maps
//! four buffers. [`FrameSource::next_frame`] waits for the next buffer (with a
//! timeout) and decodes it to RGB.
//!
//! Errors are sorted for the owner's reopen logic: a device that disappears
//! (ENODEV, EIO, …: unplugged) is [`SourceError::Gone`], a path that is not a
//! camera is [`SourceError::NotACamera`], a corrupt frame is
//! [`SourceError::Decode`] (the next frame may be fine), and a camera that
//! stops delivering is [`SourceError::Timeout`].
//!
//! The pixel conversions are pure functions ([`yuyv_to_rgb`],
//! [`decode_mjpeg`]) so that they are tested without a camera.

use std::io;
use std::time::{Duration, Instant};

use image::RgbImage;
use log::{debug, info, warn};
use v4l::buffer::Type;
use v4l::capability::Flags;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use super::{Frame, FrameSource, PixelFormat, SourceError, V4l2Config};

const MJPG: FourCC = FourCC { repr: *b"MJPG" };
const YUYV: FourCC = FourCC { repr: *b"YUYV" };
const GREY: FourCC = FourCC { repr: *b"GREY" };
/// Buffers mapped from the driver.
const BUFFERS: u32 = 4;
/// Largest accepted frame side: a driver reporting more is broken.
const MAX_SIDE: u32 = 8192;
/// Longest accepted `timeout_ms` (the driver poll takes an i32 of ms).
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// A V4L2 capture device delivering RGB frames.
pub struct V4l2Source {
    name: String,
    // Field order matters: the stream (buffers, STREAMOFF) goes before the device.
    stream: Stream<'static>,
    _device: Device,
    fourcc: FourCC,
    width: u32,
    height: u32,
    seq: u64,
    timeout_ms: u64,
}

/// Is this error the device going away (as opposed to a bad request)?
fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV | libc::EIO | libc::ENXIO | libc::EBADF | libc::ENOENT | libc::EPIPE)
    )
}

fn gone(what: &str, name: &str, e: &io::Error) -> SourceError {
    SourceError::Gone(format!("{name}: {what}: {e}"))
}

impl V4l2Source {
    /// Open and configure the camera. A missing device is `Gone` (it may be
    /// plugged in later); a path that is not a capture device is `NotACamera`.
    pub fn open(cfg: &V4l2Config) -> Result<V4l2Source, SourceError> {
        let name = cfg.device.display().to_string();
        if cfg.width == 0 || cfg.height == 0 || cfg.width > MAX_SIDE || cfg.height > MAX_SIDE {
            return Err(SourceError::Config(format!(
                "camera size {}x{} is out of range (1..={MAX_SIDE})",
                cfg.width, cfg.height
            )));
        }
        if cfg.fps == 0 || cfg.fps > 1000 {
            return Err(SourceError::Config(format!(
                "camera fps {} is out of range (1..=1000)",
                cfg.fps
            )));
        }
        if cfg.timeout_ms == 0 || cfg.timeout_ms > MAX_TIMEOUT_MS {
            return Err(SourceError::Config(format!(
                "camera timeout {} ms is out of range (1..={MAX_TIMEOUT_MS})",
                cfg.timeout_ms
            )));
        }
        match std::fs::metadata(&cfg.device) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SourceError::Gone(format!("{name}: no such device")));
            }
            Err(e) => return Err(SourceError::Gone(format!("{name}: {e}"))),
            Ok(m) => {
                use std::os::unix::fs::FileTypeExt;
                if !m.file_type().is_char_device() {
                    return Err(SourceError::NotACamera(format!(
                        "{name} is not a V4L2 device (not a character device)"
                    )));
                }
            }
        }
        let device = Device::with_path(&cfg.device).map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                SourceError::Config(format!(
                    "{name}: permission denied (is the daemon's user in the video group?)"
                ))
            } else {
                gone("open", &name, &e)
            }
        })?;
        let caps = device.query_caps().map_err(|e| {
            // ENOTTY/EINVAL: the driver does not know VIDIOC_QUERYCAP; ENOSYS:
            // the ioctl is not implemented at all (seen under qemu-user).
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOTTY | libc::EINVAL | libc::ENOSYS)
            ) {
                SourceError::NotACamera(format!("{name} is not a V4L2 device ({e})"))
            } else {
                gone("query capabilities", &name, &e)
            }
        })?;
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE) {
            return Err(SourceError::NotACamera(format!(
                "{name} ({}, driver {}) has no single-planar video capture",
                caps.card, caps.driver
            )));
        }
        if !caps.capabilities.contains(Flags::STREAMING) {
            return Err(SourceError::NotACamera(format!(
                "{name} ({}) does not support streaming I/O",
                caps.card
            )));
        }
        let offered: Vec<FourCC> = device
            .enum_formats()
            .map_err(|e| gone("list formats", &name, &e))?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let fourcc = choose_format(cfg.format, &offered).ok_or_else(|| {
            SourceError::Config(format!(
                "{name} offers {} but facegate needs {}",
                describe(&offered),
                match cfg.format {
                    PixelFormat::Auto => "MJPG, YUYV or GREY",
                    PixelFormat::Mjpeg => "MJPG",
                    PixelFormat::Yuyv => "YUYV",
                    PixelFormat::Grey => "GREY",
                }
            ))
        })?;
        let got = device
            .set_format(&Format::new(cfg.width, cfg.height, fourcc))
            .map_err(|e| gone("set format", &name, &e))?;
        if got.fourcc != fourcc {
            return Err(SourceError::Config(format!(
                "{name} refused pixel format {fourcc} (gave {})",
                got.fourcc
            )));
        }
        if got.width == 0 || got.height == 0 || got.width > MAX_SIDE || got.height > MAX_SIDE {
            return Err(SourceError::Config(format!(
                "{name} gave an unusable frame size {}x{}",
                got.width, got.height
            )));
        }
        if (got.width, got.height) != (cfg.width, cfg.height) {
            warn!(
                "{name}: asked for {}x{}, the driver gives {}x{}",
                cfg.width, cfg.height, got.width, got.height
            );
        }
        match device.set_params(&v4l::video::capture::Parameters::with_fps(cfg.fps)) {
            Ok(p) => debug!("{name}: frame interval {}", p.interval),
            Err(e) => warn!(
                "{name}: cannot set {} fps ({e}); using the driver's rate",
                cfg.fps
            ),
        }
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| gone("map buffers", &name, &e))?;
        stream.set_timeout(Duration::from_millis(cfg.timeout_ms));
        info!(
            "{name}: {} ({}), {}x{} {fourcc} at {} fps",
            caps.card, caps.driver, got.width, got.height, cfg.fps
        );
        Ok(V4l2Source {
            name,
            stream,
            _device: device,
            fourcc,
            width: got.width,
            height: got.height,
            seq: 0,
            timeout_ms: cfg.timeout_ms,
        })
    }

    /// The negotiated frame size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

impl FrameSource for V4l2Source {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_frame(&mut self) -> Result<Frame, SourceError> {
        let (buf, meta) = match self.stream.next() {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(SourceError::Timeout(self.timeout_ms));
            }
            Err(e) if is_gone(&e) => return Err(gone("capture", &self.name, &e)),
            // Anything else from the driver mid-stream also needs a reopen.
            Err(e) => return Err(gone("capture", &self.name, &e)),
        };
        let captured = Instant::now();
        let used = (meta.bytesused as usize).min(buf.len());
        let bytes = &buf[..used];
        let image = if self.fourcc == MJPG {
            decode_mjpeg(bytes)?
        } else if self.fourcc == GREY {
            grey_to_rgb(bytes, self.width, self.height)?
        } else {
            yuyv_to_rgb(bytes, self.width, self.height)?
        };
        let seq = self.seq;
        self.seq += 1;
        Ok(Frame {
            image,
            seq,
            captured,
        })
    }
}

/// The format to ask for, given what the device offers.
pub fn choose_format(want: PixelFormat, offered: &[FourCC]) -> Option<FourCC> {
    let has = |f: FourCC| offered.contains(&f).then_some(f);
    match want {
        PixelFormat::Auto => has(MJPG).or_else(|| has(YUYV)).or_else(|| has(GREY)),
        PixelFormat::Mjpeg => has(MJPG),
        PixelFormat::Yuyv => has(YUYV),
        PixelFormat::Grey => has(GREY),
    }
}

/// GREY (8-bit luminance, one byte per pixel) to grey RGB.
pub fn grey_to_rgb(bytes: &[u8], width: u32, height: u32) -> Result<RgbImage, SourceError> {
    let need = width as usize * height as usize;
    if bytes.len() < need {
        return Err(SourceError::Decode(format!(
            "short GREY frame: {} bytes, {width}x{height} needs {need}",
            bytes.len()
        )));
    }
    let out: Vec<u8> = bytes[..need].iter().flat_map(|&y| [y, y, y]).collect();
    RgbImage::from_raw(width, height, out)
        .ok_or_else(|| SourceError::Decode("GREY frame size overflow".into()))
}

fn describe(offered: &[FourCC]) -> String {
    if offered.is_empty() {
        return "no pixel formats".into();
    }
    offered
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// YUYV 4:2:2 (Y0 U Y1 V per two pixels, BT.601 limited range) to RGB.
pub fn yuyv_to_rgb(bytes: &[u8], width: u32, height: u32) -> Result<RgbImage, SourceError> {
    if !width.is_multiple_of(2) {
        return Err(SourceError::Decode(format!(
            "YUYV frame width {width} is odd"
        )));
    }
    let need = width as usize * height as usize * 2;
    if bytes.len() < need {
        return Err(SourceError::Decode(format!(
            "short YUYV frame: {} bytes, {width}x{height} needs {need}",
            bytes.len()
        )));
    }
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for (src, dst) in bytes[..need].chunks_exact(4).zip(out.chunks_exact_mut(6)) {
        let (u, v) = (src[1] as i32 - 128, src[3] as i32 - 128);
        for (k, y) in [src[0], src[2]].into_iter().enumerate() {
            let c = 298 * (y as i32 - 16);
            let px = [
                (c + 409 * v + 128) >> 8,
                (c - 100 * u - 208 * v + 128) >> 8,
                (c + 516 * u + 128) >> 8,
            ];
            for (j, p) in px.into_iter().enumerate() {
                dst[3 * k + j] = p.clamp(0, 255) as u8;
            }
        }
    }
    RgbImage::from_raw(width, height, out)
        .ok_or_else(|| SourceError::Decode("YUYV frame size overflow".into()))
}

/// The Huffman tables of JPEG Annex K (K.3), as one DHT segment. Many UVC
/// cameras send MJPEG frames without a DHT segment and expect these.
const DEFAULT_DHT: &[u8] = &[
    0xFF, 0xC4, 0x01, 0xA2, // DHT, length 418
    0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, // DC lum
    0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01,
    0x7D, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
    0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1,
    0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27,
    0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88,
    0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6,
    0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4,
    0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7,
    0xF8, 0xF9, 0xFA, // AC lum
    0x01, 0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, // DC chr
    0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01, 0x02,
    0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
    0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52,
    0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A,
    0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47,
    0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67,
    0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86,
    0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4,
    0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2,
    0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9,
    0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7,
    0xF8, 0xF9, 0xFA, // AC chr
];

/// Where to insert the default tables: `None` when the stream has its own
/// DHT, else the offset of the first SOS marker. Walks the marker segments.
fn missing_dht_at(bytes: &[u8]) -> Result<Option<usize>, SourceError> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(SourceError::Decode(
            "MJPEG frame does not start with SOI".into(),
        ));
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return Err(SourceError::Decode(format!(
                "MJPEG frame: no marker at byte {i}"
            )));
        }
        let marker = bytes[i + 1];
        match marker {
            0xFF => i += 1, // fill byte
            0xC4 => return Ok(None),
            0xDA => return Ok(Some(i)),
            0xD0..=0xD7 | 0x01 => i += 2,
            _ => {
                let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
                if len < 2 {
                    return Err(SourceError::Decode(format!(
                        "MJPEG frame: bad segment length at byte {i}"
                    )));
                }
                i += 2 + len;
            }
        }
    }
    Err(SourceError::Decode(
        "MJPEG frame has no scan (truncated)".into(),
    ))
}

/// Decode one MJPEG frame to RGB, inserting the standard Huffman tables
/// when the camera leaves them out.
pub fn decode_mjpeg(bytes: &[u8]) -> Result<RgbImage, SourceError> {
    let fixed;
    let data = match missing_dht_at(bytes)? {
        None => bytes,
        Some(at) => {
            let mut v = Vec::with_capacity(bytes.len() + DEFAULT_DHT.len());
            v.extend_from_slice(&bytes[..at]);
            v.extend_from_slice(DEFAULT_DHT);
            v.extend_from_slice(&bytes[at..]);
            fixed = v;
            &fixed
        }
    };
    let img = image::load_from_memory_with_format(data, image::ImageFormat::Jpeg)
        .map_err(|e| SourceError::Decode(format!("MJPEG frame: {e}")))?;
    Ok(img.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 limited-range RGB → YUV (reference encoder for the test).
    fn yuv(p: [u8; 3]) -> [f32; 3] {
        let [r, g, b] = p.map(|v| v as f32);
        let y = 16.0 + (65.738 * r + 129.057 * g + 25.064 * b) / 256.0;
        let u = 128.0 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256.0;
        let v = 128.0 + (112.439 * r - 94.154 * g - 18.285 * b) / 256.0;
        [y, u, v]
    }

    fn to_yuyv(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        for row in 0..img.height() {
            for x in (0..img.width()).step_by(2) {
                let a = yuv(img.get_pixel(x, row).0);
                let b = yuv(img.get_pixel(x + 1, row).0);
                let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
                out.extend_from_slice(&[
                    q(a[0]),
                    q((a[1] + b[1]) / 2.0),
                    q(b[0]),
                    q((a[2] + b[2]) / 2.0),
                ]);
            }
        }
        out
    }

    fn test_image(w: u32, h: u32) -> RgbImage {
        // Smooth colours (4:2:2 halves chroma resolution), all channels used.
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (40 + (x * 170 / w)) as u8,
                (30 + (y * 180 / h)) as u8,
                (200 - ((x + y) * 150 / (w + h))) as u8,
            ])
        })
    }

    #[test]
    fn yuyv_round_trip() {
        let img = test_image(64, 48);
        let back = yuyv_to_rgb(&to_yuyv(&img), 64, 48).unwrap();
        let worst = img
            .pixels()
            .zip(back.pixels())
            .flat_map(|(a, b)| (0..3).map(move |c| (a.0[c] as i32 - b.0[c] as i32).abs()))
            .max()
            .unwrap();
        assert!(worst <= 4, "worst channel error {worst}");
    }

    #[test]
    fn yuyv_known_colours() {
        // Limited-range black, white and pure red.
        let px = |y: u8, u: u8, v: u8| yuyv_to_rgb(&[y, u, y, v], 2, 1).unwrap().get_pixel(0, 0).0;
        assert_eq!(px(16, 128, 128), [0, 0, 0]);
        assert_eq!(px(235, 128, 128), [255, 255, 255]);
        let red = px(81, 90, 240);
        assert!(red[0] >= 250 && red[1] <= 3 && red[2] <= 3, "{red:?}");
    }

    #[test]
    fn grey_frames_expand_to_grey_rgb() {
        let img = grey_to_rgb(&[0, 7, 200, 255, 9], 2, 2).unwrap();
        assert_eq!(img.dimensions(), (2, 2));
        assert_eq!(img.get_pixel(1, 0).0, [7, 7, 7]);
        assert_eq!(img.get_pixel(1, 1).0, [255, 255, 255]);
        assert!(matches!(
            grey_to_rgb(&[0; 3], 2, 2),
            Err(SourceError::Decode(_))
        ));
    }

    #[test]
    fn yuyv_rejects_short_and_odd_frames() {
        assert!(matches!(
            yuyv_to_rgb(&[0; 10], 4, 2),
            Err(SourceError::Decode(_))
        ));
        assert!(matches!(
            yuyv_to_rgb(&[0; 12], 3, 2),
            Err(SourceError::Decode(_))
        ));
        assert!(yuyv_to_rgb(&[16, 128, 16, 128].repeat(4), 4, 2).is_ok());
    }

    fn jpeg(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .unwrap();
        out
    }

    /// Drop every DHT segment, as many UVC cameras do.
    fn strip_dht(bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes[..2].to_vec();
        let mut i = 2;
        loop {
            let marker = bytes[i + 1];
            if marker == 0xDA {
                out.extend_from_slice(&bytes[i..]);
                return out;
            }
            let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
            if marker != 0xC4 {
                out.extend_from_slice(&bytes[i..i + 2 + len]);
            }
            i += 2 + len;
        }
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        let s: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (*x as i64 - *y as i64).unsigned_abs())
            .sum();
        s as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn mjpeg_with_and_without_huffman_tables() {
        let img = test_image(96, 64);
        let full = jpeg(&img);
        let stripped = strip_dht(&full);
        assert!(
            stripped.len() < full.len(),
            "the encoder wrote no DHT to strip"
        );
        assert_eq!(missing_dht_at(&full).unwrap(), None);
        assert!(missing_dht_at(&stripped).unwrap().is_some());
        // Without tables the plain decoder fails; with the inserted ones it works.
        assert!(image::load_from_memory_with_format(&stripped, image::ImageFormat::Jpeg).is_err());
        let a = decode_mjpeg(&full).unwrap();
        let b = decode_mjpeg(&stripped).unwrap();
        assert_eq!(a.dimensions(), (96, 64));
        assert!(mean_abs_diff(&a, &img) < 3.0);
        assert_eq!(a, b, "the inserted tables must be the encoder's (Annex K)");
    }

    #[test]
    fn mjpeg_garbage_is_a_decode_error() {
        let full = jpeg(&test_image(32, 32));
        for bad in [
            &b""[..],
            &b"\xFF\xD8"[..],
            &b"not a jpeg"[..],
            &full[..full.len() / 3],
        ] {
            assert!(
                matches!(decode_mjpeg(bad), Err(SourceError::Decode(_))),
                "{} bytes accepted",
                bad.len()
            );
        }
    }

    #[test]
    fn format_choice() {
        assert_eq!(choose_format(PixelFormat::Auto, &[YUYV, MJPG]), Some(MJPG));
        assert_eq!(choose_format(PixelFormat::Auto, &[YUYV]), Some(YUYV));
        assert_eq!(choose_format(PixelFormat::Mjpeg, &[YUYV]), None);
        assert_eq!(choose_format(PixelFormat::Yuyv, &[MJPG, YUYV]), Some(YUYV));
        // IR cameras typically offer only GREY.
        assert_eq!(choose_format(PixelFormat::Auto, &[GREY]), Some(GREY));
        assert_eq!(choose_format(PixelFormat::Grey, &[YUYV, GREY]), Some(GREY));
        assert_eq!(choose_format(PixelFormat::Grey, &[YUYV]), None);
        assert_eq!(
            choose_format(PixelFormat::Auto, &[FourCC::new(b"H264")]),
            None
        );
    }

    fn cfg(device: &str) -> V4l2Config {
        V4l2Config {
            device: device.into(),
            ..V4l2Config::default()
        }
    }

    #[test]
    fn open_errors_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("video9");
        let e = V4l2Source::open(&cfg(missing.to_str().unwrap()))
            .err()
            .unwrap();
        assert!(matches!(e, SourceError::Gone(_)), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = V4l2Source::open(&cfg(file.to_str().unwrap()))
            .err()
            .unwrap();
        assert!(matches!(e, SourceError::NotACamera(_)), "{e}");
        // A character device that is not a camera.
        let e = V4l2Source::open(&cfg("/dev/null")).err().unwrap();
        assert!(matches!(e, SourceError::NotACamera(_)), "{e}");
        assert!(e.to_string().contains("not a V4L2 device"), "{e}");
        let mut bad = cfg("/dev/null");
        bad.timeout_ms = 0;
        assert!(matches!(
            V4l2Source::open(&bad),
            Err(SourceError::Config(_))
        ));
        bad = cfg("/dev/null");
        bad.width = 0;
        assert!(matches!(
            V4l2Source::open(&bad),
            Err(SourceError::Config(_))
        ));
    }
}
