//! The wire protocol between `facegated` and its clients (`facegate`,
//! `facegate-unlock`, door controllers). One crate, shared by both sides; it
//! depends on serde, serde_json and thiserror only, so that the PAM helper
//! does not link the face pipeline.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of UTF-8
//! JSON. Every request carries the protocol version (`"v": 1`); a daemon that
//! does not speak it answers `error {kind: "version"}`. Frames are capped
//! ([`MAX_REQUEST`] for ordinary peers, [`MAX_ADMIN_REQUEST`] for
//! administrators, [`MAX_RESPONSE`] for answers); a longer length prefix is
//! refused without reading the body. See docs/PROTOCOL.md.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Version of this protocol.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request frame from an ordinary peer (verify, status, subscribe…).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest request frame from an administrator (enrolment images, imports).
pub const MAX_ADMIN_REQUEST: usize = 64 * 1024 * 1024;
/// Largest response frame a client accepts (exports can be large).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// The socket a client uses when not told: `$FACEGATE_SOCKET`, else
/// `/run/facegate/facegate.sock` when `/run/facegate` exists or we are root,
/// else `$XDG_RUNTIME_DIR/facegate/facegate.sock` (a development machine).
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os("FACEGATE_SOCKET") {
        return PathBuf::from(p);
    }
    let system = PathBuf::from("/run/facegate/facegate.sock");
    if sys::euid_is_root() || Path::new("/run/facegate").is_dir() {
        return system;
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("facegate/facegate.sock"),
        None => system,
    }
}

/// The one libc call this crate needs, without a libc crate.
#[allow(unsafe_code)]
mod sys {
    extern "C" {
        fn geteuid() -> u32;
    }

    /// Whether this process runs as root (effective uid 0).
    pub fn euid_is_root() -> bool {
        // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no
        // memory of ours; uid_t is a u32 on Linux.
        unsafe { geteuid() == 0 }
    }
}

/// An image sent inline (enrolment from files): the encoded file bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InlineImage {
    /// A label for messages (the file name).
    pub name: String,
    /// The encoded image (JPEG, PNG), base64.
    pub data_b64: String,
}

/// Where enrolment frames come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnrollSource {
    /// Capture `frames` good frames from the daemon's camera.
    Camera { frames: u32, timeout_ms: u64 },
    /// Images supplied by the client.
    Images { images: Vec<InlineImage> },
}

/// A request body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// 1:1 — is `user` in front of the camera?
    Verify { user: String, timeout_ms: u64 },
    /// 1:N open set — who is in front of the camera?
    Identify { timeout_ms: u64 },
    /// Add templates for `user` (created if missing, with `uid`).
    Enroll {
        user: String,
        #[serde(default)]
        uid: Option<u32>,
        source: EnrollSource,
    },
    /// Remove a user and their templates.
    Remove { user: String },
    /// Enrolled users.
    List,
    /// Daemon, camera and gallery state.
    Status,
    /// Stream door events on this connection until it closes.
    Subscribe,
    /// The whole gallery as an export file (base64).
    Export,
    /// Import an export file; `merge` = false needs an empty gallery.
    Import { data_b64: String, merge: bool },
    /// Re-embed every user's kept enrolment crops with the running embedder
    /// and replace their templates (`[enroll] keep_crops`).
    Reenroll,
    /// Measure the colour→IR camera geometry for `[liveness.ir]`: pair the
    /// landmarks of one face seen by both cameras over up to `frames`
    /// frames (the person moves across the view meanwhile).
    CalibrateIr { frames: u32, timeout_ms: u64 },
}

impl Request {
    /// Short name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Verify { .. } => "verify",
            Request::Identify { .. } => "identify",
            Request::Enroll { .. } => "enroll",
            Request::Remove { .. } => "remove",
            Request::List => "list",
            Request::Status => "status",
            Request::Subscribe => "subscribe",
            Request::Export => "export",
            Request::Import { .. } => "import",
            Request::Reenroll => "reenroll",
            Request::CalibrateIr { .. } => "calibrate-ir",
        }
    }
}

/// A request on the wire: version plus body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub v: u32,
    #[serde(flatten)]
    pub req: Request,
}

