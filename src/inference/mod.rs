//! Classification of frames with ONNX Runtime: one environment, one session per model,
//! verified against models/manifest.json and loaded once per process (every worker's
//! classifier shares them); frames are batched.

mod age;
mod centerface;
mod face_align;
mod faceapi;
pub mod faces;
mod nsfw;
mod nudenet;
pub mod resize;
mod runtime;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use ort::session::Session;
use ort::value::Tensor;

pub use centerface::FaceBox;
pub use faces::{AgeEstimate, Face, Quality, Sighting};
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
    /// Every face CenterFace or NudeNet found, with its quality and age estimates.
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

/// The verified models and their sessions, shared by every [`Classifier`] of this
/// process built from the same configuration: one copy of the weights however many
/// workers run. A session runs one call at a time (ONNX Runtime's `run` takes `&mut`), and
/// each call already uses every intra-op thread, so workers queue per model rather than
/// oversubscribe the cores.
struct Models {
    nsfw: Mutex<Session>,
    nudenet: Mutex<Session>,
    centerface: Mutex<Session>,
    age: Mutex<Session>,
    faceapi: Mutex<Session>,
    shape: face_align::ShapePredictor,
    info: Vec<ModelInfo>,
}

/// What shapes the sessions: classifiers whose configurations agree here share them.
#[derive(PartialEq)]
struct SessionKey {
    models_dir: PathBuf,
    ort_library: PathBuf,
    intra_threads: usize,
    cuda_device: Option<i32>,
}

impl Models {
    /// This process's models for `config`: the loaded ones while a classifier still holds
    /// them, otherwise verified and loaded now. The registry stays locked while loading,
    /// so workers that start together load once.
    fn shared(config: &InferenceConfig) -> Result<Arc<Self>, InferenceError> {
        static LOADED: Mutex<Vec<(SessionKey, Weak<Models>)>> = Mutex::new(Vec::new());
        let key = SessionKey {
            models_dir: config.models_dir.clone(),
            ort_library: config.ort_library.clone(),
            intra_threads: config.intra_threads,
            cuda_device: config.cuda_device,
        };
        let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.retain(|(_, models)| models.strong_count() > 0);
        if let Some(models) = loaded
            .iter()
            .filter(|(k, _)| *k == key)
            .find_map(|(_, models)| models.upgrade())
        {
            return Ok(models);
        }
        let models = Arc::new(Self::load(config)?);
        loaded.push((key, Arc::downgrade(&models)));
        Ok(models)
    }

    /// Verifies every model file (sha256, I/O signature) and builds the sessions.
    fn load(config: &InferenceConfig) -> Result<Self, InferenceError> {
        let mut info = Vec::new();
        let mut load = |name: &str| -> Result<(runtime::ModelEntry, Vec<u8>), InferenceError> {
            let entry = runtime::entry(name)?;
            let (_, bytes) = runtime::verified_file(&config.models_dir, &entry)?;
            info.push(ModelInfo {
                name: entry.name.clone(),
                sha256: entry.sha256.clone(),
                source: entry.source(),
                licence: entry.licence.clone(),
            });
            Ok((entry, bytes))
        };
        let mut session = |name: &str| -> Result<Mutex<Session>, InferenceError> {
            let (e, b) = load(name)?;
            Ok(Mutex::new(runtime::session(config, &e, &b)?))
        };
        let nsfw = session(nsfw::NAME)?;
        let nudenet = session(nudenet::NAME)?;
        let centerface = session(centerface::NAME)?;
        let age = session(age::NAME)?;
        let faceapi = session(faceapi::NAME)?;
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
            centerface,
            age,
            faceapi,
            shape,
            info,
        })
    }
}

/// A session for one call. A panic elsewhere while it was held leaves the session
/// itself intact (ONNX Runtime's state is per call), so a poisoned lock is taken over.
fn lock(session: &Mutex<Session>) -> MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One worker's view of the models: the shared sessions plus its own settings and
/// counters. Cheap to load once the process has the models.
pub struct Classifier {
    models: Arc<Models>,
    face_max_side: usize,
    judgeable: faces::Judgeable,
    keep_chips: bool,
    /// Time spent inside ONNX Runtime's `run`, summed over every model: what a scan
    /// would cost with decoding and pre/post-processing free (scripts/bench's peer).
    model_time: std::time::Duration,
}

impl Classifier {
    /// A classifier on this process's models for `config`, verifying and loading them
    /// first if no other classifier holds them.
    pub fn load(config: &InferenceConfig) -> Result<Self, InferenceError> {
        Ok(Self {
            models: Models::shared(config)?,
            face_max_side: config.face_max_side,
            judgeable: faces::Judgeable::default(),
            keep_chips: false,
            model_time: std::time::Duration::ZERO,
        })
    }

