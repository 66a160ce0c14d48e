//! Face embeddings: aligned crops in, unit-length vectors out.
//!
//! [`Embedder`] is the seam the rest of facegate talks to; [`TractEmbedder`]
//! runs a FaceNet bundle with tract on the CPU. Plans are optimised once for
//! fixed input shapes (batch 1 and the configured batch size) at load time.

use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use tract_onnx::prelude::*;

use crate::bundle::{Bundle, BundleError, Kind, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle {name}: the model does not match its manifest: {message}")]
    Mismatch { name: String, message: String },
    #[error("bundle {name}: tract cannot load the model: {message}")]
    Load { name: String, message: String },
    #[error("face crop is {width}x{height}, the model needs {size}x{size} (align it first)")]
    CropSize { width: u32, height: u32, size: u32 },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("cannot start {threads} inference threads: {message}")]
    Threads { threads: usize, message: String },
}

/// A unit-length face embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Wrap a vector, scaling it to unit length (a zero vector stays zero).
    pub fn from_vec(mut v: Vec<f32>) -> Embedding {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
        Embedding(v)
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.0
    }

    pub fn dim(&self) -> usize {
        self.0.len()
    }

    /// Cosine similarity (a dot product, both sides being unit length).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        cosine(&self.0, &other.0)
    }
}

/// Cosine similarity of two vectors of any length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += (*x as f64) * (*y as f64);
        aa += (*x as f64) * (*x as f64);
        bb += (*y as f64) * (*y as f64);
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}

/// Turns aligned face crops into embeddings.
pub trait Embedder: Send + Sync {
    /// Name of the model (the bundle name).
    fn name(&self) -> &str;
    /// Embedding length.
    fn dim(&self) -> usize;
    /// Side of the square aligned crop the model takes.
    fn crop_size(&self) -> u32;
    /// Embed a batch of crops; one embedding per crop, in order.
    fn embed_batch(&self, crops: &[&RgbImage]) -> Result<Vec<Embedding>, EmbedError>;

    fn embed(&self, crop: &RgbImage) -> Result<Embedding, EmbedError> {
        self.embed_batch(&[crop])?
            .pop()
            .ok_or_else(|| EmbedError::Inference("model returned no embedding".into()))
    }
}

/// Arithmetic tract uses for a float model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// As the model is.
    #[default]
    F32,
    /// Float weights and activations converted to f16 before optimisation:
    /// native fp16 kernels on aarch64 cores with FP16 arithmetic (Cortex-A55,
    /// A75 and later); emulated (slower) on x86_64.
    F16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => Err(format!("precision {s:?} is not f32 or f16")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmbedderOptions {
    /// Largest batch run in one go; batches are split into runs of this size.
    pub max_batch: usize,
    /// Threads tract may use for matrix products (1 = the caller's thread only).
    pub threads: usize,
    /// Float precision of the computation.
    pub precision: Precision,
    /// Apply facegate's graph rewrites before tract optimises an f32 graph
    /// (`face::prelu`: exact, and fewer instructions on x86_64 and
    /// aarch64). Off only to measure tract alone.
    pub rewrites: bool,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        EmbedderOptions {
            max_batch: 8,
            threads: 1,
            precision: Precision::F32,
            rewrites: true,
        }
    }
}

type Plan = Arc<TypedRunnableModel>;

/// FaceNet through tract.
pub struct TractEmbedder {
    name: String,
    sha256: String,
    dim: usize,
    input: super::CropInput,
    /// (batch size, plan), largest batch first; always ends with batch 1.
    plans: Vec<(usize, Plan)>,
    precision: Precision,
    load_time: std::time::Duration,
    /// Operators replaced by facegate's graph rewrites in the batch-1 plan.
    rewritten: usize,
}

