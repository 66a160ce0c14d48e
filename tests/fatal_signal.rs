//! A fatal signal leaves a trace: the process that crashes is a child (this
//! same test binary, told by an environment variable which crash to stage),
//! and the parent checks its stderr and how it died.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CHILD: &str = "FACEGATE_FATAL_CHILD";

fn staged(which: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(which)
}

/// Run the named child test in a new process; (signal, stderr).
fn run_child(test: &str, which: &str) -> (Option<i32>, String) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(CHILD, which)
        .output()
        .expect("run the child");
    (
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn child_segfault() {
    if !staged("segv") {
        return;
    }
    facegate::crash::install_fatal_handlers("crashtest").expect("handlers");
    let h = facegate::crash::spawn("crashy", 512 << 10, || {
        // SAFETY: none — this reads an unmapped address on purpose.
        unsafe { std::ptr::read_volatile(0x10 as *const u8) }
    })
    .expect("spawn");
    let _ = h.join();
}

#[test]
fn a_segfault_names_signal_thread_and_address_and_still_kills() {
    let (sig, err) = run_child("child_segfault", "segv");
    assert_eq!(sig, Some(libc::SIGSEGV), "stderr: {err}");
    assert!(
        err.contains("crashtest: fatal signal 11 (SIGSEGV) in thread 'crashy' at address 0x10,"),
        "stderr: {err}"
    );
}

/// Recurses until the stack runs out (the bound is never reached).
fn recurse(depth: u64, buf: &mut [u8; 4096]) -> u64 {
    let mut local = [0u8; 4096];
    local[(depth % 4096) as usize] = buf[0].wrapping_add(1);
    std::hint::black_box(&mut local);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1, &mut local) + local[0] as u64
}

#[test]
fn child_overflow() {
    if !staged("overflow") {
        return;
    }
    facegate::crash::install_fatal_handlers("crashtest").expect("handlers");
    let h = facegate::crash::spawn("deep", 256 << 10, || {
        let mut b = [0u8; 4096];
        recurse(0, &mut b)
    })
    .expect("spawn");
    let _ = h.join();
}

#[test]
fn a_stack_overflow_is_still_reported_by_rust_and_by_us() {
    let (sig, err) = run_child("child_overflow", "overflow");
    assert!(
        err.contains("crashtest: fatal signal 11 (SIGSEGV) in thread 'deep'"),
        "stderr: {err}"
    );
    // Chained to Rust's handler, which recognises the guard page.
    assert!(
        err.lines()
            .any(|l| l.starts_with("thread 'deep'") && l.ends_with("has overflowed its stack")),
        "stderr: {err}"
    );
    assert_eq!(sig, Some(libc::SIGABRT), "stderr: {err}");
}

#[test]
fn child_killed() {
    if !staged("kill") {
        return;
    }
    facegate::crash::install_fatal_handlers("crashtest").expect("handlers");
    // SAFETY: sends SIGSEGV to this process, as `kill -SEGV` would.
    unsafe { libc::kill(libc::getpid(), libc::SIGSEGV) };
    std::thread::sleep(std::time::Duration::from_secs(5));
    eprintln!("survived");
}

#[test]
fn a_sent_fatal_signal_is_reported_and_kills() {
    let (sig, err) = run_child("child_killed", "kill");
    assert_eq!(sig, Some(libc::SIGSEGV), "stderr: {err}");
    assert!(err.contains("fatal signal 11 (SIGSEGV) in thread"), "{err}");
    assert!(!err.contains("survived"), "{err}");
}