    /// Whether both classifiers run on the same loaded sessions.
    pub fn shares_models_with(&self, other: &Classifier) -> bool {
        Arc::ptr_eq(&self.models, &other.models)
    }

    /// Keep each face's face-api chip in [`Face::chip`] (to inspect alignment, and for the
    /// parity test against face-api itself).
    pub fn keep_face_chips(&mut self) {
        self.keep_chips = true;
    }

    pub fn models(&self) -> &[ModelInfo] {
        &self.models.info
    }

    /// Time spent inside ONNX Runtime since this classifier was loaded.
    pub fn model_time(&self) -> std::time::Duration {
        self.model_time
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
        let found = self.find_faces(frames)?;
        timed(centerface::NAME, t);
        let t = std::time::Instant::now();
        let faces = self.judge_faces(frames, &found, &detections)?;
        timed(faceapi::NAME, t);
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
        let mut session = lock(&self.models.nsfw);
        let started = std::time::Instant::now();
        let outputs = session
            .run(ort::inputs![tensor])
            .map_err(ort_error(nsfw::NAME))?;
        self.model_time += started.elapsed();
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
        let mut session = lock(&self.models.nudenet);
        let started = std::time::Instant::now();
        let outputs = session
            .run(ort::inputs![tensor])
            .map_err(ort_error(nudenet::NAME))?;
        self.model_time += started.elapsed();
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

    /// CenterFace's faces per frame. Frames run one at a time: at up to 1280 px the
    /// network's activations for a batch of 8 take about 2 GB, and batching buys nothing
    /// on a CPU at this size.
    pub fn find_faces(
        &mut self,
        frames: &[&Frame],
    ) -> Result<Vec<Vec<centerface::FaceBox>>, InferenceError> {
        let err = ort_error(centerface::NAME);
        let mut out = Vec::with_capacity(frames.len());
        for group in frames.chunks(1) {
            let (w, h) = (group[0].width, group[0].height);
            let (in_w, in_h) = centerface::input_size(w, h, self.face_max_side);
            let mut input = Vec::with_capacity(group.len() * 3 * in_w * in_h);
            for f in group {
                centerface::preprocess(f, in_w, in_h, &mut input);
            }
            let n = group.len();
            let tensor = Tensor::from_array(([n, 3, in_h, in_w], input)).map_err(&err)?;
            let mut session = lock(&self.models.centerface);
            let started = std::time::Instant::now();
            let outputs = session.run(ort::inputs![tensor]).map_err(&err)?;
            self.model_time += started.elapsed();
            let mut maps = Vec::with_capacity(4);
            for (k, channels) in [1usize, 2, 2, 10].into_iter().enumerate() {
                let (_, data) = outputs[k].try_extract_tensor::<f32>().map_err(&err)?;
                let per_image = channels * (in_w / 4) * (in_h / 4);
                if data.len() != n * per_image {
                    return Err(InferenceError::Runtime(format!(
                        "{}: output {k} holds {} values, expected {}",
                        centerface::NAME,
                        data.len(),
                        n * per_image
                    )));
                }
                maps.push((data, per_image));
            }
            for i in 0..n {
                let slice = |k: usize| {
                    let (data, per) = maps[k];
                    &data[i * per..(i + 1) * per]
                };
                let m = centerface::Maps {
                    heatmap: slice(0),
                    scale: slice(1),
                    offset: slice(2),
                    landmarks: slice(3),
                };
                out.push(centerface::postprocess(&m, (in_w, in_h), w, h));
            }
        }
        Ok(out)
    }

    /// Every face of each frame with its quality and both age models' answers. The dlib
    /// model sees its own aligned chip (its landmarks in the face box, as its reference
    /// does); face-api sees a chip aligned on CenterFace's landmarks, or on dlib's eyes
    /// where only NudeNet found the face. Each model runs once over the whole batch.
    pub fn judge_faces(
        &mut self,
        frames: &[&Frame],
        found: &[Vec<centerface::FaceBox>],
        detections: &[Vec<Detection>],
    ) -> Result<Vec<Vec<Face>>, InferenceError> {
        let align_err =
            |e: face_align::AlignError| InferenceError::Runtime(format!("face alignment: {e}"));
        let mut faces: Vec<Vec<Face>> = vec![Vec::new(); frames.len()];
        // (frame, face index, dlib estimate ignored?) for each chip of each model.
        let mut dlib_input = Vec::new();
        let mut dlib_owners = Vec::new();
        let mut faceapi_input = Vec::new();
        let mut faceapi_owners = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let view = face_align::RgbView::new(frame.width, frame.height, &frame.data)
                .map_err(align_err)?;
            for c in faces::merge(&found[i], &detections[i]) {
                let dlib = age::landmarks(&self.models.shape, &view, c.bbox);
                let dlib_eyes = dlib.as_deref().and_then(faces::eyes_from_dlib);
                let eyes = match (c.landmarks.as_ref(), dlib_eyes) {
                    (Some(l), _) => faces::eyes_from_centerface(l),
                    (None, Some(e)) => e,
                    (None, None) => continue,
                };
                let m = faces::chip_transform(c.landmarks.as_ref(), eyes, faceapi::CHIP);
                let chip = faces::warp(frame, &m, faceapi::CHIP);
                let quality = faces::quality(eyes, c.landmarks.as_ref(), &chip, faceapi::CHIP);
                let unjudgeable = self.judgeable.verdict(c.bbox, &quality);
                let k = faces[i].len();
                // A face of a dozen pixels has no age to read: the models do not run on it.
                // A turned or blurred face still gets their answers, as evidence.
                let readable = unjudgeable != Some("too_small");
                if let Some(points) = dlib.as_ref().filter(|_| readable) {
                    let misaligned = c.landmarks.is_some()
                        && dlib_eyes.is_some_and(|d| !faces::eyes_agree(&eyes, &d));
                    age::preprocess(&view, points, &mut dlib_input)?;
                    dlib_owners.push((i, k, misaligned));
                }
                if readable {
                    faceapi::preprocess(&chip, &mut faceapi_input);
                    faceapi_owners.push((i, k));
                }
                faces[i].push(Face {
                    bbox: c.bbox,
                    score: c.score,
                    found_by: c.found_by,
                    landmarks: c.landmarks,
                    quality,
                    unjudgeable: unjudgeable.map(str::to_string),
                    age: None,
                    age_sd: None,
                    p_minor: None,
                    estimates: Vec::new(),
                    chip: self.keep_chips.then(|| chip.clone()),
                });
            }
        }
        if !dlib_owners.is_empty() {
            let err = ort_error(age::NAME);
            let m = dlib_owners.len();
            let tensor =
                Tensor::from_array(([m, 3, age::CHIP, age::CHIP], dlib_input)).map_err(&err)?;
            let mut session = lock(&self.models.age);
            let started = std::time::Instant::now();
            let outputs = session.run(ort::inputs![tensor]).map_err(&err)?;
            self.model_time += started.elapsed();
            let (_, probs) = outputs[0].try_extract_tensor::<f32>().map_err(&err)?;
            for ((i, k, misaligned), row) in
                dlib_owners.into_iter().zip(probs.chunks_exact(age::BINS))
            {
                let (a, reported, spread) = age::postprocess(row);
                let mut e =
                    faces::estimate(age::NAME, a, faces::dlib_sd(a, spread), Some(reported));
                if misaligned {
                    e.ignored = Some("misaligned".into());
                }
                faces[i][k].estimates.push(e);
            }
        }
        if !faceapi_owners.is_empty() {
            let err = ort_error(faceapi::NAME);
            let m = faceapi_owners.len();
            let tensor = Tensor::from_array(([m, faceapi::CHIP, faceapi::CHIP, 3], faceapi_input))
                .map_err(&err)?;
            let mut session = lock(&self.models.faceapi);
            let started = std::time::Instant::now();
            let outputs = session.run(ort::inputs![tensor]).map_err(&err)?;
            self.model_time += started.elapsed();
            let (_, ages) = outputs[0].try_extract_tensor::<f32>().map_err(&err)?;
            for ((i, k), &a) in faceapi_owners.into_iter().zip(ages.iter()) {
                let e = faces::estimate(faceapi::NAME, a, faces::faceapi_sd(a), None);
                faces[i][k].estimates.push(e);
            }
        }
        for face in faces.iter_mut().flatten() {
            if face.unjudgeable.is_none()
                && let Some((a, sd, p)) = faces::combine(&face.estimates)
            {
                face.age = Some(a);
                face.age_sd = Some(sd);
                face.p_minor = Some(p);
            }
        }
        Ok(faces)
    }
}

/// Wraps an ONNX Runtime error with the model it came from.
fn ort_error(model: &'static str) -> impl Fn(ort::Error) -> InferenceError {
    move |e| InferenceError::Runtime(format!("{model}: {e}"))
}
