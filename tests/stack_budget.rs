//! Stack budgets, measured rather than guessed (issue 12): the deepest
//! stack a model call and a client request take, each on a thread of the
//! size the daemon gives it, by painting the free stack and finding the
//! deepest byte touched (`facegate::crash::stack_high_water`). Run with
//! `--nocapture` to see the numbers (docs/AMX.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is the point

mod common;

use facegate::bundle::{Bundle, DEFAULT_DETECTOR, DEFAULT_EMBEDDER};
use facegate::engine::Engine;
use facegate::face::detect::{DetectorOptions, TractDetector};
use facegate::face::embed::{EmbedderOptions, TractEmbedder};

fn measured<R: Send + 'static>(stack: usize, f: impl FnOnce() -> R + Send + 'static) -> (R, usize) {
    facegate::crash::spawn("measured", stack, move || {
        facegate::crash::stack_high_water(f).expect("measure the stack")
    })
    .expect("spawn")
    .join()
    .expect("the measured thread")
}

fn engine(threads: usize) -> Engine {
    let dir = common::models_dir();
    let det = Bundle::open_named(&dir, DEFAULT_DETECTOR).expect("detector bundle");
    let emb = Bundle::open_named(&dir, DEFAULT_EMBEDDER).expect("embedder bundle");
    let detector = TractDetector::from_bundle(
        &det,
        &DetectorOptions {
            threads,
            ..Default::default()
        },
    )
    .expect("detector");
    let embedder = TractEmbedder::from_bundle(
        &emb,
        &EmbedderOptions {
            max_batch: 1,
            threads,
            ..Default::default()
        },
    )
    .expect("embedder");
    Engine {
        detector: Box::new(detector),
        embedder: Box::new(embedder),
        periocular_embedder: None,
        align: emb.manifest.align.clone().expect("[align]"),
        periocular: None,
        presence: facegate::face::presence::Classifier::from_manifest(&emb.manifest),
    }
}

#[test]
fn inference_fits_an_eighth_of_its_stack() {
    let kernels = facegate::cpu::kernel_report();
    let img = facegate::face::imageio::load_rgb(
        &common::models_dir().join("photos/face_recognition/obama.jpg"),
    )
    .expect("photo");
    for threads in [1, 2] {
        let e = std::sync::Arc::new(engine(threads));
        let img = img.clone();
        let ((found, _), used) = measured(facegate::crash::INFERENCE_STACK, move || {
            // The first call runs each plan for the first time (scratch
            // allocation, lazy packing); the second is the steady state.
            let a = e.analyze(&img, 0, Default::default()).expect("analyze");
            let b = e.analyze(&img, 0, Default::default()).expect("analyze");
            (a.face.is_some() && b.face.is_some(), ())
        });
        println!(
            "inference (detect+align+presence+embed, {threads} thread(s)): {} KiB of stack; {kernels}",
            used >> 10
        );
        assert!(found, "the face must be found");
        assert!(
            used * 8 <= facegate::crash::INFERENCE_STACK,
            "inference used {used} bytes of stack: raise INFERENCE_STACK or find the deep frame"
        );
    }
}

#[test]
fn a_client_request_fits_a_quarter_of_its_stack() {
    // What a client thread does that is not trivial: decode a framed JSON
    // request with an inline image and decode that image (enrolment).
    let jpeg = std::fs::read(common::models_dir().join("photos/face_recognition/biden.jpg"))
        .expect("photo");
    let (ok, used) = measured(facegate::daemon::server::CLIENT_STACK, move || {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
        let req = format!(
            r#"{{"version":1,"request":"enroll","user":"a","source":{{"images":{{"images":[{{"name":"x.jpg","data_b64":"{b64}"}}]}}}}}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&req).expect("json");
        let data = v["source"]["images"]["images"][0]["data_b64"]
            .as_str()
            .expect("field")
            .to_string();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("b64");
        image::load_from_memory(&bytes).map(|i| i.width()).is_ok()
    });
    println!(
        "client request (json + base64 + JPEG decode): {} KiB of stack",
        used >> 10
    );
    assert!(ok);
    assert!(
        used * 4 <= facegate::daemon::server::CLIENT_STACK,
        "a client request used {used} bytes of stack"
    );
}
