//! Classification of frames with ONNX Runtime: one environment, one session per model,
//! loaded once and verified against models/manifest.json; frames are batched.

mod age;
mod face_align;
mod nsfw;
mod nudenet;
pub mod resize;
mod runtime;

use ort::session::Session;
use ort::value::Tensor;

pub use age::Face;
pub use nudenet::{Detection, LABELS, iou};
pub use runtime::{ModelEntry, entries, runtime_info, verified_file};

use crate::config::InferenceConfig;
use crate::frame::Frame;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("model file {path} is missing or unreadable ({detail}): run `make models`")]
    ModelMissing { path: String, detail: String },
    #[error(
        "model file {path} has sha256 {got}, the manifest expects {expected}: run `make models` to fetch the right file"
    )]
    ModelDigest {
        path: String,
        expected: String,
        got: String,
    },
    #[error("model {model} does not have the expected signature: {detail}")]
    Signature { model: String, detail: String },
    #[error("{0}")]
    Manifest(String),
    #[error("{0}")]
    Runtime(String),
}

/// Everything the models say about one frame.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrameSignals {
    /// open_nsfw probability that the frame is not safe for work.
    pub nsfw: f32,
    /// NudeNet detections after NMS.
    pub detections: Vec<Detection>,
    /// One entry per NudeNet face detection, with the age estimate.
    pub faces: Vec<Face>,
}

/// Identity of a loaded model, reported with every result.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub sha256: String,
    pub source: String,
    pub licence: String,
}

/// The loaded models. Sessions run one batch at a time (`&mut self`); ONNX Runtime's
/// intra-op threads parallelise inside each call.
pub struct Classifier {
    nsfw: Session,
    nudenet: Session,
    age: Session,
    shape: face_align::ShapePredictor,
    models: Vec<ModelInfo>,
}

impl Classifier {
    /// Verifies every model file (sha256, I/O signature) and builds the sessions.
    pub fn load(config: &InferenceConfig) -> Result<Self, InferenceError> {
        let mut models = Vec::new();
        let mut load = |name: &str| -> Result<(runtime::ModelEntry, Vec<u8>), InferenceError> {
            let entry = runtime::entry(name)?;
            let (_, bytes) = runtime::verified_file(&config.models_dir, &entry)?;
            models.push(ModelInfo {
                name: entry.name.clone(),
                sha256: entry.sha256.clone(),
                source: format!("{} {} (PyPI)", entry.wheel, entry.version),
                licence: entry.licence.clone(),
            });
            Ok((entry, bytes))
        };
        let (e, b) = load(nsfw::NAME)?;
        let nsfw = runtime::session(config, &e, &b)?;
        let (e, b) = load(nudenet::NAME)?;
        let nudenet = runtime::session(config, &e, &b)?;
        let (e, b) = load(age::NAME)?;
        let age = runtime::session(config, &e, &b)?;
        let (e, b) = load("shape_predictor_5")?;
        let shape = face_align::ShapePredictor::from_bytes(&b)
            .map_err(|err| err.to_string())
            .and_then(|p| match p.num_parts() {
                5 => Ok(p),
                n => Err(format!("predicts {n} landmarks, the age alignment needs 5")),
            })
            .map_err(|detail| InferenceError::Signature {
                model: e.file.clone(),
                detail,
            })?;
        Ok(Self {
            nsfw,
            nudenet,
            age,
            shape,
            models,
        })
    }

    pub fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    /// Classifies a batch of frames with every model; one result per frame, in order.
    pub fn classify(&mut self, frames: &[&Frame]) -> Result<Vec<FrameSignals>, InferenceError> {
        let timed = |model: &str, started: std::time::Instant| {
            crate::metrics::inference(model, started.elapsed());
        };
        let t = std::time::Instant::now();
        let nsfw_scores = self.nsfw(frames)?;
        timed(nsfw::NAME, t);
        let t = std::time::Instant::now();
        let detections = self.detect(frames)?;
        timed(nudenet::NAME, t);
        let t = std::time::Instant::now();
        let faces = self.ages(frames, &detections)?;
        timed(age::NAME, t);
        (crate::metrics::metrics().frames_sampled).inc_by(frames.len() as u64);
        Ok(nsfw_scores
            .into_iter()
            .zip(detections)
            .zip(faces)
            .map(|((nsfw, detections), faces)| FrameSignals {
                nsfw,
                detections,
                faces,
            })
            .collect())
    }

