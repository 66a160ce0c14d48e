//! No crash is silent, and every thread facegate starts can report one.
//!
//! * [`install_fatal_handlers`]: SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT
//!   write one line to stderr — the signal, the thread's name, the faulting
//!   address — with async-signal-safe calls only (`write`, `prctl`), then hand
//!   the signal to whoever had it before (Rust's stack-overflow reporter for
//!   SIGSEGV/SIGBUS) or to the default action, so the process still dies of
//!   the same signal (systemd then restarts it: `Restart=on-failure`).
//! * [`AltStack`]: an alternate signal stack sized for this CPU's signal
//!   frame with room for the handlers. Rust gives each thread one of
//!   `max(SIGSTKSZ, AT_MINSIGSTKSZ)` bytes: the kernel's *minimum* for the
//!   frame alone. On a CPU with AMX, once the process holds AMX permission,
//!   a frame carries ~8 KiB more state, and that minimum leaves a handler
//!   no room to run (docs/AMX.md). [`spawn`] installs one in every thread
//!   facegate starts; pools call [`AltStack::install`] from their start hook.
//!
//! All `unsafe` of this kind lives here; the module's tests exercise it in
//! a child process that really crashes.
#![allow(unsafe_code)]

use std::io;
use std::sync::OnceLock;

/// Stack of every thread that runs a model (the daemon's inference thread,
/// tract's matmul pools, evaluation workers). The deepest inference path
/// measured uses well under 1 MiB (`cargo test --release --test
/// stack_budget -- --nocapture`; docs/AMX.md); 16 MiB leaves a wide margin
/// for kernels not measured here (reserved address space: only touched pages
/// cost memory).
pub const INFERENCE_STACK: usize = 16 << 20;

/// The signals reported.
const FATAL: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Whoever handled each of [`FATAL`] before us (same order).
static PREVIOUS: OnceLock<[libc::sigaction; 5]> = OnceLock::new();
/// The program name printed first on the line.
static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// Bytes of alternate signal stack per thread: four times the kernel's
/// minimum for a frame on this CPU, at least 64 KiB.
pub fn altstack_size() -> usize {
    // SAFETY: getauxval only reads the process's auxiliary vector.
    let min = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    (4 * min.max(libc::SIGSTKSZ)).max(64 << 10)
}

/// The kernel's minimum signal stack for this CPU (`AT_MINSIGSTKSZ`; 0 when
/// the kernel does not say).
pub fn kernel_min_sigstack() -> usize {
    // SAFETY: as above.
    unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) as usize }
}

/// The calling thread's alternate signal stack: (size, enabled).
pub fn current_altstack() -> io::Result<(usize, bool)> {
    let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries; `old` is a valid out pointer.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((old.ss_size, old.ss_flags & libc::SS_DISABLE == 0))
}

/// An alternate signal stack owned by the thread that installed it: a
/// mapping with a guard page below; dropped, it is disabled (if still the
/// thread's) and unmapped.
pub struct AltStack {
    base: *mut libc::c_void,
    len: usize,
    sp: *mut libc::c_void,
}

impl AltStack {
    /// Install a fresh alternate stack of [`altstack_size`] bytes for the
    /// calling thread, replacing the one it had.
    pub fn install() -> io::Result<AltStack> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let size = altstack_size().div_ceil(page) * page;
        let len = size + page;
        // SAFETY: an anonymous private mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let st = AltStack {
            base,
            len,
            // SAFETY: `page` < `len`, inside the mapping.
            sp: unsafe { (base as *mut u8).add(page) } as *mut libc::c_void,
        };
        // SAFETY: the lowest page of our own mapping becomes the guard.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let new = libc::stack_t {
            ss_sp: st.sp,
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: `new` describes memory this value owns and outlives the
        // installation (Drop disables it before unmapping).
        if unsafe { libc::sigaltstack(&new, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: query, then disable only if the current stack is ours; the
        // mapping is ours to unmap.
        unsafe {
            if libc::sigaltstack(std::ptr::null(), &mut cur) == 0 && cur.ss_sp == self.sp {
                let off = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&off, std::ptr::null_mut());
            }
            libc::munmap(self.base, self.len);
        }
    }
}

thread_local! {
    static POOL_ALTSTACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

/// For thread pools' start hooks: install an [`AltStack`] kept until the
/// thread ends. A failure is logged, not fatal (the thread keeps Rust's).
pub fn install_for_pool_thread() {
    match AltStack::install() {
        Ok(st) => POOL_ALTSTACK.with(|c| *c.borrow_mut() = Some(st)),
        Err(e) => log::warn!("cannot install an alternate signal stack: {e}"),
    }
}

/// `std::thread::Builder` with a name, an explicit stack size and an
/// [`AltStack`] for the thread's whole life.
pub fn spawn<F, T>(name: &str, stack: usize, f: F) -> io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(stack)
        .spawn(move || {
            let _alt = AltStack::install()
                .map_err(|e| log::warn!("cannot install an alternate signal stack: {e}"))
                .ok();
            f()
        })
}

