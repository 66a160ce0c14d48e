//! The per-face stages, in the order a frame meets them: [`detect`] finds
//! faces and their five landmarks, [`align`] warps a face to the embedder's
//! template ([`pipeline`] chains the two), [`presence`] tells whether the
//! face wears a mask, [`embed`] turns aligned crops into embeddings.
//! [`track`] follows a camera's faces between whole-frame detections.
//! Around them: [`mask`] paints synthetic masks (tests, enrolment,
//! evaluation), [`imageio`] reads images with clear errors, [`draw`]
//! annotates.

pub mod align;
pub mod antispoof;
pub mod detect;
pub mod draw;
pub mod embed;
pub mod imageio;
pub mod liveness;
pub mod mask;
pub mod periocular;
pub mod pipeline;
pub mod prelu;
pub mod presence;
pub mod track;

/// A tract executor on its own pool of `threads` named `facegate-<tag>-N`
/// threads (inference stack, fatal-signal handling), or None for one thread.
/// A failure to spawn threads is returned, not a panic.
pub(crate) fn tract_executor(
    threads: usize,
    tag: &'static str,
) -> Result<Option<tract_onnx::prelude::multithread::Executor>, String> {
    if threads <= 1 {
        return Ok(None);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("facegate-{tag}-{i}"))
        .stack_size(crate::crash::INFERENCE_STACK)
        .start_handler(|_| crate::crash::install_for_pool_thread())
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Some(
        tract_onnx::prelude::multithread::Executor::MultiThread(std::sync::Arc::new(pool)),
    ))
}
