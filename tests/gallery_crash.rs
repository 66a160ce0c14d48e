//! Crash test: a child process enrols in a loop and is SIGKILLed at random
//! moments; after each kill the parent reopens the gallery and checks that
//! every acknowledged change survived intact and nothing half-written is
//! visible.
//!
//! The child is this test binary itself, re-invoked with
//! `FACEGATE_CRASH_CHILD_DIR` set (see `crash_child_entry`). It prints a line to
//! stdout only *after* the corresponding call returned:
//!   `ACK U <name>`  user added        `ACK T <id>`  template added
//!   `ACK D <id>`    template removed  `ACK X <name>` user removed
//! and an intent line (`INT D <id>` / `INT X <name>`) *before* a removal, so
//! the parent knows a removal may or may not have happened.
//! Every template's embedding is derived deterministically from its id, so
//! the parent can check every stored template (acknowledged or not) bit for bit.
//!
//! Cycles: `FACEGATE_CRASH_CYCLES` (default 100, about 25 s in a release build on 2 cores).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use facegate::gallery::bench::XorShift;
use facegate::gallery::{Condition, Gallery, ModelId, NewTemplate, SearchOptions, StoreOptions};

const DIM: usize = 64;

fn opts() -> StoreOptions {
    StoreOptions::new(DIM, ModelId::new("crash-model", "c0ffee"))
}

/// Embedding derived from the template id only.
fn derive(id: u64) -> Vec<f32> {
    XorShift::new(id ^ 0xC0FFEE).unit(DIM)
}

fn nt(user: &str, id: u64) -> NewTemplate {
    NewTemplate {
        user: user.to_string(),
        embedding: derive(id),
        condition: Condition::Unmasked,
        source: format!("crash:{id}"),
        quality: 0.9,
    }
}

/// The child: enrols forever (until killed).
fn child(dir: &Path, seed: u64) {
    let g = Gallery::open(dir, &opts()).expect("child open");
    let mut rng = XorShift::new(seed);
    let mut users: Vec<String> = g
        .users()
        .expect("users")
        .into_iter()
        .map(|u| u.name)
        .collect();
    let mut out = std::io::stdout().lock();
    let mut ack = |line: String| {
        // "@@" marks our lines: libtest may print "test … ... " before the first one.
        writeln!(out, "@@{line}").expect("stdout");
        out.flush().expect("flush");
    };
    loop {
        let r = rng.next_u64() % 100;
        if users.is_empty() || r < 5 {
            let name = format!("u{}-{}", seed % 100_000, rng.next_u64() % 1_000_000);
            if g.add_user(&name, Some((rng.next_u64() % 60000) as u32))
                .is_ok()
            {
                ack(format!("ACK U {name}"));
                users.push(name);
            }
        } else if r < 88 {
            let user = users[(rng.next_u64() as usize) % users.len()].clone();
            let k = 1 + (rng.next_u64() % 4);
            let next = g.store().next_id().expect("next_id");
            let batch: Vec<NewTemplate> = (next..next + k).map(|id| nt(&user, id)).collect();
            let added = g.add_templates(batch).expect("add_templates");
            for t in added {
                assert_eq!(t.embedding, derive(t.id), "id prediction");
                ack(format!("ACK T {} {}", t.id, t.user));
            }
        } else if r < 98 {
            let ids = g
                .store()
                .template_ids_of(&users[(rng.next_u64() as usize) % users.len()])
                .expect("ids");
            if let Some(&id) = ids.first() {
                ack(format!("INT D {id}"));
                g.remove_template(id).expect("remove_template");
                ack(format!("ACK D {id}"));
            }
        } else {
            let i = (rng.next_u64() as usize) % users.len();
            let name = users.swap_remove(i);
            ack(format!("INT X {name}"));
            g.remove_user(&name).expect("remove_user");
            ack(format!("ACK X {name}"));
        }
    }
}