/// Report fatal signals on stderr before the process dies of them; also
/// gives the calling (main) thread an [`AltStack`] for the process's life.
/// Call once, first thing in `main`.
pub fn install_fatal_handlers(program: &'static str) -> io::Result<()> {
    let _ = PROGRAM.set(program);
    // The main thread lives as long as the process: keep its stack mapped.
    std::mem::forget(AltStack::install()?);
    let mut previous: [libc::sigaction; 5] = unsafe { std::mem::zeroed() };
    for (i, &sig) in FATAL.iter().enumerate() {
        // SAFETY: query into a valid out pointer.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut previous[i]) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if PREVIOUS.set(previous).is_err() {
        return Ok(()); // already installed
    }
    for &sig in &FATAL {
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_fatal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: sa_mask is a valid sigset to empty; `sa` is fully set.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

fn signal_name(sig: libc::c_int) -> &'static [u8] {
    match sig {
        libc::SIGSEGV => b"SIGSEGV",
        libc::SIGBUS => b"SIGBUS",
        libc::SIGILL => b"SIGILL",
        libc::SIGFPE => b"SIGFPE",
        libc::SIGABRT => b"SIGABRT",
        _ => b"?",
    }
}

/// A fixed buffer written without allocating (async-signal-safe).
struct Line {
    buf: [u8; 320],
    len: usize,
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        for &b in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }
    fn dec(&mut self, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..]);
    }
    fn hex(&mut self, v: u64) {
        self.push(b"0x");
        let mut started = false;
        for shift in (0..16).rev() {
            let nib = ((v >> (shift * 4)) & 0xf) as u8;
            if nib != 0 || started || shift == 0 {
                started = true;
                self.push(&[b"0123456789abcdef"[nib as usize]]);
            }
        }
    }
}

/// The line a fatal signal writes (pure, so it is tested directly).
fn describe(program: &str, sig: libc::c_int, thread: &[u8], addr: Option<u64>, pid: u32) -> Line {
    let mut l = Line {
        buf: [0; 320],
        len: 0,
    };
    l.push(program.as_bytes());
    l.push(b": fatal signal ");
    l.dec(sig as u64);
    l.push(b" (");
    l.push(signal_name(sig));
    l.push(b") in thread '");
    l.push(thread);
    l.push(b"'");
    if let Some(a) = addr {
        l.push(b" at address ");
        l.hex(a);
    }
    l.push(b", pid ");
    l.dec(pid as u64);
    l.push(b"\n");
    l
}

extern "C" fn on_fatal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes + NUL into `name`.
    unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            name.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let n = name.iter().position(|&b| b == 0).unwrap_or(16);
    let hardware = matches!(
        sig,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
    );
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (addr, user_sent) = unsafe {
        if info.is_null() {
            (None, true)
        } else {
            let i = &*info;
            (
                hardware.then(|| i.si_addr() as u64),
                i.si_code <= 0, // SI_USER, SI_TKILL, SI_QUEUE…: sent, not a fault
            )
        }
    };
    // SAFETY: getpid is async-signal-safe.
    let pid = unsafe { libc::getpid() } as u32;
    let line = describe(
        PROGRAM.get().copied().unwrap_or("facegate"),
        sig,
        &name[..n],
        addr,
        pid,
    );
    // SAFETY: write(2) of our own buffer.
    unsafe { libc::write(2, line.buf.as_ptr() as *const libc::c_void, line.len) };

    let idx = FATAL.iter().position(|&s| s == sig);
    let prev = idx.and_then(|i| PREVIOUS.get().map(|p| p[i]));
    match prev {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            // Chain: Rust's own handler tells a stack overflow from other
            // faults (and reports the overflow) for SIGSEGV/SIGBUS.
            // SAFETY: the previous handler was installed for this signal with
            // these flags.
            unsafe {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(p.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(p.sa_sigaction);
                    f(sig);
                }
                // A signal sent by kill(2) does not come back by itself when
                // the handler returns: die of it with the default action.
                if user_sent {
                    let mut sa: libc::sigaction = std::mem::zeroed();
                    sa.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(sig, &sa, std::ptr::null_mut());
                    libc::raise(sig);
                }
            }
        }
        _ => {
            // Default action: a fault happens again when we return; a sent
            // signal is raised again (blocked until we return).
            // SAFETY: sigaction/raise are async-signal-safe.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &sa, std::ptr::null_mut());
                if user_sent || !hardware {
                    libc::raise(sig);
                }
            }
        }
    }
}

