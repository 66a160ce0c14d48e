//! The CPU policy reaches tract's kernel selection (issue 12), on any
//! machine: `TRACT_CPU_ISA` puts an AMX CPU's features into the set tract
//! probes, and `facegate cpu` reports what tract then picks (it only asks;
//! no kernel runs, so this is safe without AMX or AVX-512).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

use std::process::Command;

/// `facegate`, wrapped in FACEGATE_TEST_RUNNER (e.g. "qemu-aarch64 -L
/// /usr/aarch64-linux-gnu") when this test itself runs under an emulator:
/// without binfmt_misc the host kernel cannot exec a foreign binary.
fn facegate() -> Command {
    let exe = env!("CARGO_BIN_EXE_facegate");
    let runner = std::env::var("FACEGATE_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(parts).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

fn cpu(amx_flag: bool, env_isa: Option<&str>) -> String {
    let mut c = facegate();
    if amx_flag {
        c.arg("--amx");
    }
    c.arg("cpu");
    match env_isa {
        Some(v) => c.env("TRACT_CPU_ISA", v),
        None => c.env_remove("TRACT_CPU_ISA"),
    };
    let out = c.output().expect("run facegate cpu");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "facegate cpu: {:?}\nstderr: {}\nstdout: {text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[cfg(target_arch = "x86_64")]
#[test]
fn amx_stays_out_of_tracts_choice_unless_asked() {
    // An AMX CPU as tract sees one: tract's AMX int8 tier also needs
    // AVX-512F and AVX-512 VNNI (every AMX part has both), so "+amx-int8"
    // alone picks no AMX kernel on an AVX2-only host (AMD Zen 3), only on an
    // AVX-512 one. Naming all three makes the test mean the same on both.
    const AMX_CPU: &str = "+avx512f,+avx512vnni,+amx-int8";
    // Default policy: even a machine (or an operator) that offers AMX gets
    // no AMX kernel.
    let off = cpu(false, Some(AMX_CPU));
    assert_eq!(field(&off, "amx"), "off", "{off}");
    assert!(!field(&off, "int8 kernel").contains("amx"), "{off}");
    assert_eq!(
        field(&off, "TRACT_CPU_ISA"),
        "+avx512f,+avx512vnni,-amx-int8,-amx-bf16",
        "{off}"
    );
    // The operator's other edits are kept.
    let kept = cpu(false, Some("-avx512f,+amx-int8"));
    assert_eq!(
        field(&kept, "TRACT_CPU_ISA"),
        "-avx512f,-amx-int8,-amx-bf16",
        "{kept}"
    );
    assert!(
        !field(&kept, "isa").split(',').any(|t| t == "avx512f"),
        "{kept}"
    );
    // Asked for: tract may pick its AMX int8 kernel (the knob is left as
    // the environment set it).
    assert_eq!(field(&off, "int8 speed"), "usable", "{off}");
    // Both sides of the int8 warning on any x86 host: without VNNI (and
    // AVX-512) tract takes its AVX2 int8 kernel, which is called slow.
    let avx2 = cpu(false, Some("-avx512f,-avx512vnni"));
    assert!(
        field(&avx2, "int8 kernel").starts_with("avx2_mmm_i32"),
        "{avx2}"
    );
    assert!(
        field(&avx2, "int8 speed").starts_with("slow here"),
        "{avx2}"
    );
    let on = cpu(true, Some(AMX_CPU));
    assert_eq!(field(&on, "amx"), "on", "{on}");
    assert_eq!(field(&on, "TRACT_CPU_ISA"), "(not edited)", "{on}");
    assert!(field(&on, "int8 kernel").contains("amx"), "{on}");
}

#[cfg(not(target_arch = "x86_64"))]
#[test]
fn other_architectures_are_left_alone() {
    // No x86 token may reach tract here: it would panic at its first probe.
    for amx in [false, true] {
        let out = cpu(amx, None);
        assert_eq!(field(&out, "TRACT_CPU_ISA"), "(not edited)", "{out}");
        assert_eq!(field(&out, "amx"), "off", "{out}");
    }
}
