//! Experiment (docs/PERFORMANCE.md, "NNEF"): does tract's NNEF form load faster
//! than the ONNX bundle? Converts a bundle's decluttered model to an NNEF tar,
//! then times load + optimise for both forms and checks they compute the same.
//!
//!   cargo run --release --example nnef_load -- models/out facenet-fp32
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // an experiment, not a daemon path

use std::time::Instant;

use anyhow::{Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::WithOnnx;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let models = std::path::PathBuf::from(args.get(1).map_or("models/out", String::as_str));
    let name = args.get(2).map_or("facenet-fp32", String::as_str);
    let bundle = facegate::bundle::Bundle::open_named(&models, name)?;
    let fact = f32::fact([1, 160, 160, 3]);
    let onnx = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .with_ignore_output_shapes(true);

    let t = Instant::now();
    let decluttered = onnx
        .model_for_read(&mut bundle.model_bytes())?
        .with_input_fact(0, fact.clone().into())?
        .into_typed()?
        .into_decluttered()?;
    let onnx_declutter = t.elapsed();
    let optimized = decluttered.clone().into_optimized()?;
    let onnx_total = t.elapsed();

    let nnef = tract_nnef::nnef().with_onnx();
    let tmp = std::env::temp_dir().join(format!("facegate-{name}.nnef.tar"));
    if let Err(e) = nnef.write_to_tar(&decluttered, std::fs::File::create(&tmp)?) {
        std::fs::remove_file(&tmp).ok();
        println!(
            "{name}: tract cannot write this model as NNEF: {}",
            e.root_cause()
        );
        return Ok(());
    }
    let size = std::fs::metadata(&tmp)?.len();

    let t = Instant::now();
    let from_nnef = nnef.model_for_path(&tmp).context("reading NNEF")?;
    let nnef_read = t.elapsed();
    let nnef_optimized = from_nnef.into_optimized()?;
    let nnef_total = t.elapsed();

    let input: Tensor =
        tract_ndarray::Array4::<f32>::from_shape_fn((1, 160, 160, 3), |(_, y, x, c)| {
            ((x * 7 + y * 13 + c * 29) % 255) as f32 / 128.0 - 1.0
        })
        .into();
    let a = optimized
        .into_runnable()?
        .run(tvec!(input.clone().into()))?;
    let b = nnef_optimized.into_runnable()?.run(tvec!(input.into()))?;
    let (a, b) = (
        a[0].to_plain_array_view::<f32>()?,
        b[0].to_plain_array_view::<f32>()?,
    );
    let cos =
        facegate::face::embed::cosine(a.as_slice().unwrap_or(&[]), b.as_slice().unwrap_or(&[]));
    std::fs::remove_file(&tmp).ok();
    let ms = |d: std::time::Duration| format!("{:.0}", d.as_secs_f64() * 1e3);
    println!(
        "{name}: NNEF tar {:.1} MB, outputs agree (cosine {cos:.7})",
        size as f64 / 1e6
    );
    print!(
        "{}",
        facegate::bench::table(
            &["form", "parse (+declutter) ms", "load + optimise ms"],
            &[
                vec!["ONNX".into(), ms(onnx_declutter), ms(onnx_total)],
                vec!["NNEF (decluttered)".into(), ms(nnef_read), ms(nnef_total)],
            ]
        )
    );
    Ok(())
}