/// Run `f` on the calling thread and return how many bytes of this
/// thread's stack it used at most (below the caller's frame), measured by
/// painting the unused part of the stack first and finding the deepest
/// byte `f` overwrote. For tests and `examples/amx_repro.rs`: it writes the
/// whole free stack once, so call it at the top of a dedicated thread.
pub fn stack_high_water<R>(f: impl FnOnce() -> R) -> io::Result<(R, usize)> {
    const PAINT: u8 = 0xa5;
    let (lo, _hi) = thread_stack_bounds()?;
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    // Leave 16 KiB above the guard untouched and 8 KiB below our frame.
    let from = lo + (16 << 10);
    let to = here.saturating_sub(8 << 10);
    if to <= from {
        return Err(io::Error::other("stack too small to measure"));
    }
    paint(from, to, PAINT);
    let r = std::hint::black_box(call_below(f));
    let mut deepest = to;
    let mut a = from;
    while a < to {
        // SAFETY: [from, to) lies inside this thread's mapped stack, below
        // every live frame of this function's callers.
        if unsafe { std::ptr::read_volatile(a as *const u8) } != PAINT {
            deepest = a;
            break;
        }
        a += 1;
    }
    Ok((r, here - deepest))
}

/// Calls `f` in a frame of its own, so that whatever `f` inlines lands
/// below the caller's marker, in the painted region.
#[inline(never)]
fn call_below<R>(f: impl FnOnce() -> R) -> R {
    std::hint::black_box(f())
}

#[inline(never)]
fn paint(from: usize, to: usize, v: u8) {
    let mut a = from;
    while a < to {
        // SAFETY: as in `stack_high_water`: unused stack of this thread.
        unsafe { std::ptr::write_volatile(a as *mut u8, v) };
        a += 1;
    }
}

/// The calling thread's stack: (lowest usable address, highest address).
pub fn thread_stack_bounds() -> io::Result<(usize, usize)> {
    // SAFETY: attr is initialised by pthread_getattr_np and destroyed after.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_getattr_np(libc::pthread_self(), &mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let mut guard: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_getguardsize(&attr, &mut guard);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let lo = addr as usize + guard;
        Ok((lo, addr as usize + size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(l: &Line) -> String {
        String::from_utf8_lossy(&l.buf[..l.len]).into_owned()
    }

    #[test]
    fn the_line_names_signal_thread_and_address() {
        let l = describe("facegated", 11, b"inference", Some(0xdead_beef), 42);
        assert_eq!(
            text(&l),
            "facegated: fatal signal 11 (SIGSEGV) in thread 'inference' at address 0xdeadbeef, pid 42\n"
        );
        let l = describe("facegated", 6, b"client", None, 7);
        assert_eq!(
            text(&l),
            "facegated: fatal signal 6 (SIGABRT) in thread 'client', pid 7\n"
        );
        let l = describe("x", 11, b"t", Some(0), 0);
        assert!(text(&l).contains("at address 0x0,"), "{}", text(&l));
    }

    #[test]
    fn a_long_line_is_cut_not_overflowed() {
        let long = [b'a'; 1000];
        let l = describe("facegated", 11, &long, Some(u64::MAX), u32::MAX);
        assert_eq!(l.len, l.buf.len());
    }

    #[test]
    fn high_water_sees_a_deep_frame() {
        let h = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(|| {
                let (_, shallow) = stack_high_water(|| 1u8).map_err(|e| e.to_string())?;
                let (_, deep) = stack_high_water(|| {
                    let mut big = [0u8; 200 << 10];
                    std::hint::black_box(&mut big);
                    big[1000]
                })
                .map_err(|e| e.to_string())?;
                Ok::<_, String>((shallow, deep))
            })
            .expect("spawn");
        let (shallow, deep) = h.join().expect("join").expect("measure");
        assert!(shallow < 16 << 10, "{shallow}");
        assert!((200 << 10..300 << 10).contains(&deep), "{deep}");
    }

    #[test]
    fn altstack_is_sized_above_the_kernel_minimum_and_installs() {
        let size = altstack_size();
        assert!(size >= 4 * kernel_min_sigstack(), "{size}");
        assert!(size >= 64 << 10);
        let h = std::thread::spawn(|| {
            let st = AltStack::install().map_err(|e| e.to_string())?;
            let (sz, on) = current_altstack().map_err(|e| e.to_string())?;
            drop(st);
            let (_, on_after) = current_altstack().map_err(|e| e.to_string())?;
            Ok::<_, String>((sz, on, on_after))
        });
        let (sz, on, on_after) = h.join().expect("thread").expect("altstack");
        assert!(on && sz >= altstack_size(), "{sz} {on}");
        assert!(!on_after, "dropped stack must be disabled");
    }
}
