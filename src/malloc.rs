//! glibc malloc settings for the daemon (issue 17 §4, docs/PERFORMANCE.md
//! "Memory (issue 17 §4)").
//!
//! glibc gives a thread that finds the main arena locked an arena of its
//! own, up to 8 × cores of them, and each keeps what its thread freed for
//! later. facegated's threads (a new client thread per connection, the
//! inference thread, tract's pool, the camera hub) each end up holding
//! frame-sized buffers in their own arena, so resident memory grows with
//! the first decisions and enrolments and stays there. [`limit_arenas`]
//! caps the count at daemon start; [`trim`] hands free memory at the top of
//! each arena's heap and free whole pages back to the kernel.
//!
//! The only `unsafe` of this kind lives here (`mallopt`, `malloc_trim`,
//! `malloc_info` for [`arenas`], which tests read the cap back with). On a libc that is
//! not glibc they do nothing and say so (`false`).
#![allow(unsafe_code)]

/// The daemon's arena cap unless `MALLOC_ARENA_MAX` is set in its
/// environment (glibc then applies that value itself, and the daemon keeps
/// it).
pub const DEFAULT_ARENAS: i32 = 2;

/// Cap glibc's malloc arenas at `n` (≥ 1) for the rest of the process
/// (arenas already made stay). `false` when not applied: `n` < 1, the call
/// failed, or the libc is not glibc.
pub fn limit_arenas(n: i32) -> bool {
    if n < 1 {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers and touches only malloc's own
        // parameters (under its lock); it returns 1 on success.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, n) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The arena cap for the daemon: `MALLOC_ARENA_MAX` from the environment
/// when it is set (glibc reads it itself at start-up; `None`: nothing to do),
/// else [`DEFAULT_ARENAS`].
pub fn arenas_for_env(env: Option<&str>) -> Option<i32> {
    match env {
        Some(_) => None,
        None => Some(DEFAULT_ARENAS),
    }
}

/// `malloc_trim(0)`: give free memory of every arena back to the kernel.
/// `true` when some was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a size and works under malloc's locks;
        // it only releases memory that is free.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// How many arenas malloc has made so far (the `<heap nr=…>` entries of
/// `malloc_info`; the main arena included). `None` when it cannot tell
/// (not glibc, or the report failed).
pub fn arenas() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut buf: *mut libc::c_char = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: open_memstream writes the buffer's address and length into
        // the two locals once the stream is closed; malloc_info writes its
        // XML report into the stream; after fclose, `buf` (when not null)
        // holds `len` bytes we copy out, then free with the libc's free as
        // open_memstream requires.
        let text = unsafe {
            let f = libc::open_memstream(&mut buf, &mut len);
            if f.is_null() {
                return None;
            }
            let rc = libc::malloc_info(0, f);
            libc::fclose(f);
            if buf.is_null() {
                return None;
            }
            let text = String::from_utf8_lossy(std::slice::from_raw_parts(buf as *const u8, len))
                .into_owned();
            libc::free(buf.cast());
            if rc != 0 {
                return None;
            }
            text
        };
        Some(text.matches("<heap nr=").count())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins() {
        assert_eq!(arenas_for_env(Some("8")), None);
        assert_eq!(arenas_for_env(None), Some(DEFAULT_ARENAS));
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(!limit_arenas(0));
        assert!(!limit_arenas(-3));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_cap() {
        // Applying the cap in the test process is harmless (it only bounds
        // arenas made from now on).
        assert!(limit_arenas(DEFAULT_ARENAS));
        let _ = trim();
        assert!(arenas().is_some_and(|n| n >= 1));
    }
}
