//! Export / import: round trip, integrity errors, merge rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::path::Path;

use facegate::gallery::bench::XorShift;
use facegate::gallery::{
    Condition, Gallery, GalleryError, ImportMode, ModelId, NewTemplate, StoreOptions,
    EXPORT_VERSION,
};

const DIM: usize = 32;

fn model() -> ModelId {
    ModelId::new("export-model", "beef")
}

fn gallery(dir: &Path) -> Gallery {
    Gallery::open(dir, &StoreOptions::new(DIM, model())).unwrap()
}

fn populate(g: &Gallery, seed: u64) {
    let mut rng = XorShift::new(seed);
    g.add_user("alice", Some(1000)).unwrap();
    g.add_user("bob", None).unwrap();
    let mut batch = Vec::new();
    for (i, user) in ["alice", "alice", "bob"].iter().enumerate() {
        batch.push(NewTemplate {
            user: user.to_string(),
            embedding: rng.unit(DIM),
            condition: [
                Condition::Unmasked,
                Condition::Masked,
                Condition::SyntheticMasked,
            ][i],
            source: format!("cam{i}"),
            quality: 0.25 * i as f32,
        });
    }
    g.add_templates(batch).unwrap();
    g.set_enabled("bob", false).unwrap();
}

#[test]
fn round_trip_into_empty_restores_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let a = gallery(&tmp.path().join("a"));
    populate(&a, 1);
    let file = tmp.path().join("backup.fgg");
    a.export(&file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let b = gallery(&tmp.path().join("b"));
    let r = b.import(&file, ImportMode::IntoEmpty).unwrap();
    assert_eq!((r.users_added, r.templates_added), (2, 3));
    assert_eq!(a.users().unwrap(), b.users().unwrap());
    assert_eq!(a.templates().unwrap(), b.templates().unwrap());
    assert_eq!(b.store().next_id().unwrap(), a.store().next_id().unwrap());
    // bob is disabled in the copy too: only alice can match
    let q = a.templates().unwrap()[2].embedding.clone();
    let hits = b.search(&q, &Default::default()).unwrap();
    assert!(hits.iter().all(|h| &*h.user == "alice"));
    // IntoEmpty refuses a non-empty gallery
    assert!(matches!(
        b.import(&file, ImportMode::IntoEmpty),
        Err(GalleryError::ImportTargetNotEmpty { users: 2 })
    ));
}

#[test]
fn merge_keeps_existing_users_and_skips_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let a = gallery(&tmp.path().join("a"));
    populate(&a, 1);
    let file = tmp.path().join("a.fgg");
    a.export(&file).unwrap();

    let b = gallery(&tmp.path().join("b"));
    b.add_user("alice", Some(42)).unwrap(); // different uid: gallery record wins
    b.add_user("carol", None).unwrap();
    let mut rng = XorShift::new(9);
    b.add_template(NewTemplate {
        user: "alice".into(),
        embedding: rng.unit(DIM),
        condition: Condition::Unmasked,
        source: "b".into(),
        quality: 1.0,
    })
    .unwrap();
    let r = b.import(&file, ImportMode::Merge).unwrap();
    assert_eq!(r.users_added, 1); // bob
    assert_eq!(r.users_kept, 1); // alice
    assert_eq!(r.templates_added, 3);
    assert_eq!(r.templates_skipped, 0);
    let alice = b.store().user("alice").unwrap().unwrap();
    assert_eq!(alice.uid, Some(42));
    assert!(!b.store().user("bob").unwrap().unwrap().enabled);
    assert_eq!(b.counts().unwrap().templates, 4);
    // new ids were assigned after b's own
    let ids: Vec<u64> = b.templates().unwrap().iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    b.store().verify().unwrap();
    // importing the same file again changes nothing
    let r = b.import(&file, ImportMode::Merge).unwrap();
    assert_eq!(
        (r.users_added, r.templates_added, r.templates_skipped),
        (0, 0, 3)
    );
    assert_eq!(b.counts().unwrap().templates, 4);
    assert_eq!(b.snapshot().len(), 4);
}

#[test]
fn integrity_errors_are_distinct() {
    let tmp = tempfile::tempdir().unwrap();
    let a = gallery(&tmp.path().join("a"));
    populate(&a, 2);
    let file = tmp.path().join("a.fgg");
    a.export(&file).unwrap();
    let good = std::fs::read(&file).unwrap();
    let b = gallery(&tmp.path().join("b"));
    let try_bytes = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        b.import(&p, ImportMode::Merge).unwrap_err()
    };
    // truncated at several points
    for cut in [good.len() - 1, good.len() - 33, good.len() / 2, 21, 12] {
        let e = try_bytes("trunc.fgg", &good[..cut]);
        assert!(
            matches!(e, GalleryError::ExportTruncated { .. }),
            "cut {cut}: {e}"
        );
    }
    // tampered body byte / tampered hash byte
    for pos in [30, good.len() / 2, good.len() - 1] {
        let mut t = good.clone();
        t[pos] ^= 0x01;
        let e = try_bytes("tamper.fgg", &t);
        assert!(
            matches!(e, GalleryError::ExportChecksumMismatch),
            "pos {pos}: {e}"
        );
    }
    // wrong version
    let mut v = good.clone();
    v[8..12].copy_from_slice(&(EXPORT_VERSION + 1).to_le_bytes());
    assert!(matches!(
        try_bytes("ver.fgg", &v),
        GalleryError::ExportUnsupportedVersion { found, .. } if found == EXPORT_VERSION + 1
    ));
    // bad magic
    let mut m = good.clone();
    m[0] = b'X';
    assert!(matches!(
        try_bytes("magic.fgg", &m),
        GalleryError::ExportBadMagic(_)
    ));
    assert!(matches!(
        try_bytes("empty.fgg", b""),
        GalleryError::ExportBadMagic(_)
    ));
    // trailing garbage
    let mut tr = good.clone();
    tr.extend_from_slice(b"junk");
    assert!(matches!(
        try_bytes("trail.fgg", &tr),
        GalleryError::ExportTrailingData { extra: 4 }
    ));
    // nothing was imported by any failed attempt
    assert_eq!(b.counts().unwrap().templates, 0);
    assert_eq!(b.counts().unwrap().users, 0);
    // and the good file still imports
    b.import(&file, ImportMode::IntoEmpty).unwrap();
}

#[test]
fn import_refuses_other_model() {
    let tmp = tempfile::tempdir().unwrap();
    let a = gallery(&tmp.path().join("a"));
    populate(&a, 3);
    let file = tmp.path().join("a.fgg");
    a.export(&file).unwrap();
    let other = Gallery::open(
        tmp.path().join("c"),
        &StoreOptions::new(DIM, ModelId::new("newer-model", "cafe")),
    )
    .unwrap();
    let e = other.import(&file, ImportMode::Merge).unwrap_err();
    assert!(matches!(e, GalleryError::ImportModelMismatch { .. }), "{e}");
    assert!(e.to_string().contains("export-model"));
}
