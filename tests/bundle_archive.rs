//! Bundle archives (issue 16 §3, docs/MODELS_SHIPPING.md): `pack` on the
//! workstation, `install` on the device. A good archive installs and opens
//! as the daemon opens bundles; every kind of bad archive is refused with
//! its own message and leaves the models folder exactly as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use facegate::bundle::archive::{self, ArchiveError, Outcome};
use facegate::bundle::sign::{self, Status, TrustPolicy, SIG_FILE};
use facegate::bundle::{sha256_hex, Bundle};

const KEY_A: [u8; 32] = [0x11; 32];
const KEY_B: [u8; 32] = [0x22; 32];
/// The smallest embedder (1.7 MB).
const BUNDLE: &str = "mobilefacenet-int8-qlinear";

fn requiring_a() -> TrustPolicy {
    TrustPolicy {
        trusted_keys: vec![sign::public_key(&KEY_A)],
        allow_unsigned: false,
    }
}

/// A real copy of BUNDLE signed with `seed`, in `tmp/src/<BUNDLE>`.
fn signed_copy(tmp: &Path, seed: &[u8; 32]) -> PathBuf {
    let src = common::models_dir().join("bundles").join(BUNDLE);
    let dst = tmp.join("src").join(BUNDLE);
    fs::create_dir_all(&dst).unwrap();
    for f in ["manifest.toml", "model.onnx"] {
        fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let manifest = fs::read(dst.join("manifest.toml")).unwrap();
    fs::write(dst.join(SIG_FILE), sign::sign(seed, &manifest).to_text()).unwrap();
    dst
}

/// Every file under `dir` (hidden ones too) with its sha256.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), "dir".into());
                stack.push(p);
            } else {
                out.insert(p.clone(), sha256_hex(&fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// The entries of an archive as (name, bytes), in order.
fn entries(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let f = flate2::read::GzDecoder::new(fs::File::open(archive).unwrap());
    let mut t = tar::Archive::new(f);
    t.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Write `files` as a .tar.gz, names as given (even `../x`: the header is
/// filled by hand, as an attacker would).
fn write_archive(path: &Path, files: &[(String, Vec<u8>)], kind: tar::EntryType) {
    let gz =
        flate2::write::GzEncoder::new(fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(kind);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

fn sums(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    files
        .iter()
        .filter(|(n, _)| n != "SHA256SUMS")
        .map(|(n, d)| format!("{}  {n}\n", sha256_hex(d)))
        .collect::<String>()
        .into_bytes()
}

fn set(files: &mut [(String, Vec<u8>)], name: &str, data: Vec<u8>) {
    files.iter_mut().find(|(n, _)| n == name).unwrap().1 = data;
}

#[test]
fn a_packed_bundle_installs_and_opens_as_the_daemon_opens_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = signed_copy(tmp.path(), &KEY_A);
    let arc = tmp.path().join("b.tar.gz");
    archive::pack(&src, &arc).unwrap();
    let names: Vec<String> = entries(&arc).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["manifest.toml", "manifest.sig", "model.onnx", "SHA256SUMS"]
    );
    // Deterministic: packing again gives the same bytes.
    let arc2 = tmp.path().join("b2.tar.gz");
    archive::pack(&src, &arc2).unwrap();
    assert_eq!(fs::read(&arc).unwrap(), fs::read(&arc2).unwrap());

    let models = tmp.path().join("models");
    let r = archive::install(&arc, &models, Some(&requiring_a()), false).unwrap();
    assert_eq!(r.outcome, Outcome::Installed);
    assert_eq!(r.signature, Status::Trusted(sign::public_key(&KEY_A)));
    let (b, st) = Bundle::open_named_trusted(&models, BUNDLE, &requiring_a()).unwrap();
    assert_eq!(st, Status::Trusted(sign::public_key(&KEY_A)));
    assert_eq!(b.sha256(), Bundle::open(&src).unwrap().sha256());
    // Only the bundle's own files, and no staging left behind.
    let mut files: Vec<String> = fs::read_dir(models.join("bundles").join(BUNDLE))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["manifest.sig", "manifest.toml", "model.onnx"]);
    assert_eq!(fs::read_dir(models.join("bundles")).unwrap().count(), 1);

    // Again: nothing to do.
    let before = tree(&models);
    let r = archive::install(&arc, &models, Some(&requiring_a()), false).unwrap();
    assert_eq!(r.outcome, Outcome::AlreadyInstalled);
    assert_eq!(tree(&models), before);
}

#[test]
fn a_different_bundle_of_the_same_name_is_replaced_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let src = signed_copy(tmp.path(), &KEY_A);
    let models = tmp.path().join("models");
    let arc = tmp.path().join("a.tar.gz");
    archive::pack(&src, &arc).unwrap();
    archive::install(&arc, &models, None, false).unwrap();
    // Same name, another version (re-signed manifest).
    let text = fs::read_to_string(src.join("manifest.toml")).unwrap();
    let text = text.replacen("version = \"", "version = \"2+", 1);
    fs::write(src.join("manifest.toml"), &text).unwrap();
    fs::write(
        src.join(SIG_FILE),
        sign::sign(&KEY_A, text.as_bytes()).to_text(),
    )
    .unwrap();
    let arc2 = tmp.path().join("a2.tar.gz");
    archive::pack(&src, &arc2).unwrap();
    let before = tree(&models);
    let err = archive::install(&arc2, &models, None, false).unwrap_err();
    assert!(matches!(err, ArchiveError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(tree(&models), before);
    let r = archive::install(&arc2, &models, None, true).unwrap();
    assert_eq!(r.outcome, Outcome::Replaced);
    let b = Bundle::open_named(&models, BUNDLE).unwrap();
    assert!(b.manifest.version.starts_with("2+"));
    assert_eq!(fs::read_dir(models.join("bundles")).unwrap().count(), 1);
}

/// Each tampering, the policy it is installed under, and what the error says.
#[test]
fn a_bad_archive_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = signed_copy(tmp.path(), &KEY_A);
    let arc = tmp.path().join("good.tar.gz");
    archive::pack(&src, &arc).unwrap();
    let good = entries(&arc);
    // An installed bundle that must survive every attempt untouched.
    let models = tmp.path().join("models");
    let other = common::models_dir().join("bundles/retinaface-mnet025");
    let keep = models.join("bundles/retinaface-mnet025");
    fs::create_dir_all(&keep).unwrap();
    for f in ["manifest.toml", "model.onnx"] {
        fs::copy(other.join(f), keep.join(f)).unwrap();
    }
    let before = tree(&models);

    type Case = (
        &'static str,
        Box<dyn Fn(&mut Vec<(String, Vec<u8>)>)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "model bytes changed, sums not",
            Box::new(|f| {
                let mut m = f[2].1.clone();
                m[1000] ^= 1;
                set(f, "model.onnx", m);
            }),
            "\"model.onnx\" has sha256",
        ),
        (
            "model bytes changed, sums fixed",
            Box::new(|f| {
                let mut m = f[2].1.clone();
                m[1000] ^= 1;
                set(f, "model.onnx", m);
                let s = sums(f);
                set(f, "SHA256SUMS", s);
            }),
            "corrupt or tampered",
        ),
        (
            "manifest changed, sums fixed",
            Box::new(|f| {
                let t = String::from_utf8(f[0].1.clone()).unwrap();
                set(
                    f,
                    "manifest.toml",
                    t.replacen("version = \"", "version = \"9", 1).into_bytes(),
                );
                let s = sums(f);
                set(f, "SHA256SUMS", s);
            }),
            "does not match manifest.toml",
        ),
        (
            "checksum list wrong",
            Box::new(|f| {
                let s = String::from_utf8(f[3].1.clone()).unwrap();
                let s = s.replacen(&s[..4], "0000", 1);
                set(f, "SHA256SUMS", s.into_bytes());
            }),
            "SHA256SUMS says",
        ),
        (
            "no checksum list",
            Box::new(|f| {
                f.pop();
            }),
            "no SHA256SUMS",
        ),
        (
            "signed by an untrusted key",
            Box::new(|f| {
                let sig = sign::sign(&KEY_B, &f[0].1).to_text();
                set(f, "manifest.sig", sig.into_bytes());
                let s = sums(f);
                set(f, "SHA256SUMS", s);
            }),
            "not in [models] trusted_keys",
        ),
        (
            "signature removed",
            Box::new(|f| {
                f.remove(1);
                let s = sums(f);
                set(f, "SHA256SUMS", s);
            }),
            "not signed",
        ),
        (
            "path traversal",
            Box::new(|f| {
                f.insert(0, ("../x".into(), b"pwned".to_vec()));
            }),
            "not a plain file name",
        ),
        (
            "absolute path",
            Box::new(|f| {
                f.insert(0, ("/tmp/facegate-x".into(), b"pwned".to_vec()));
            }),
            "not a plain file name",
        ),
        (
            "folder entry",
            Box::new(|f| {
                f.insert(0, ("sub/model.onnx".into(), b"x".to_vec()));
            }),
            "not a plain file name",
        ),
        (
            "extra file",
            Box::new(|f| {
                f.insert(3, ("README".into(), b"hello".to_vec()));
                let s = sums(f);
                set(f, "SHA256SUMS", s);
            }),
            "more than 4 entries",
        ),
        (
            "duplicate entry",
            Box::new(|f| {
                let m = f[0].clone();
                f.insert(1, m);
            }),
            "appears twice",
        ),
    ];
    for (what, tamper, needle) in &cases {
        let mut files = good.clone();
        tamper(&mut files);
        let bad = tmp.path().join("bad.tar.gz");
        write_archive(&bad, &files, tar::EntryType::Regular);
        let err = archive::install(&bad, &models, Some(&requiring_a()), true).unwrap_err();
        let msg = format!("{err}");
        assert!(
            msg.contains(needle),
            "{what}: {msg:?} should say {needle:?}"
        );
        assert_eq!(tree(&models), before, "{what}: the models folder changed");
        assert!(!tmp.path().join("x").exists() && !Path::new("/tmp/facegate-x").exists());
    }

    // A symbolic link entry.
    let bad = tmp.path().join("link.tar.gz");
    write_archive(
        &bad,
        &[("model.onnx".into(), Vec::new())],
        tar::EntryType::Symlink,
    );
    let err = archive::install(&bad, &models, None, true).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(tree(&models), before);

    // A truncated download, and bytes that are no archive at all.
    let bytes = fs::read(&arc).unwrap();
    for (what, data) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        (
            "garbage",
            b"definitely not a tar archive, but long enough to need 512 bytes of header; "
                .repeat(10),
        ),
        ("empty", Vec::new()),
    ] {
        let bad = tmp.path().join("cut.tar.gz");
        fs::File::create(&bad).unwrap().write_all(&data).unwrap();
        let err = archive::install(&bad, &models, None, true).unwrap_err();
        assert!(matches!(err, ArchiveError::Invalid { .. }), "{what}: {err}");
        assert_eq!(tree(&models), before, "{what}: the models folder changed");
    }
}

/// The command line, as on a device: `--config` gives the daemon's policy.
#[test]
fn the_cli_packs_and_installs_under_the_daemons_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let src = signed_copy(tmp.path(), &KEY_B);
    let arc = tmp.path().join("b.tar.gz");
    let exe = env!("CARGO_BIN_EXE_facegate");
    let out = common::run_ok(
        Command::new(exe)
            .args(["models", "pack"])
            .arg(&src)
            .arg("--out")
            .arg(&arc),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("signed by ed25519:"));
    let models = tmp.path().join("models");
    let cfg = tmp.path().join("config.toml");
    let key = |s: &[u8; 32]| sign::public_key(s).to_string();
    fs::write(
        &cfg,
        format!(
            "[models]\ndir = \"{}\"\ntrusted_keys = [\"{}\"]\nallow_unsigned = false\n",
            models.display(),
            key(&KEY_A)
        ),
    )
    .unwrap();
    let install = |cfg: &Path| {
        Command::new(exe)
            .args(["models", "install"])
            .arg(&arc)
            .arg("--config")
            .arg(cfg)
            .output()
            .unwrap()
    };
    // Signed by B, the device trusts A: refused, nothing installed.
    let out = install(&cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing was installed") && err.contains("trusted_keys"),
        "{err}"
    );
    assert!(!models.join("bundles").join(BUNDLE).exists());
    // Trust B too: installed into the config's models dir.
    fs::write(
        &cfg,
        format!(
            "[models]\ndir = \"{}\"\ntrusted_keys = [\"{}\", \"{}\"]\n",
            models.display(),
            key(&KEY_A),
            key(&KEY_B)
        ),
    )
    .unwrap();
    let out = install(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("installed") && said.contains("(trusted)"),
        "{said}"
    );
    Bundle::open_named(&models, BUNDLE).unwrap();
}