/// Time spent in each stage of the pipeline, milliseconds (summed over the
/// frames used for one decision).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stages {
    /// Waiting for a frame from the source.
    pub capture_ms: f64,
    pub detect_ms: f64,
    pub align_ms: f64,
    pub presence_ms: f64,
    pub embed_ms: f64,
    pub scan_ms: f64,
    /// Embedder runs behind `embed_ms` (2 for a masked probe when a mask
    /// presence classifier decides on the whole face and the probe is then
    /// compared as a periocular crop; 0 from daemons that predate it).
    #[serde(default)]
    pub embeddings: u32,
    /// Frames whose detection followed tracked faces in small regions
    /// instead of searching the whole frame (issue 17 §1; 0 from daemons
    /// that predate tracking or run without it).
    #[serde(default)]
    pub tracked: u32,
    /// The liveness checks (`[liveness]`; 0 when none ran).
    #[serde(default)]
    pub liveness_ms: f64,
}

impl Stages {
    pub fn add(&mut self, o: &Stages) {
        self.capture_ms += o.capture_ms;
        self.detect_ms += o.detect_ms;
        self.align_ms += o.align_ms;
        self.presence_ms += o.presence_ms;
        self.embed_ms += o.embed_ms;
        self.scan_ms += o.scan_ms;
        self.embeddings += o.embeddings;
        self.tracked += o.tracked;
        self.liveness_ms += o.liveness_ms;
    }
}

/// The per-stage latency as one line, as the clients print it.
pub fn stages_line(s: &Stages) -> String {
    let mut line = format!(
        "capture {:.1} ms, detect {:.1} ms, align {:.1} ms, mask presence {:.1} ms, embed {:.1} ms, scan {:.2} ms",
        s.capture_ms, s.detect_ms, s.align_ms, s.presence_ms, s.embed_ms, s.scan_ms
    );
    if s.liveness_ms > 0.0 {
        line.push_str(&format!(", liveness {:.1} ms", s.liveness_ms));
    }
    line
}

/// Why a verify/identify was denied.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No face in any frame within the time budget.
    NoFace,
    /// Faces were seen, but not close enough to the user (or anyone).
    NoMatch,
    /// The user has no templates.
    NotEnrolled,
    /// Too many recent failures; try again after `retry_after_ms`.
    LockedOut,
    /// The face matched, but a presentation-attack check required by
    /// `[liveness]` failed (see the decision's `liveness`).
    Liveness,
}

/// A presentation-attack check run for a decision (`[liveness]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LivenessCheck {
    /// Which check: "ir" (a live face in the IR camera, docs/LIVENESS.md).
    pub check: String,
    pub passed: bool,
    /// What was measured, or why it failed.
    pub detail: String,
}

/// One line per check, as the clients print them.
pub fn liveness_line(checks: &[LivenessCheck]) -> String {
    if checks.is_empty() {
        return "liveness: no check required".into();
    }
    let parts: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{} {}: {}",
                c.check,
                if c.passed { "passed" } else { "FAILED" },
                c.detail
            )
        })
        .collect();
    format!("liveness: {}", parts.join("; "))
}

/// The measured colour→IR geometry (`facegate calibrate-ir`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IrCalibration {
    /// `ir = scale · rgb + offset`, per axis (x, y).
    pub scale: [f32; 2],
    pub offset: [f32; 2],
    /// Landmark pairs fitted (five per frame with one face in both).
    pub points: usize,
    /// Frames with one face in both cameras.
    pub frames: u32,
    /// Residual of the fit, IR pixels.
    pub rms_px: f32,
    pub max_px: f32,
}

/// Kinds of errors.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The frame was not valid JSON or not a known request.
    BadRequest,
    /// The frame was larger than allowed.
    TooLarge,
    /// The request's protocol version is not spoken here.
    Version,
    /// The peer may not do this.
    Forbidden,
    /// Too many clients; try again.
    Busy,
    /// The camera is not delivering frames.
    Source,
    /// The daemon is not configured for this (e.g. no thresholds).
    Config,
    /// Enrolment input was rejected (no face, blurry…).
    Quality,
    /// Gallery failure, or the user does not exist.
    Gallery,
    /// Anything else inside the daemon.
    Internal,
}