#[test]
fn crash_child_entry() {
    // Only does something when re-invoked by `crash_recovery`.
    if let Ok(dir) = std::env::var("FACEGATE_CRASH_CHILD_DIR") {
        let seed = std::env::var("FACEGATE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        child(Path::new(&dir), seed);
    }
}

#[derive(Default)]
struct Expected {
    /// Acknowledged templates (id -> owner) not subject to a removal intent.
    templates: HashMap<u64, String>,
    /// Removal intents without acknowledgement: may or may not be present.
    maybe_removed: HashSet<u64>,
    /// Acknowledged removed templates.
    removed: HashSet<u64>,
    users: HashSet<String>,
    maybe_removed_users: HashSet<String>,
    removed_users: HashSet<String>,
}

#[test]
fn crash_recovery() {
    if std::env::var_os("FACEGATE_CRASH_CHILD_DIR").is_some() {
        return;
    }
    let cycles: usize = std::env::var("FACEGATE_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gallery");
    let exe = std::env::current_exe().unwrap();
    let mut rng = XorShift::new(
        std::env::var("FACEGATE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5EED),
    );
    let mut exp = Expected::default();
    let start = Instant::now();
    let mut total_acks = 0usize;
    let mut kills_before_first_ack = 0usize;
    let mut parent_id_base = 0u64;
    let errfile = tmp.path().join("child-stderr.txt");
    let runner = std::env::var("FACEGATE_CRASH_RUNNER")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let max_delay: u64 = std::env::var("FACEGATE_CRASH_MAX_DELAY_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250);
    for cycle in 0..cycles {
        // FACEGATE_CRASH_RUNNER (e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu")
        // wraps the child when the test itself runs under an emulator.
        let mut cmd = match &runner {
            Some(r) => {
                let mut parts = r.split_whitespace();
                let mut c = Command::new(parts.next().unwrap());
                c.args(parts).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = cmd
            .args([
                "crash_child_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FACEGATE_CRASH_CHILD_DIR", &dir)
            .env("FACEGATE_CRASH_SEED", (cycle as u64 + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&errfile).unwrap()))
            .spawn()
            .unwrap();
        // Kill at a random moment: sometimes during open/recovery, mostly while writing.
        let delay = if rng.next_u64().is_multiple_of(10) {
            rng.next_u64() % 20
        } else {
            20 + rng.next_u64() % max_delay
        };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        let stdout = child.stdout.take().unwrap();
        let mut acks = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Ok(path) = std::env::var("FACEGATE_CRASH_LOG") {
                use std::io::Write as _;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                writeln!(f, "{cycle} {line}").unwrap();
            }
            let Some(pos) = line.find("@@") else { continue };
            let parts: Vec<&str> = line[pos + 2..].split(' ').collect();
            match parts.as_slice() {
                ["ACK", "U", name] => {
                    exp.users.insert(name.to_string());
                    acks += 1;
                }
                ["ACK", "T", id, user] => {
                    exp.templates.insert(id.parse().unwrap(), user.to_string());
                    acks += 1;
                }
                ["INT", "D", id] => {
                    let id: u64 = id.parse().unwrap();
                    exp.templates.remove(&id);
                    exp.maybe_removed.insert(id);
                }
                ["ACK", "D", id] => {
                    let id: u64 = id.parse().unwrap();
                    exp.maybe_removed.remove(&id);
                    exp.removed.insert(id);
                    acks += 1;
                }
                ["INT", "X", name] => {
                    exp.users.remove(*name);
                    exp.maybe_removed_users.insert(name.to_string());
                }
                ["ACK", "X", name] => {
                    exp.maybe_removed_users.remove(*name);
                    exp.removed_users.insert(name.to_string());
                    acks += 1;
                }
                other => panic!("cycle {cycle}: unexpected child line {other:?}"),
            }
        }
        let status = child.wait().unwrap();
        let err = std::fs::read_to_string(&errfile).unwrap_or_default();
        assert!(
            !err.contains("panicked"),
            "cycle {cycle}: child panicked:\n{err}"
        );
        // The child must have been killed by our SIGKILL, not have exited
        // (e.g. failed to start: that would make the cycle vacuous).
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "child was not killed by SIGKILL (cycle {cycle}): {status:?}; stderr:\n{err}"
        );
        total_acks += acks;
        if acks == 0 {
            kills_before_first_ack += 1;
        }

        // Reopen and check.
        let g = match Gallery::open(&dir, &opts()) {
            Ok(g) => g,
            Err(e) => {
                let listing: Vec<String> = std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| {
                                format!(
                                    "{:?} {:?}",
                                    e.file_name(),
                                    e.metadata().map(|m| m.len()).ok()
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let keep = tmp.keep(); // keep the evidence
                panic!(
                    "cycle {cycle}: reopen failed: {e}; gallery kept at {}: {listing:?}",
                    keep.display()
                )
            }
        };
        let counts = g
            .store()
            .verify()
            .unwrap_or_else(|e| panic!("cycle {cycle}: inconsistent gallery: {e}"));
        assert_eq!(counts, g.counts().unwrap());
        assert_eq!(g.snapshot().len(), counts.templates);
        assert_eq!(g.snapshot().users.len(), counts.users);
        let templates = g.templates().unwrap();
        let users: HashSet<String> = g.users().unwrap().into_iter().map(|u| u.name).collect();
        let mut present = HashSet::new();
        for t in &templates {
            assert_eq!(
                t.embedding,
                derive(t.id),
                "cycle {cycle}: template {} corrupted",
                t.id
            );
            assert_eq!(t.source, format!("crash:{}", t.id));
            assert!(
                users.contains(&t.user),
                "cycle {cycle}: template {} has no user",
                t.id
            );
            present.insert(t.id);
        }
        // Templates of users whose removal was acknowledged must be gone too.
        let gone: Vec<u64> = exp
            .templates
            .iter()
            .filter(|(_, o)| exp.removed_users.contains(*o))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            exp.templates.remove(&id);
            exp.removed.insert(id);
        }
        for (id, owner) in &exp.templates {
            if exp.maybe_removed_users.contains(owner) && !users.contains(owner) {
                continue; // removal of the owner was in flight and did commit
            }
            assert!(present.contains(id), "cycle {cycle}: acknowledged template {id} of {owner} lost (owner present: {}, max present id {:?}, next_id {}, ids of owner {:?})",
                users.contains(owner), present.iter().max(), g.store().next_id().unwrap(), g.store().template_ids_of(owner).unwrap());
        }
        for id in &exp.removed {
            assert!(
                !present.contains(id),
                "cycle {cycle}: removed template {id} is back"
            );
        }
        for u in &exp.users {
            assert!(
                users.contains(u),
                "cycle {cycle}: acknowledged user {u} lost"
            );
        }
        for u in &exp.removed_users {
            assert!(
                !users.contains(u),
                "cycle {cycle}: removed user {u} is back"
            );
        }
        // Resolve in-flight removals to what is on disk now, so later cycles check them.
        for id in std::mem::take(&mut exp.maybe_removed) {
            if present.contains(&id) {
                let owner = templates
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| t.user.clone())
                    .unwrap();
                exp.templates.insert(id, owner);
            } else {
                exp.removed.insert(id);
            }
        }
        for u in std::mem::take(&mut exp.maybe_removed_users) {
            if users.contains(&u) {
                exp.users.insert(u);
            } else {
                exp.removed_users.insert(u);
            }
        }
        let gone: Vec<u64> = exp
            .templates
            .iter()
            .filter(|(_, o)| exp.removed_users.contains(*o))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            exp.templates.remove(&id);
            exp.removed.insert(id);
        }
        // The gallery still accepts writes, and they are searchable.
        let probe_user = format!("parent{cycle}");
        g.add_user(&probe_user, None).unwrap();
        let id = g.store().next_id().unwrap();
        let t = g.add_template(nt(&probe_user, id)).unwrap();
        assert_eq!(t.id, id);
        let hits = g
            .search(
                &derive(id),
                &SearchOptions {
                    k: 1,
                    threads: 1,
                    kernel: None,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(&*hits[0].user, probe_user.as_str());
        assert!((hits[0].score - 1.0).abs() < 1e-4);
        g.remove_user(&probe_user).unwrap();
        exp.removed.insert(id);
        parent_id_base = parent_id_base.max(id);
        drop(g);
    }
    let g = Gallery::open(&dir, &opts()).unwrap();
    let c = g.store().verify().unwrap();
    eprintln!(
        "crash test: {cycles} cycles in {:.1} s, {total_acks} acknowledged changes, {} kills before the first ack, \
         0 losses; final gallery {} users / {} templates (max id {parent_id_base})",
        start.elapsed().as_secs_f64(), kills_before_first_ack, c.users, c.templates
    );
}

/// Kills the child while it is *creating* a gallery (fresh directory every
/// cycle, kill within the first milliseconds): the directory must always open
/// afterwards (creation completes) and be consistent.
/// Cycles: `FACEGATE_CRASH_CREATE_CYCLES` (default 30).
#[test]
fn crash_during_creation() {
    if std::env::var_os("FACEGATE_CRASH_CHILD_DIR").is_some() {
        return;
    }
    let cycles: usize = std::env::var("FACEGATE_CRASH_CREATE_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let runner = std::env::var("FACEGATE_CRASH_RUNNER")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let scale: u64 = if runner.is_some() { 20 } else { 1 };
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = XorShift::new(77);
    let (mut existed, mut torn_conf) = (0usize, 0usize);
    for cycle in 0..cycles {
        let dir = tmp.path().join(format!("g{cycle}"));
        let mut cmd = match &runner {
            Some(r) => {
                let mut parts = r.split_whitespace();
                let mut c = Command::new(parts.next().unwrap());
                c.args(parts).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = cmd
            .args([
                "crash_child_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FACEGATE_CRASH_CHILD_DIR", &dir)
            .env("FACEGATE_CRASH_SEED", (cycle as u64 + 1).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros((rng.next_u64() % 15_000) * scale));
        child.kill().unwrap();
        child.wait().unwrap();
        if dir.exists() {
            existed += 1;
            if let Ok(conf) = std::fs::read(dir.join("conf")) {
                // sled's settings file: text then CRC32 (LE); a kill between
                // its two writes leaves it without a valid trailer.
                let ok = conf.len() <= 8 || {
                    let (body, crc) = conf.split_at(conf.len() - 4);
                    crc32fast::hash(body).to_le_bytes() == crc
                };
                if !ok {
                    torn_conf += 1;
                }
            }
            let g = Gallery::open(&dir, &opts()).unwrap_or_else(|e| {
                panic!("cycle {cycle}: gallery killed during creation does not open: {e}")
            });
            g.store().verify().unwrap();
            g.add_user("after", None).unwrap();
        }
    }
    eprintln!(
        "creation crash test: {cycles} cycles, {existed} left a directory, {torn_conf} with a torn sled conf (> 8 bytes, bad CRC); all opened"
    );
}
