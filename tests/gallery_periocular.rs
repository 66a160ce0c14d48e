//! Periocular templates live in their own scan matrix: a whole-face probe
//! never meets them, a periocular probe meets only them — through add,
//! remove, user removal, reopen and export/import.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use facegate::gallery::bench::XorShift;
use facegate::gallery::{
    Condition, Gallery, ImportMode, ModelId, NewTemplate, OpenMode, SearchOptions, Space,
    StoreOptions,
};

fn tpl(user: &str, e: &[f32], condition: Condition) -> NewTemplate {
    NewTemplate {
        user: user.into(),
        embedding: e.to_vec(),
        condition,
        source: "test".into(),
        quality: 1.0,
    }
}

/// Best match of `q` in `space`: (user, score).
fn best(g: &Gallery, q: &[f32], space: Space) -> Option<(String, f32)> {
    g.search(
        q,
        &SearchOptions {
            k: 1,
            space,
            ..Default::default()
        },
    )
    .unwrap()
    .into_iter()
    .next()
    .map(|m| (m.user.to_string(), m.score))
}

#[test]
fn periocular_templates_are_searched_only_by_periocular_probes() {
    let dim = 192;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    let mut opts = StoreOptions::new(dim, ModelId::new("m", "01"));
    opts.mode = OpenMode::Create;
    let g = Gallery::open(&dir, &opts).unwrap();
    let mut rng = XorShift::new(7);
    let (face_a, peri_a, face_b, peri_b) =
        (rng.unit(dim), rng.unit(dim), rng.unit(dim), rng.unit(dim));
    g.add_user("a", None).unwrap();
    g.add_user("b", None).unwrap();
    g.add_templates(vec![
        tpl("a", &face_a, Condition::Unmasked),
        tpl("a", &peri_a, Condition::Periocular),
    ])
    .unwrap();
    g.add_templates(vec![tpl("b", &face_b, Condition::Unmasked)])
        .unwrap();
    let snap = g.snapshot();
    assert_eq!((snap.matrix.rows(), snap.periocular.rows()), (2, 1));

    // a's periocular embedding as a whole-face probe: it is not in that
    // matrix, so its best score is a random one (far below 1).
    let (_, s) = best(&g, &peri_a, Space::Face).unwrap();
    assert!(
        s < 0.5,
        "a periocular template leaked into the face matrix: {s}"
    );
    assert_eq!(best(&g, &peri_a, Space::Periocular).unwrap().0, "a");
    assert!((best(&g, &peri_a, Space::Periocular).unwrap().1 - 1.0).abs() < 1e-4);
    // b has no periocular template: a periocular probe cannot find b.
    let (who, s) = best(&g, &face_b, Space::Periocular).unwrap();
    assert_eq!(who, "a");
    assert!(s < 0.5, "{s}");
    assert_eq!(best(&g, &face_b, Space::Face).unwrap().0, "b");

    // Adding b's periocular template later, then removing it by id.
    let added = g
        .add_templates(vec![tpl("b", &peri_b, Condition::Periocular)])
        .unwrap();
    assert_eq!(best(&g, &peri_b, Space::Periocular).unwrap().0, "b");
    assert_eq!(g.snapshot().matrix.rows(), 2, "face matrix untouched");
    g.remove_template(added[0].id).unwrap();
    assert_eq!(g.snapshot().periocular.rows(), 1);
    assert_eq!(best(&g, &peri_b, Space::Periocular).unwrap().0, "a");

    // Export before removing a, to import later.
    let backup = tmp.path().join("backup.fgx");
    g.export(&backup).unwrap();

    // Removing a empties the periocular matrix; b keeps its face row.
    g.remove_user("a").unwrap();
    let snap = g.snapshot();
    assert_eq!((snap.matrix.rows(), snap.periocular.rows()), (1, 0));
    assert!(best(&g, &peri_a, Space::Periocular).is_none());
    assert_eq!(best(&g, &face_b, Space::Face).unwrap().0, "b");
    drop(snap);
    drop(g);

    // Reopen: the split is rebuilt from the store's conditions.
    let mut opts = StoreOptions::new(dim, ModelId::new("m", "01"));
    opts.mode = OpenMode::Open;
    let g = Gallery::open(&dir, &opts).unwrap();
    assert_eq!(
        (g.snapshot().matrix.rows(), g.snapshot().periocular.rows()),
        (1, 0)
    );
    // Import brings a's periocular template back into the right matrix.
    g.import(&backup, ImportMode::Merge).unwrap();
    assert_eq!(best(&g, &peri_a, Space::Periocular).unwrap().0, "a");
    assert_eq!(
        (g.snapshot().matrix.rows(), g.snapshot().periocular.rows()),
        (2, 1)
    );
    let t = g.templates().unwrap();
    assert_eq!(
        t.iter()
            .filter(|t| t.condition == Condition::Periocular)
            .count(),
        1
    );
}