/// One enrolled user, as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserInfo {
    pub name: String,
    pub uid: Option<u32>,
    pub enabled: bool,
    pub unmasked: usize,
    pub masked: usize,
    pub synthetic_masked: usize,
    /// Periocular templates (compared with masked probes; 0 from daemons
    /// older than this field).
    #[serde(default)]
    pub periocular: usize,
    /// No template made with the running embedder: the user must enrol
    /// again (or `facegate reenroll`, when crops are kept).
    #[serde(default)]
    pub must_reenrol: bool,
    /// Enrolment crops are kept for this user (`[enroll] keep_crops`).
    #[serde(default)]
    pub kept_crops: bool,
}

/// The daemon's state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusInfo {
    pub version: String,
    pub protocol: u32,
    pub uptime_s: f64,
    /// The source's name (device or directory).
    pub source: String,
    /// "streaming", "opening", "reopening in N ms: <why>", "failed: <why>".
    pub source_state: String,
    pub frames: u64,
    pub source_reopens: u64,
    pub users: usize,
    pub templates: usize,
    pub embedder: String,
    pub detector: String,
    /// Thresholds in use (None: uncalibrated and not configured).
    pub threshold_unmasked: Option<f32>,
    pub threshold_masked: Option<f32>,
    /// Masked probes are compared as periocular crops at this threshold
    /// (None: whole faces, at `threshold_masked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_periocular: Option<f32>,
    /// Identification thresholds (identify, door mode) for the gallery's
    /// current size; None when identification is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify_unmasked: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify_masked: Option<f32>,
    /// How they were chosen ("FPIR 1e-3 for 12 enrolled (at most 1260)"), or
    /// why identification is refused. Empty from daemons before issue 15.
    #[serde(default)]
    pub identify_state: String,
    pub clients: usize,
    pub subscribers: usize,
    /// The optional second (IR) camera (`[camera.ir]`), absent when not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ir_camera: Option<SourceStatus>,
    /// Users with no template made with the running embedder (it changed):
    /// they are not recognised until they enrol again or `reenroll` runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_reenrol: Vec<String>,
    /// The liveness checks required (`[liveness]`): `"verify: ir, door: off"`.
    /// Empty from daemons before them.
    #[serde(default)]
    pub liveness: String,
}

/// State of a frame source, as in [`StatusInfo`]'s `source*` fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceStatus {
    pub source: String,
    pub state: String,
    pub frames: u64,
    pub reopens: u64,
}

/// Result of an enrolment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnrollReport {
    pub user: String,
    pub unmasked: usize,
    pub synthetic_masked: usize,
    /// Periocular templates stored (one per accepted capture when the
    /// embedder is calibrated for periocular comparison).
    #[serde(default)]
    pub periocular: usize,
    /// Inputs rejected by the quality checks, with the reason.
    pub rejected: Vec<String>,
}

/// A door event, pushed to subscribers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DoorEvent {
    pub user: String,
    pub score: f32,
    pub masked: bool,
    pub frames: u32,
    pub ms: f64,
    /// Unix time, seconds.
    pub at: u64,
    /// The liveness checks that ran for this arrival (empty when
    /// `[liveness] door = "off"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub liveness: Vec<LivenessCheck>,
}

/// A response body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Unlock {
        user: String,
        score: f32,
        /// Frames that passed the threshold / frames with a face looked at.
        frames: u32,
        masked: bool,
        ms: f64,
        stages: Stages,
        /// The liveness checks that ran (empty when `[liveness]` asks none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        liveness: Vec<LivenessCheck>,
    },
    Deny {
        reason: DenyReason,
        /// Best score seen (for the user, or anyone), if a face was seen.
        best_score: Option<f32>,
        frames: u32,
        ms: f64,
        retry_after_ms: Option<u64>,
        /// The liveness checks that ran (the failed one, for `liveness`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        liveness: Vec<LivenessCheck>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
    Enrolled(EnrollReport),
    Removed {
        user: String,
        templates: usize,
    },
    Users {
        users: Vec<UserInfo>,
    },
    Status(Box<StatusInfo>),
    /// Subscription accepted; events follow.
    Subscribed,
    Event(DoorEvent),
    Exported {
        data_b64: String,
    },
    Imported {
        users_added: usize,
        users_kept: usize,
        templates_added: usize,
        templates_skipped: usize,
    },
    Reenrolled(ReenrollReport),
    IrCalibration(IrCalibration),
}

