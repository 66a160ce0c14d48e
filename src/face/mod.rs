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

/// The labels of a model's outputs as tract keeps them: the ONNX tensor
/// names (node names differ), the node's name where a tensor has none.
pub(crate) fn output_names(
    model: &tract_onnx::prelude::InferenceModel,
) -> tract_onnx::prelude::TractResult<Vec<String>> {
    Ok(model
        .output_outlets()?
        .iter()
        .map(|o| {
            model
                .outlet_label(*o)
                .map(str::to_string)
                .unwrap_or_else(|| model.node(o.node).name.clone())
        })
        .collect())
}

/// Why a model does not fit its manifest's input and output names.
pub(crate) enum IoMismatch {
    /// tract could not answer (a broken graph).
    Tract(tract_onnx::prelude::TractError),
    /// The names differ: the message says how.
    Names(String),
}

/// Read a bundle's ONNX model for a fixed input shape set later (recorded
/// value info and output shapes are ignored: tract infers them, and the
/// callers check the output shape against the manifest), after the CPU
/// policy (AMX off unless asked: tract picks kernels once), and check it has
/// one input named `input` and exactly the outputs `outputs`.
pub(crate) fn read_onnx(
    mut bytes: &[u8],
    input: &str,
    outputs: &[&str],
) -> Result<tract_onnx::prelude::InferenceModel, IoMismatch> {
    use tract_onnx::prelude::*;
    crate::cpu::ensure();
    let model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .with_ignore_output_shapes(true)
        .model_for_read(&mut bytes)
        .map_err(IoMismatch::Tract)?;
    let inputs = model.input_outlets().map_err(IoMismatch::Tract)?;
    let [first] = inputs else {
        return Err(IoMismatch::Names(format!(
            "the model has {} inputs, expected 1",
            inputs.len()
        )));
    };
    let name = &model.node(first.node).name;
    if name != input {
        return Err(IoMismatch::Names(format!(
            "the model's input is {name:?}, the manifest says {input:?}"
        )));
    }
    let names = output_names(&model).map_err(IoMismatch::Tract)?;
    if names != outputs {
        return Err(IoMismatch::Names(format!(
            "the model's outputs are {names:?}, the manifest says {outputs:?}"
        )));
    }
    Ok(model)
}
