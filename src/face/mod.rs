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

/// How a network takes square face crops: side, layout, channel order and
/// normalisation (`x' = (x - mean) / std`, per channel in the manifest's
/// colour order), from a bundle's `[input]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CropInput {
    pub size: u32,
    pub layout: crate::bundle::Layout,
    pub colour: crate::bundle::Colour,
    pub mean: [f32; 3],
    pub inv_std: [f32; 3],
}

impl CropInput {
    pub fn new(input: &crate::bundle::InputSection, size: u32) -> CropInput {
        let s = input.std;
        CropInput {
            size,
            layout: input.layout,
            colour: input.colour,
            mean: input.mean,
            inv_std: [1.0 / s[0], 1.0 / s[1], 1.0 / s[2]],
        }
    }

    /// The network's input shape for a batch of `n`.
    pub fn shape(&self, n: usize) -> [usize; 4] {
        let s = self.size as usize;
        match self.layout {
            crate::bundle::Layout::Nhwc => [n, s, s, 3],
            crate::bundle::Layout::Nchw => [n, 3, s, s],
        }
    }

    /// The batch tensor for `crops`.
    pub fn tensor(
        &self,
        crops: &[&image::RgbImage],
    ) -> Result<tract_onnx::prelude::Tensor, InputError> {
        use crate::bundle::{Colour, Layout};
        let s = self.size as usize;
        let n = crops.len();
        let mut data = vec![0f32; n * s * s * 3];
        let order: [usize; 3] = match self.colour {
            Colour::Rgb => [0, 1, 2],
            Colour::Bgr => [2, 1, 0],
        };
        for (i, crop) in crops.iter().enumerate() {
            if crop.dimensions() != (self.size, self.size) {
                return Err(InputError::Size {
                    width: crop.width(),
                    height: crop.height(),
                });
            }
            let base = i * s * s * 3;
            for (p, px) in crop.as_raw().chunks_exact(3).enumerate() {
                for c in 0..3 {
                    let at = match self.layout {
                        Layout::Nhwc => base + p * 3 + c,
                        Layout::Nchw => base + c * s * s + p,
                    };
                    data[at] = (px[order[c]] as f32 - self.mean[c]) * self.inv_std[c];
                }
            }
        }
        tract_onnx::prelude::Tensor::from_shape(&self.shape(n), &data)
            .map_err(|e| InputError::Tensor(format!("{e:#}")))
    }
}

/// Why crops could not become a network's input.
#[derive(Debug)]
pub(crate) enum InputError {
    /// A crop of another size than the network's.
    Size {
        width: u32,
        height: u32,
    },
    Tensor(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{Colour, Layout};

    #[test]
    fn crop_input_orders_channels_and_lays_out_by_the_manifest() {
        // A 2x2 crop: pixel p has channels (10p+1, 10p+2, 10p+3).
        let img = image::RgbImage::from_fn(2, 2, |x, y| {
            let p = (y * 2 + x) as u8;
            image::Rgb([10 * p + 1, 10 * p + 2, 10 * p + 3])
        });
        let mut ci = CropInput {
            size: 2,
            layout: Layout::Nhwc,
            colour: Colour::Rgb,
            mean: [1.0, 2.0, 3.0],
            inv_std: [0.5, 0.5, 0.5],
        };
        let v = |t: tract_onnx::prelude::Tensor| {
            t.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<f32>>()
        };
        // NHWC, RGB: (x - mean) / 2, pixel by pixel.
        let want: Vec<f32> = (0..4).flat_map(|p| [5.0 * p as f32; 3]).collect();
        assert_eq!(v(ci.tensor(&[&img]).unwrap()), want);
        // NCHW, BGR: blue plane first.
        ci.layout = Layout::Nchw;
        ci.colour = Colour::Bgr;
        ci.mean = [0.0; 3];
        let t = ci.tensor(&[&img, &img]).unwrap();
        assert_eq!(t.shape(), &[2, 3, 2, 2]);
        let got = v(t);
        // Blue (10p + 3) halved, then green, then red (10p + 1) halved.
        assert_eq!(&got[..4], &[1.5, 6.5, 11.5, 16.5]);
        assert_eq!(&got[4..8], &[1.0, 6.0, 11.0, 16.0]);
        assert_eq!(&got[8..12], &[0.5, 5.5, 10.5, 15.5]);
        assert_eq!(&got[12..24], &got[..12]); // the second crop
        let small = image::RgbImage::new(1, 2);
        assert!(matches!(
            ci.tensor(&[&img, &small]),
            Err(InputError::Size {
                width: 1,
                height: 2
            })
        ));
    }
}