/// Result of a re-enrolment from kept crops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReenrollReport {
    /// The embedder the templates were made with.
    pub embedder: String,
    /// Users whose templates were replaced.
    pub users: Vec<String>,
    pub templates: usize,
    /// Users with no kept crops: they must enrol again.
    pub without_crops: Vec<String>,
    /// Users whose crops could not be used, with why (templates kept).
    pub failed: Vec<String>,
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error {
            kind,
            message: message.into(),
        }
    }
}

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("timed out")]
    Timeout,
    #[error("i/o: {0}")]
    Io(io::Error),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => FrameError::Timeout,
            io::ErrorKind::UnexpectedEof => FrameError::Closed,
            _ => FrameError::Io(e),
        }
    }
}

/// Write one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Read one frame's bytes, refusing lengths above `max` before reading them.
/// A clean EOF before the first byte is [`FrameError::Closed`].
pub fn read_frame_bytes<R: Read>(r: &mut R, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) => {
                return Err(if got == 0 {
                    FrameError::Closed
                } else {
                    FrameError::Malformed("truncated length prefix".into())
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Malformed("truncated frame".into()),
        _ => e.into(),
    })?;
    Ok(body)
}

/// Read and parse one frame.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(
    r: &mut R,
    max: usize,
) -> Result<T, FrameError> {
    let body = read_frame_bytes(r, max)?;
    serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Parse a request frame body: checks the version first, so that a future
/// request type is reported as a version mismatch rather than garbage.
// The error is the answer to send back, once per bad request: its size
// (the largest variant, `unlock`) does not matter on this path.
#[allow(clippy::result_large_err)]
pub fn parse_request(body: &[u8]) -> Result<Request, Response> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Response::error(ErrorKind::BadRequest, format!("not JSON: {e}")))?;
    match v.get("v").and_then(|x| x.as_u64()) {
        Some(n) if n == u64::from(PROTOCOL_VERSION) => {}
        Some(n) => {
            return Err(Response::error(
                ErrorKind::Version,
                format!(
                    "protocol version {n} is not supported (this daemon speaks {PROTOCOL_VERSION})"
                ),
            ))
        }
        None => {
            return Err(Response::error(
                ErrorKind::BadRequest,
                "missing protocol version field \"v\"",
            ))
        }
    }
    serde_json::from_value::<Envelope>(v)
        .map(|e| e.req)
        .map_err(|e| Response::error(ErrorKind::BadRequest, format!("bad request: {e}")))
}

/// Client-side errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to facegated at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("facegated did not answer within {0} ms")]
    Timeout(u64),
    #[error("talking to facegated: {0}")]
    Frame(FrameError),
}

/// A connection to the daemon. Every read and write has a timeout.
pub struct Client {
    stream: UnixStream,
    timeout_ms: u64,
}

