//! Where inference runs in the daemon: one dedicated thread with a stack
//! budget that is measured (`tests/stack_budget.rs`) and an alternate
//! signal stack sized for the CPU (`crate::crash::AltStack`).
//!
//! Before issue 12 every client thread (512 KiB stack, a size nobody had
//! measured) ran detection and embedding itself; on an Intel CPU with AMX the
//! daemon died inside tract's AMX kernel in one of those threads. Now client
//! threads only read requests and wait: every model call goes through
//! [`Inference::run`], which executes it on the `inference` thread and
//! blocks the caller until it is done (frames are analysed one at a time —
//! the analyzer already shares one analysis among waiting requests, and on a
//! two-core board parallel inference would only thrash). A panic inside
//! reaches the caller, whose handler turns it into an `internal` answer.

/// Stack of the inference thread (see [`crate::crash::INFERENCE_STACK`]).
pub const INFERENCE_STACK: usize = crate::crash::INFERENCE_STACK;

/// The inference thread.
pub struct Inference {
    pool: rayon::ThreadPool,
}

impl Inference {
    pub fn new() -> std::io::Result<Inference> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "inference".to_string())
            .stack_size(INFERENCE_STACK)
            .start_handler(|_| crate::crash::install_for_pool_thread())
            .build()
            .map_err(|e| std::io::Error::other(format!("inference thread: {e}")))?;
        Ok(Inference { pool })
    }

    /// Run `f` on the inference thread and wait for its result.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_the_inference_thread_with_its_stack() {
        let inf = Inference::new().expect("pool");
        let (name, bounds, alt) = inf.run(|| {
            (
                std::thread::current().name().map(str::to_string),
                crate::crash::thread_stack_bounds().expect("bounds"),
                crate::crash::current_altstack().expect("altstack"),
            )
        });
        assert_eq!(name.as_deref(), Some("inference"));
        let size = bounds.1 - bounds.0;
        assert!(size >= INFERENCE_STACK - (64 << 10), "{size}");
        assert!(alt.1 && alt.0 >= crate::crash::altstack_size(), "{alt:?}");
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let inf = Inference::new().expect("pool");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inf.run(|| -> u32 { panic!("inside") })
        }));
        assert!(r.is_err());
        // The thread survives for the next request.
        assert_eq!(inf.run(|| 7), 7);
    }
}
