//! The shipped example config (examples/config.toml) parses, carries the
//! format version, and states the defaults truthfully; the packaged config
//! (packaging/config.toml) requires signed bundles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use facegate::daemon::config::{self, Config, CONFIG_VERSION};

fn example() -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.toml");
    let text = std::fs::read_to_string(path).unwrap();
    config::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_example_config_parses_with_its_version() {
    let c = example();
    assert_eq!(c.version, Some(CONFIG_VERSION));
    // Through the file loader too, as facegated reads it.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
    assert_eq!(config::load(&path, true).unwrap(), c);
}

#[test]
fn the_example_config_states_the_defaults() {
    let c = example();
    let d = config::parse("").unwrap();
    // Paths depend on the machine (root or not); the rest are the defaults.
    assert_eq!(c.daemon.socket_mode, d.daemon.socket_mode);
    assert_eq!(c.daemon.max_clients, d.daemon.max_clients);
    assert_eq!(c.daemon.client_timeout_ms, d.daemon.client_timeout_ms);
    assert_eq!(c.daemon.max_clients_per_uid, d.daemon.max_clients_per_uid);
    assert_eq!(c.daemon.max_requests_per_uid, d.daemon.max_requests_per_uid);
    assert_eq!(
        c.daemon.busy_client_timeout_ms,
        d.daemon.busy_client_timeout_ms
    );
    assert_eq!(c.models, d.models);
    assert_eq!(c.camera, d.camera);
    assert_eq!(c.thresholds, d.thresholds);
    assert_eq!(c.identify, d.identify);
    assert_eq!(c.decision, d.decision);
    assert_eq!(c.door, d.door);
    assert_eq!(c.enroll, d.enroll);
    assert_eq!(c.lockout, d.lockout);
    assert_eq!(c.liveness, d.liveness);
}

#[test]
fn an_unknown_version_is_refused() {
    let e = config::parse("version = 2\n").unwrap_err().to_string();
    assert!(e.contains("version 2 is not supported"), "{e}");
    assert_eq!(config::parse("").unwrap().version, None);
}

#[test]
fn the_packaged_config_requires_bundles_signed_by_the_package_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/config.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // scripts/package puts the signing key in; left out, the file is refused.
    let e = config::parse(&text).unwrap_err().to_string();
    assert!(e.contains("models.trusted_keys[0]"), "{e}");
    let key = facegate::bundle::sign::public_key(&[5; 32]);
    let c = config::parse(&text.replace("@TRUSTED_KEY@", &key.to_string())).unwrap();
    assert_eq!(
        c.models.allow_unsigned,
        Some(false),
        "stated, not defaulted"
    );
    let p = c.models.trust_policy().unwrap();
    assert_eq!(p.trusted_keys, vec![key]);
    assert!(!p.allow_unsigned);
}
