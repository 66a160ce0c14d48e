//! Which thresholds `identify` and door mode apply (issue 15): the
//! bundle's identification table at the current number of enrolled people
//! ([`crate::ident`]), never below the 1:1 thresholds, or the thresholds
//! pinned in `[identify]`. Resolved on every attempt from the gallery's
//! current snapshot, so enrol, remove, import and enable/disable take effect
//! at once. When nothing vouches for the target FPIR, identification is
//! refused with the reason rather than guessed.

use crate::engine::Thresholds;
use crate::ident::IdentTable;

use super::service::ServiceError;
use super::Shared;

/// Identification thresholds for the current gallery.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentThresholds {
    pub thresholds: Thresholds,
    /// Enabled users (N).
    pub people: usize,
    /// How they were chosen, for `status`.
    pub basis: String,
}

/// What the resolution needs, taken from the config, the manifest and the
/// gallery (pure, for tests).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub bundle: &'a str,
    /// `[identify] unmasked/masked`.
    pub fixed: Option<Thresholds>,
    pub fpir: f64,
    /// The manifest's identification table.
    pub table: Option<&'a IdentTable>,
    /// The 1:1 thresholds in use (config or manifest), the floor.
    pub one_to_one: Option<Thresholds>,
    pub people: usize,
}

/// Resolve the identification thresholds, or say why there are none.
pub fn resolve(i: &Inputs) -> Result<IdentThresholds, ServiceError> {
    if let Some(t) = i.fixed {
        return Ok(IdentThresholds {
            thresholds: t,
            people: i.people,
            basis: "fixed by [identify] unmasked/masked".into(),
        });
    }
    let Some(table) = i.table else {
        return Err(ServiceError::Identify(format!(
            "uncalibrated for identification: bundle {} has no identification table (rerun `facegate eval lfw` and models/build) and [identify] unmasked/masked are not set",
            i.bundle
        )));
    };
    let t = table.thresholds(i.people, i.fpir).map_err(|e| {
        ServiceError::Identify(format!("identification refused: {e}; remove people, raise [identify] fpir, or use a stronger model"))
    })?;
    // Never accept in 1:N what 1:1 would refuse (small galleries).
    let (thresholds, floored) = match i.one_to_one {
        Some(v) => (
            Thresholds {
                unmasked: t.unmasked.max(v.unmasked),
                masked: t.masked.max(v.masked),
                periocular: match (t.periocular, v.periocular) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, _) => a,
                },
            },
            v.unmasked > t.unmasked || v.masked > t.masked,
        ),
        None => (t, false),
    };
    Ok(IdentThresholds {
        thresholds,
        people: i.people,
        basis: format!(
            "FPIR {:e} for {} enrolled (at most {}){}",
            i.fpir,
            i.people,
            table.max_people(i.fpir),
            if floored {
                ", raised to the 1:1 thresholds"
            } else {
                ""
            }
        ),
    })
}

/// The identification thresholds of the running daemon for its gallery now.
pub fn current(sh: &Shared) -> Result<IdentThresholds, ServiceError> {
    let c = sh.cfg.load();
    let act = sh.active();
    resolve(&Inputs {
        bundle: act.engine.embedder.name(),
        fixed: c.identify.fixed(),
        fpir: c.identify.fpir,
        table: act.manifest_identify.as_ref(),
        one_to_one: sh.resolved_thresholds(),
        people: act.gallery.snapshot().users.enabled_count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> IdentTable {
        IdentTable {
            periocular: None,
            far: vec![1e-2, 1e-3, 1e-4, 1e-5],
            unmasked: vec![0.40, 0.50, 0.60, 0.70],
            masked: vec![0.35, 0.45, 0.55, 0.65],
        }
    }

    fn inputs(t: &IdentTable, people: usize) -> Inputs<'_> {
        Inputs {
            bundle: "b",
            fixed: None,
            fpir: 1e-3,
            table: Some(t),
            one_to_one: Some(Thresholds {
                periocular: None,
                unmasked: 0.55,
                masked: 0.50,
            }),
            people,
        }
    }

    #[test]
    fn scales_with_the_gallery_and_keeps_the_floor() {
        let t = table();
        // N = 10 needs FAR 1e-4 per person: 0.60 / 0.55, above the floor.
        let r = resolve(&inputs(&t, 10)).unwrap();
        assert_eq!(
            r.thresholds,
            Thresholds {
                periocular: None,
                unmasked: 0.60,
                masked: 0.55
            }
        );
        assert!(r.basis.contains("for 10 enrolled") && !r.basis.contains("raised"));
        // N = 1 needs 1e-3: 0.50 / 0.45, below the 1:1 thresholds: raised.
        let r = resolve(&inputs(&t, 1)).unwrap();
        assert_eq!(
            r.thresholds,
            Thresholds {
                periocular: None,
                unmasked: 0.55,
                masked: 0.50
            }
        );
        assert!(r.basis.contains("raised"), "{}", r.basis);
        // N = 100 needs 1e-5.
        assert_eq!(resolve(&inputs(&t, 100)).unwrap().thresholds.unmasked, 0.70);
    }

    #[test]
    fn refuses_a_gallery_too_big_and_an_uncalibrated_bundle() {
        let t = table();
        let e = resolve(&inputs(&t, 101)).unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("identification refused: 101 people enrolled")
                && m.contains("at most 100"),
            "{m}"
        );
        assert_eq!(e.kind(), crate::protocol::ErrorKind::Config);
        let mut i = inputs(&t, 3);
        i.table = None;
        let m = resolve(&i).unwrap_err().to_string();
        assert!(
            m.starts_with("uncalibrated for identification: bundle b"),
            "{m}"
        );
        // Pinned thresholds serve any gallery, table or not.
        let pinned = Thresholds {
            periocular: None,
            unmasked: 0.8,
            masked: 0.75,
        };
        i.fixed = Some(pinned);
        i.people = 1_000_000;
        let r = resolve(&i).unwrap();
        assert_eq!(r.thresholds, pinned);
        assert!(r.basis.contains("fixed"));
    }
}