impl Client {
    /// Connect with `timeout_ms` as the read/write timeout of every call.
    pub fn connect(path: &Path, timeout_ms: u64) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let c = Client {
            stream,
            timeout_ms: timeout_ms.max(1),
        };
        c.set_timeout(Some(c.timeout_ms))?;
        Ok(c)
    }

    fn set_timeout(&self, ms: Option<u64>) -> Result<(), ClientError> {
        let d = ms.map(|m| Duration::from_millis(m.max(1)));
        self.stream
            .set_read_timeout(d)
            .and_then(|_| self.stream.set_write_timeout(d))
            .map_err(|e| ClientError::Frame(FrameError::Io(e)))
    }

    fn map(&self, e: FrameError) -> ClientError {
        match e {
            FrameError::Timeout => ClientError::Timeout(self.timeout_ms),
            e => ClientError::Frame(e),
        }
    }

    /// Send one request and read its response.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        self.send(req)?;
        self.recv()
    }

    /// Send one request.
    pub fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let env = Envelope {
            v: PROTOCOL_VERSION,
            req: req.clone(),
        };
        write_frame(&mut self.stream, &env).map_err(|e| self.map(e))
    }

    /// Read one response (or event).
    pub fn recv(&mut self) -> Result<Response, ClientError> {
        read_frame(&mut self.stream, MAX_RESPONSE).map_err(|e| self.map(e))
    }

    /// Wait for events without a timeout (after `Subscribe`).
    pub fn recv_event(&mut self) -> Result<Response, ClientError> {
        self.set_timeout(None)?;
        let r = read_frame(&mut self.stream, MAX_RESPONSE).map_err(|e| self.map(e));
        self.set_timeout(Some(self.timeout_ms))?;
        r
    }

    /// The raw stream (tests use it to misbehave on purpose).
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_with_their_version() {
        let reqs = vec![
            Request::Verify {
                user: "ann".into(),
                timeout_ms: 3000,
            },
            Request::List,
            Request::Enroll {
                user: "bob".into(),
                uid: Some(1000),
                source: EnrollSource::Camera {
                    frames: 5,
                    timeout_ms: 10_000,
                },
            },
            Request::Import {
                data_b64: "AAAA".into(),
                merge: true,
            },
            Request::Reenroll,
        ];
        for r in reqs {
            let mut buf = Vec::new();
            write_frame(
                &mut buf,
                &Envelope {
                    v: PROTOCOL_VERSION,
                    req: r.clone(),
                },
            )
            .unwrap();
            assert_eq!(
                u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
                buf.len() - 4
            );
            let body = read_frame_bytes(&mut &buf[..], MAX_REQUEST).unwrap();
            assert_eq!(parse_request(&body).unwrap(), r);
        }
        let text = br#"{"v":1,"type":"verify","user":"ann","timeout_ms":5}"#;
        assert!(matches!(
            parse_request(text),
            Ok(Request::Verify { timeout_ms: 5, .. })
        ));
    }

    #[test]
    fn bad_frames_are_refused() {
        // Length above the cap: refused before the body is read.
        let mut buf = (MAX_REQUEST as u32 + 1).to_be_bytes().to_vec();
        buf.extend_from_slice(b"{}");
        assert!(matches!(
            read_frame_bytes(&mut &buf[..], MAX_REQUEST),
            Err(FrameError::TooLarge { .. })
        ));
        // Truncated body, truncated prefix, clean EOF.
        let mut buf = 10u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"{}");
        assert!(matches!(
            read_frame_bytes(&mut &buf[..], MAX_REQUEST),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame_bytes(&mut &[0u8, 0][..], MAX_REQUEST),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame_bytes(&mut &[][..], MAX_REQUEST),
            Err(FrameError::Closed)
        ));
        let err = |b: &[u8]| match parse_request(b) {
            Err(Response::Error { kind, .. }) => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(b"not json"), ErrorKind::BadRequest);
        assert_eq!(err(br#"{"type":"list"}"#), ErrorKind::BadRequest);
        assert_eq!(err(br#"{"v":2,"type":"list"}"#), ErrorKind::Version);
        assert_eq!(err(br#"{"v":1,"type":"reboot"}"#), ErrorKind::BadRequest);
        assert_eq!(
            err(br#"{"v":1,"type":"verify","user":7,"timeout_ms":1}"#),
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn answers_of_older_daemons_still_parse() {
        // A user and a status from before must_reenrol / kept_crops.
        let u: UserInfo = serde_json::from_str(
            r#"{"name":"a","uid":null,"enabled":true,"unmasked":1,"masked":0,"synthetic_masked":0}"#,
        )
        .unwrap();
        assert!(!u.must_reenrol && !u.kept_crops);
        let r: Response = serde_json::from_str(
            r#"{"type":"reenrolled","embedder":"e","users":["a"],"templates":2,"without_crops":["b"],"failed":[]}"#,
        )
        .unwrap();
        assert!(matches!(
            r,
            Response::Reenrolled(ReenrollReport { templates: 2, .. })
        ));
    }
}
