//! Which CPU features tract may use, decided once per process before tract
//! picks its kernels.
//!
//! tract probes the CPU the first time it needs a kernel and keeps the
//! answer for the life of the process (`tract_linalg::isa::native`, a
//! `OnceLock`). Its knob `TRACT_CPU_ISA` edits that probe (`-amx-int8` takes
//! the AMX int8 kernels out of the pool). facegate sets the knob from its own
//! setting (`[models] amx`, `facegate --amx`) through tract's programmatic
//! override, before any model is loaded; [`ensure`] is called by every engine
//! constructor so that no path can reach tract's kernel selection without
//! the policy applied.
//!
//! Why AMX is off by default: on Intel CPUs with AMX the daemon crashed with
//! SIGSEGV inside `avx512amx_mmm_i32_16x16` (issue 12; docs/AMX.md has the
//! analysis and the reproduction under `examples/amx_repro.rs`). Until that
//! is understood and fixed, AMX stays opt-in.
//!
//! The knob is per architecture: tract panics when `TRACT_CPU_ISA` names a
//! feature of another architecture (`-amx-int8` under aarch64), so the edit
//! is computed for the architecture this binary runs on ([`isa_edit`] is pure
//! and tested for both).

use std::sync::OnceLock;

/// The feature policy facegate applies to tract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuPolicy {
    /// Allow tract's Intel AMX int8 kernels (x86_64 only; default off).
    pub amx: bool,
}

/// The architectures whose edits differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Other,
}

impl Arch {
    /// The architecture this binary was built for.
    pub const fn current() -> Arch {
        if cfg!(target_arch = "x86_64") {
            Arch::X86_64
        } else if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::Other
        }
    }
}

/// tract's names of the AMX features (both kernels families need the same
/// XSAVE permission; bf16 is also opt-in in tract itself).
const AMX_FEATURES: [&str; 2] = ["amx-int8", "amx-bf16"];

/// The `TRACT_CPU_ISA` value facegate installs for `policy` on `arch`, given
/// what the environment already says (`env`, kept: it is the operator's own
/// edit). `None`: nothing to change (leave tract to the environment).
pub fn isa_edit(arch: Arch, policy: CpuPolicy, env: Option<&str>) -> Option<String> {
    if arch != Arch::X86_64 || policy.amx {
        return None;
    }
    let mut tokens: Vec<String> = env
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        // An operator's "+amx-int8" loses to the policy: AMX needs `amx = true`.
        .filter(|t| {
            let name = t.trim_start_matches(['+', '-']);
            !AMX_FEATURES.contains(&name)
        })
        .map(str::to_string)
        .collect();
    tokens.extend(AMX_FEATURES.iter().map(|f| format!("-{f}")));
    Some(tokens.join(","))
}

/// What was applied, for the log and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub policy: CpuPolicy,
    /// The `TRACT_CPU_ISA` override installed, if any.
    pub isa_override: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error(
        "the CPU feature policy is already {current:?} for this process; \
         {wanted:?} takes effect after a restart"
    )]
    AlreadyApplied {
        current: CpuPolicy,
        wanted: CpuPolicy,
    },
}

static APPLIED: OnceLock<Applied> = OnceLock::new();

fn install(policy: CpuPolicy) -> Applied {
    let env = std::env::var("TRACT_CPU_ISA").ok();
    let edit = isa_edit(Arch::current(), policy, env.as_deref());
    if let Some(spec) = &edit {
        // The override outranks the environment, which is why `isa_edit`
        // carries the environment's own tokens over.
        tract_linalg::knobs::TRACT_CPU_ISA.set(Some(spec.clone()));
    }
    Applied {
        policy,
        isa_override: edit,
    }
}

/// Apply `policy` (once per process, before any model is loaded). Applying
/// the same policy again is a no-op; a different one is an error (tract's
/// kernel choice cannot change after its first use).
pub fn configure(policy: CpuPolicy) -> Result<&'static Applied, CpuError> {
    let applied = APPLIED.get_or_init(|| install(policy));
    if applied.policy != policy {
        return Err(CpuError::AlreadyApplied {
            current: applied.policy,
            wanted: policy,
        });
    }
    Ok(applied)
}

/// Apply the default policy unless one was applied already: called by every
/// engine constructor, so library users get AMX off too.
pub fn ensure() -> &'static Applied {
    APPLIED.get_or_init(|| install(CpuPolicy::default()))
}

/// What tract will run on this machine: its instruction-set set and the
/// matrix kernels it prefers for our shapes (an int8 and an f32 product the
/// size of a FaceNet 3x3 convolution), for the log and `facegate cpu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelReport {
    pub isa: String,
    pub int8_kernel: String,
    pub f32_kernel: String,
    /// Whether an AMX kernel can be chosen at all.
    pub amx_in_use: bool,
}

impl KernelReport {
    /// Whether tract's int8 products are known to be impractically slow
    /// here (see [`int8_kernel_is_slow`]).
    pub fn int8_slow(&self) -> bool {
        int8_kernel_is_slow(&self.int8_kernel)
    }
}