    /// open_nsfw probability per frame.
    pub fn nsfw(&mut self, frames: &[&Frame]) -> Result<Vec<f32>, InferenceError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let n = frames.len();
        let mut input = Vec::with_capacity(n * nsfw::CROP * nsfw::CROP * 3);
        for f in frames {
            nsfw::preprocess(f, &mut input);
        }
        let tensor = Tensor::from_array(([n, nsfw::CROP, nsfw::CROP, 3], input))
            .map_err(ort_error(nsfw::NAME))?;
        let outputs = self
            .nsfw
            .run(ort::inputs![tensor])
            .map_err(ort_error(nsfw::NAME))?;
        let (_, probs) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(nsfw::NAME))?;
        Ok(nsfw::postprocess(probs))
    }

    /// NudeNet detections per frame, after NMS, in source pixels.
    pub fn detect(&mut self, frames: &[&Frame]) -> Result<Vec<Vec<Detection>>, InferenceError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let n = frames.len();
        let side = nudenet::SIZE;
        let mut input = Vec::with_capacity(n * 3 * side * side);
        for f in frames {
            nudenet::preprocess(f, &mut input);
        }
        let tensor =
            Tensor::from_array(([n, 3, side, side], input)).map_err(ort_error(nudenet::NAME))?;
        let outputs = self
            .nudenet
            .run(ort::inputs![tensor])
            .map_err(ort_error(nudenet::NAME))?;
        let (shape, raw) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(nudenet::NAME))?;
        let anchors = usize::try_from(shape.get(2).copied().unwrap_or(0)).unwrap_or(0);
        let per_image = 22 * anchors;
        if anchors == 0 || raw.len() != n * per_image {
            return Err(InferenceError::Runtime(format!(
                "{}: unexpected output shape {shape:?}",
                nudenet::NAME
            )));
        }
        Ok(frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                nudenet::postprocess(
                    &raw[i * per_image..(i + 1) * per_image],
                    anchors,
                    f.width,
                    f.height,
                )
            })
            .collect())
    }

    /// Age estimates for the face detections of each frame; the age model runs once over
    /// every face of the batch.
    pub fn ages(
        &mut self,
        frames: &[&Frame],
        detections: &[Vec<Detection>],
    ) -> Result<Vec<Vec<Face>>, InferenceError> {
        let mut input = Vec::new();
        let mut owners = Vec::new();
        for (i, (frame, dets)) in frames.iter().zip(detections).enumerate() {
            for d in dets.iter().filter(|d| d.is_face()) {
                if age::preprocess(&self.shape, frame, d, &mut input)? {
                    owners.push((i, d.bbox));
                }
            }
        }
        let mut faces = vec![Vec::new(); frames.len()];
        if owners.is_empty() {
            return Ok(faces);
        }
        let m = owners.len();
        let err = |e: ort::Error| InferenceError::Runtime(format!("{}: {e}", age::NAME));
        let tensor = Tensor::from_array(([m, 3, age::CHIP, age::CHIP], input)).map_err(err)?;
        let outputs = self.age.run(ort::inputs![tensor]).map_err(err)?;
        let (_, probs) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        for ((i, bbox), row) in owners.into_iter().zip(probs.chunks_exact(age::BINS)) {
            let (age, p_minor) = age::postprocess(row);
            faces[i].push(Face { bbox, age, p_minor });
        }
        Ok(faces)
    }
}

/// Wraps an ONNX Runtime error with the model it came from.
fn ort_error(model: &'static str) -> impl Fn(ort::Error) -> InferenceError {
    move |e| InferenceError::Runtime(format!("{model}: {e}"))
}
