//! Reproduction and diagnosis of issue 12 (SIGSEGV inside tract's AMX int8
//! kernel in facegated's 512 KiB client threads), for any x86_64 machine;
//! the interesting answers come from an Intel CPU with AMX
//! (`grep amx_int8 /proc/cpuinfo`). Uses tract and libc only, as the
//! upstream report needs; docs/AMX.md explains what each mode tells.
//!
//! ```text
//! cargo run --release --example amx_repro -- info
//! cargo run --release --example amx_repro -- run MODEL.onnx [--stack-kib 512] [--threads 4] [--iterations 200]
//! cargo run --release --example amx_repro -- overflow MODEL.onnx [--stack-kib 512]
//! ```
//!
//! MODEL.onnx: an int8 QLinear model with one NHWC float input of shape
//! 1x160x160x3 (models/out/bundles/facenet-int8-qlinear/model.onnx), or any
//! model with `--shape 1,3,224,224`. `TRACT_CPU_ISA=-amx-int8` in the
//! environment is the control (same run, AMX kernels taken out).
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // an experiment, not a daemon path

use std::time::Instant;

use anyhow::{bail, Context, Result};
use tract_onnx::prelude::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("info");
    let flag = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .context("flag value")?
                .parse()
                .with_context(|| name.to_string()),
            None => Ok(default),
        }
    };
    let shape: Vec<usize> = match args.iter().position(|a| a == "--shape") {
        Some(i) => args
            .get(i + 1)
            .context("--shape value")?
            .split(',')
            .map(|s| s.parse().context("--shape"))
            .collect::<Result<_>>()?,
        None => vec![1, 160, 160, 3],
    };
    info("main thread");
    match mode {
        "info" => Ok(()),
        "run" | "overflow" => {
            let model = args.get(1).context("MODEL.onnx")?.clone();
            let stack = flag("--stack-kib", 512)? << 10;
            let threads = flag("--threads", 4)?;
            let iterations = flag("--iterations", 200)?;
            let plan = load(&model, &shape)?;
            println!("model loaded and optimised (AMX permission is requested during this)");
            info("main thread after loading");
            if mode == "run" {
                run(plan, &shape, stack, threads, iterations)
            } else {
                overflow(plan, &shape, stack)
            }
        }
        _ => bail!("modes: info | run MODEL | overflow MODEL"),
    }
}

type Plan = TypedSimplePlan;

fn load(path: &str, shape: &[usize]) -> Result<Arc<Plan>> {
    let model = tract_onnx::onnx()
        // The file's shapes carry a symbolic batch; the input fact fixes it.
        .with_ignore_value_info(true)
        .with_ignore_output_shapes(true)
        .model_for_path(path)?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_optimized()?
        .into_runnable()?;
    Ok(model)
}

fn input(shape: &[usize], seed: usize) -> Result<TValue> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i * 31 + seed * 17) % 255) as f32 - 127.5) / 128.0)
        .collect();
    Ok(Tensor::from_shape(shape, &v)?.into())
}

/// CPU and kernel facts, and this thread's signal stack.
fn info(label: &str) {
    // SAFETY: CPUID is available on every x86_64 CPU.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::arch::x86_64::__cpuid_count;
        let l7 = __cpuid_count(7, 0);
        let amx_tile = l7.edx & (1 << 24) != 0;
        let amx_int8 = l7.edx & (1 << 25) != 0;
        let xs = __cpuid_count(0xd, 0);
        let tilecfg = __cpuid_count(0xd, 17);
        let tiledata = __cpuid_count(0xd, 18);
        println!(
            "[{label}] cpu: amx-tile {amx_tile} amx-int8 {amx_int8}; XSAVE size for enabled XCR0 {} B, for all supported {} B; tilecfg {} B, tiledata {} B",
            xs.ebx, xs.ecx, tilecfg.eax, tiledata.eax
        );
        // ARCH_GET_XCOMP_PERM = 0x1022: the features this process may use.
        let mut perm: u64 = 0;
        let rc = libc::syscall(libc::SYS_arch_prctl, 0x1022, &mut perm as *mut u64);
        println!(
            "[{label}] xcomp permission: {} (rc {rc}; bit 18 = AMX tile data: {})",
            format_args!("{perm:#x}"),
            perm & (1 << 18) != 0
        );
    }
    // SAFETY: getauxval reads the auxiliary vector; sigaltstack only queries.
    let (min, alt) = unsafe {
        let min = libc::getauxval(libc::AT_MINSIGSTKSZ);
        let mut st: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut st);
        (min, st)
    };
    println!(
        "[{label}] AT_MINSIGSTKSZ {min} B; SIGSTKSZ {} B; this thread's sigaltstack: {} B, {}",
        libc::SIGSTKSZ,
        alt.ss_size,
        if alt.ss_flags & libc::SS_DISABLE != 0 {
            "DISABLED (no alternate stack: a stack overflow here dies silently)"
        } else {
            "enabled"
        }
    );
    let isa = tract_linalg::isa::native();
    let k = tract_linalg::MmmDispatch::native()
        .preferred_kernel(i32::datum_type(), Some(64), Some(576), Some(1225))
        .map_or("(none)".to_string(), |k| k.name().to_string());
    println!("[{label}] tract isa {isa:?}; int8 kernel for 64x576x1225: {k}");
}

fn run(plan: Arc<Plan>, shape: &[usize], stack: usize, threads: usize, n: usize) -> Result<()> {
    println!(
        "{threads} threads x {n} inferences, {} KiB stacks",
        stack >> 10
    );
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let plan = plan.clone();
        let shape = shape.to_vec();
        handles.push(
            std::thread::Builder::new()
                .name(format!("client-{t}"))
                .stack_size(stack)
                .spawn(move || -> Result<()> {
                    info(&format!("client-{t} start"));
                    // Stack used by one inference (painted-stack high-water
                    // mark; facegate::crash::stack_high_water).
                    let (r, used) =
                        facegate::crash::stack_high_water(|| plan.run(tvec!(input(&shape, t)?)))?;
                    r?;
                    println!(
                        "[client-{t}] one inference used {} KiB of stack",
                        used >> 10
                    );
                    for i in 1..n {
                        plan.run(tvec!(input(&shape, t * n + i)?))?;
                    }
                    Ok(())
                })?,
        );
    }
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a thread panicked"))??;
    }
    println!(
        "done: {} inferences in {:.1} s, no crash",
        threads * n,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Use the kernels once in a thread, then overflow that thread's stack on
/// purpose: Rust should print "thread '…' has overflowed its stack" and
/// abort (SIGABRT). A silent SIGSEGV instead means the signal handler could
/// not run: no usable alternate signal stack once AMX state is in the frame.
fn overflow(plan: Arc<Plan>, shape: &[usize], stack: usize) -> Result<()> {
    let shape = shape.to_vec();
    let h = std::thread::Builder::new()
        .name("overflow".into())
        .stack_size(stack)
        .spawn(move || -> Result<u64> {
            plan.run(tvec!(input(&shape, 1)?))?;
            info("overflow thread after one inference");
            println!("now overflowing this thread's stack on purpose");
            let mut b = [0u8; 4096];
            Ok(recurse(0, &mut b))
        })?;
    let _ = h.join();
    bail!("the overflow did not kill the process")
}

fn recurse(depth: u64, buf: &mut [u8; 4096]) -> u64 {
    let mut local = [0u8; 4096];
    local[(depth % 4096) as usize] = buf[0].wrapping_add(1);
    std::hint::black_box(&mut local);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1, &mut local) + local[0] as u64
}