impl std::fmt::Debug for TractEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractEmbedder")
            .field("name", &self.name)
            .field("dim", &self.dim)
            .field(
                "batches",
                &self.plans.iter().map(|p| p.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn executor(threads: usize) -> Result<Option<multithread::Executor>, EmbedError> {
    super::tract_executor(threads, "mm").map_err(|message| EmbedError::Threads { threads, message })
}

impl TractEmbedder {
    /// Load an embedder bundle: parse the ONNX, check it against the
    /// manifest, and optimise one plan per batch size.
    pub fn from_bundle(
        bundle: &Bundle,
        opts: &EmbedderOptions,
    ) -> Result<TractEmbedder, EmbedError> {
        let m = &bundle.manifest;
        if let Some(w) = crate::cpu::int8_warning(&m.name, &m.model.precision) {
            log::warn!("{w}");
        }
        TractEmbedder::from_model(
            bundle,
            bundle.model_bytes(),
            m.name.clone(),
            &m.model.sha256,
            opts,
        )
    }

    /// The bundle's `[periocular_model]` (None when it has none): the
    /// network for periocular crops, with the bundle's input, output and
    /// alignment.
    pub fn periocular_from_bundle(
        bundle: &Bundle,
        opts: &EmbedderOptions,
    ) -> Result<Option<TractEmbedder>, EmbedError> {
        let m = &bundle.manifest;
        match (&m.periocular_model, bundle.periocular_model_bytes()) {
            (Some(p), Some(bytes)) => TractEmbedder::from_model(
                bundle,
                bytes,
                format!("{}+periocular", m.name),
                &p.sha256,
                opts,
            )
            .map(Some),
            _ => Ok(None),
        }
    }

    fn from_model(
        bundle: &Bundle,
        reader: &[u8],
        name: String,
        sha256: &str,
        opts: &EmbedderOptions,
    ) -> Result<TractEmbedder, EmbedError> {
        let t0 = Instant::now();
        bundle.expect_kind(Kind::Embedder)?;
        let m: &Manifest = &bundle.manifest;
        let mismatch = |message: String| EmbedError::Mismatch {
            name: name.clone(),
            message,
        };
        let load = |e: anyhow::Error| EmbedError::Load {
            name: name.clone(),
            message: format!("{e:#}"),
        };
        let out = m
            .output
            .as_ref()
            .ok_or_else(|| mismatch("no [output] section".into()))?;
        let al = m
            .align
            .as_ref()
            .ok_or_else(|| mismatch("no [align] section".into()))?;
        let size = al.size;

        // Shapes recorded in the file carry a symbolic batch that would
        // clash with our fixed one (`read_onnx` ignores them).
        let model =
            super::read_onnx(reader, &m.input.name, &[out.name.as_str()]).map_err(|e| match e {
                super::IoMismatch::Tract(e) => load(e),
                super::IoMismatch::Names(m) => mismatch(m),
            })?;

        let exec = executor(opts.threads)?;
        let run_opts = RunOptions {
            executor: exec,
            ..Default::default()
        };
        let mut batches = vec![opts.max_batch.max(1)];
        if batches[0] != 1 {
            batches.push(1);
        }
        let input = super::CropInput::new(&m.input, size);
        let mut plans = Vec::new();
        let mut rewritten = 0;
        for b in batches {
            let shape = input.shape(b);
            let mut typed = model
                .clone()
                .with_input_fact(0, f32::fact(shape).into())
                .and_then(|m| m.into_typed())
                .and_then(|m| m.into_decluttered())
                .map_err(load)?;
            if opts.precision == Precision::F32 && opts.rewrites {
                let (fused, n) = super::prelu::fuse(typed).map_err(load)?;
                if n > 0 {
                    log::debug!("{name}: {n} PReLU patterns run as one pass each");
                }
                rewritten = n;
                typed = fused;
            }
            if opts.precision == Precision::F16 {
                let t = tract_core::transform::get_transform("f32_to_f16")
                    .map_err(load)?
                    .ok_or_else(|| mismatch("tract has no f32_to_f16 transform".into()))?;
                typed = t.transform_into(typed).map_err(load)?;
            }
            let typed = typed.into_optimized().map_err(load)?;
            let fact = typed.output_fact(0).map_err(load)?;
            let dims: Option<Vec<usize>> = fact.shape.as_concrete().map(|d| d.to_vec());
            if dims.as_deref() != Some(&[b, out.dim][..]) {
                return Err(mismatch(format!(
                    "output shape is {:?}, the manifest says [{b}, {}]",
                    fact.shape, out.dim
                )));
            }
            let plan = typed.into_runnable_with_options(&run_opts).map_err(load)?;
            plans.push((b, plan));
        }
        let load_time = t0.elapsed();
        log::info!(
            "embedder {} loaded in {:.0} ms (batches {:?}, {} thread(s))",
            name,
            load_time.as_secs_f64() * 1e3,
            plans.iter().map(|p| p.0).collect::<Vec<_>>(),
            opts.threads
        );
        Ok(TractEmbedder {
            name,
            sha256: sha256.to_string(),
            dim: out.dim,
            input,
            plans,
            precision: opts.precision,
            load_time,
            rewritten,
        })
    }

    /// How many operator patterns facegate's graph rewrites replaced
    /// (`face::prelu`; 0 with `rewrites` off or nothing to rewrite).
    pub fn rewritten(&self) -> usize {
        self.rewritten
    }

    /// sha256 of the model this embedder runs (the gallery's model identity).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Time spent parsing, checking and optimising the model.
    pub fn load_time(&self) -> std::time::Duration {
        self.load_time
    }

    /// Normalise crops into the model's input tensor.
    fn input_tensor(&self, crops: &[&RgbImage]) -> Result<Tensor, EmbedError> {
        let t = self.input.tensor(crops).map_err(|e| match e {
            super::InputError::Size { width, height } => EmbedError::CropSize {
                width,
                height,
                size: self.input.size,
            },
            super::InputError::Tensor(m) => EmbedError::Inference(m),
        })?;
        match self.precision {
            Precision::F32 => Ok(t),
            Precision::F16 => t
                .cast_to::<f16>()
                .map(|c| c.into_owned())
                .map_err(|e| EmbedError::Inference(format!("{e:#}"))),
        }
    }

    /// Run one batch op by op and return the time spent in each kind of
    /// operator, largest first (tract's own plan, timed around each node).
    pub fn profile_ops(
        &self,
        crops: &[&RgbImage],
    ) -> Result<Vec<(String, std::time::Duration)>, EmbedError> {
        let plan = self
            .plans
            .iter()
            .find(|(b, _)| *b == crops.len())
            .map(|(_, p)| p)
            .ok_or_else(|| EmbedError::Inference(format!("no plan for batch {}", crops.len())))?;
        let input = self.input_tensor(crops)?;
        let mut state = plan
            .spawn()
            .map_err(|e| EmbedError::Inference(format!("{e:#}")))?;
        let mut times: std::collections::HashMap<String, std::time::Duration> = Default::default();
        state
            .run_plan_with_eval(tvec!(input.into()), |ctx, op_state, node, inputs| {
                let t = Instant::now();
                let r = tract_core::plan::eval(ctx, op_state, node, inputs);
                *times.entry(node.op().name().to_string()).or_default() += t.elapsed();
                r
            })
            .map_err(|e| EmbedError::Inference(format!("{e:#}")))?;
        let mut v: Vec<_> = times.into_iter().collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.1));
        Ok(v)
    }

    fn run(&self, plan: &Plan, crops: &[&RgbImage]) -> Result<Vec<Embedding>, EmbedError> {
        let input = self.input_tensor(crops)?;
        let out = plan
            .run(tvec!(input.into()))
            .map_err(|e| EmbedError::Inference(format!("{e:#}")))?;
        let first = out
            .first()
            .ok_or_else(|| EmbedError::Inference("the model produced no output".into()))?;
        let first = first
            .cast_to::<f32>()
            .map_err(|e| EmbedError::Inference(format!("{e:#}")))?;
        let view = first
            .to_plain_array_view::<f32>()
            .map_err(|e| EmbedError::Inference(format!("{e:#}")))?;
        let flat: Vec<f32> = view.iter().copied().collect();
        if flat.len() != crops.len() * self.dim {
            return Err(EmbedError::Inference(format!(
                "the model produced {} values for {} crops of dimension {}",
                flat.len(),
                crops.len(),
                self.dim
            )));
        }
        if flat.iter().any(|v| !v.is_finite()) {
            return Err(EmbedError::Inference(
                "the model produced a non-finite value".into(),
            ));
        }
        Ok(flat
            .chunks_exact(self.dim)
            .map(|c| Embedding::from_vec(c.to_vec()))
            .collect())
    }
}

impl Embedder for TractEmbedder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn crop_size(&self) -> u32 {
        self.input.size
    }

    fn embed_batch(&self, crops: &[&RgbImage]) -> Result<Vec<Embedding>, EmbedError> {
        let mut out = Vec::with_capacity(crops.len());
        let mut rest = crops;
        while !rest.is_empty() {
            // The largest plan that fits; the batch-1 plan always does.
            let Some((b, plan)) = self.plans.iter().find(|(b, _)| *b <= rest.len()) else {
                return Err(EmbedError::Inference("no execution plan".into()));
            };
            let (now, later) = rest.split_at(*b);
            out.extend(self.run(plan, now)?);
            rest = later;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_is_unit_length() {
        let e = Embedding::from_vec(vec![3.0, 4.0]);
        assert_eq!(e.as_slice(), &[0.6, 0.8]);
        assert!((e.cosine(&e) - 1.0).abs() < 1e-6);
        let z = Embedding::from_vec(vec![0.0, 0.0]);
        assert_eq!(z.as_slice(), &[0.0, 0.0]);
    }

    #[test]
    fn cosine_of_orthogonal_and_opposite() {
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), 0.0);
        assert!((cosine(&[1.0, 1.0], &[-2.0, -2.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