/// tract 0.23.9's int8 kernels for x86 without VNNI (`avx2_mmm_i32_*`,
/// `avx_mmm_i32_*`): measured 30-120x slower than onnxruntime on an AMD
/// Zen 3 (MobileFaceNet int8 564 ms, FaceNet int8 3.5 s per face, against
/// 17 ms for MobileFaceNet fp32 on the same core: docs/PERFORMANCE.md). With
/// VNNI, AMX or on aarch64 tract picks other kernels.
pub fn int8_kernel_is_slow(kernel: &str) -> bool {
    kernel.starts_with("avx2_mmm_i32") || kernel.starts_with("avx_mmm_i32")
}

/// A warning for loading a model of `precision` ("int8", "fp32", …) named
/// `name` on this machine, if its int8 kernels are the slow ones.
pub fn int8_warning(name: &str, precision: &str) -> Option<String> {
    let report = kernel_report();
    (precision == "int8" && report.int8_slow()).then(|| {
        format!(
            "{name} is int8, and tract's int8 kernel on this CPU ({}, no VNNI) is 30-120x slower \
             than its fp32 path (docs/PERFORMANCE.md): choose an fp32 bundle here",
            report.int8_kernel
        )
    })
}

impl std::fmt::Display for KernelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tract ISA {}; int8 matmul kernel {}, f32 {}; AMX {}",
            self.isa,
            self.int8_kernel,
            self.f32_kernel,
            if self.amx_in_use { "on" } else { "off" }
        )
    }
}

/// Ask tract which kernels it picks (applies the policy first if needed).
/// Only asks: no kernel runs.
pub fn kernel_report() -> KernelReport {
    ensure();
    use tract_core::internal::{Datum, DatumType};
    let isa = tract_linalg::isa::native();
    let dispatch = tract_linalg::MmmDispatch::native();
    let name = |dt: DatumType| {
        dispatch
            .preferred_kernel(dt, Some(64), Some(576), Some(1225))
            .map_or_else(|| "(none preferred)".to_string(), |k| k.name().to_string())
    };
    let amx_in_use = isa.iter().any(|i| AMX_FEATURES.contains(&i.name()));
    KernelReport {
        isa: format!("{isa:?}"),
        int8_kernel: name(i32::datum_type()),
        f32_kernel: name(f32::datum_type()),
        amx_in_use,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_non_vnni_x86_int8_kernels_are_called_slow() {
        for slow in ["avx2_mmm_i32_8x8", "avx_mmm_i32_8x4"] {
            assert!(int8_kernel_is_slow(slow), "{slow}");
        }
        for fine in [
            "avx512vnni_mmm_i32_8x8",
            "avx512amx_mmm_i32_16x16",
            "avxvnni_mmm_i32_8x8",
            "arm64simd_mmm_i32_8x8",
            "sve_mmm_i32_8x8",
            "fma_mmm_f32_16x6",
        ] {
            assert!(!int8_kernel_is_slow(fine), "{fine}");
        }
    }

    #[test]
    fn fp32_models_get_no_int8_warning() {
        // Whatever this machine's kernels: an fp32 model is never warned
        // about, and an int8 one exactly when the report says slow.
        assert_eq!(int8_warning("m", "fp32"), None);
        assert_eq!(
            int8_warning("m", "int8").is_some(),
            kernel_report().int8_slow()
        );
    }

    #[test]
    fn x86_without_amx_takes_both_amx_families_out() {
        let e = isa_edit(Arch::X86_64, CpuPolicy { amx: false }, None);
        assert_eq!(e.as_deref(), Some("-amx-int8,-amx-bf16"));
    }

    #[test]
    fn x86_keeps_the_operators_other_edits_and_overrides_amx() {
        let e = isa_edit(
            Arch::X86_64,
            CpuPolicy { amx: false },
            Some(" -avx512f, +amx-int8 ,,amx-bf16"),
        );
        assert_eq!(e.as_deref(), Some("-avx512f,-amx-int8,-amx-bf16"));
    }

    #[test]
    fn x86_with_amx_leaves_tract_alone() {
        assert_eq!(isa_edit(Arch::X86_64, CpuPolicy { amx: true }, None), None);
        assert_eq!(
            isa_edit(Arch::X86_64, CpuPolicy { amx: true }, Some("+amx-int8")),
            None
        );
    }

    #[test]
    fn other_architectures_never_get_an_x86_token() {
        // tract panics on a foreign token (seen: -amx-int8 under qemu-aarch64).
        for arch in [Arch::Aarch64, Arch::Other] {
            for amx in [false, true] {
                assert_eq!(isa_edit(arch, CpuPolicy { amx }, None), None);
                assert_eq!(isa_edit(arch, CpuPolicy { amx }, Some("-sve2")), None);
            }
        }
    }

    #[test]
    fn configure_is_once_per_process() {
        // The test binary's first policy wins; asking for the other fails.
        let first = ensure().policy;
        assert!(configure(first).is_ok());
        let other = CpuPolicy { amx: !first.amx };
        assert!(matches!(
            configure(other),
            Err(CpuError::AlreadyApplied { .. })
        ));
    }

    #[test]
    fn the_report_names_kernels_and_amx_is_off_by_default() {
        let r = kernel_report();
        assert!(!r.amx_in_use, "{r}");
        assert!(!r.int8_kernel.contains("amx"), "{r}");
        assert!(!r.isa.is_empty());
    }
}
