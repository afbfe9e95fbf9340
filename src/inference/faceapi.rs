//! The age network of @vladmandic/face-api 1.7.15 (MIT), the age model trained with
//! children: UTK, FGNET, MegaAge, MegaAge-Asian, ChaLearn, IMDB/Wiki; published mean
//! absolute error 1.5 years at 0-3, 3.1 at 4-8, 4.8 at 9-18, 5.0 at 19-28.
//!
//! face-api ships it as TensorFlow.js weights; `scripts/faceapi_to_onnx.py` builds the
//! same network as an ONNX graph at model-fetch time (normalisation included), so the
//! input is face-api's own: a 112x112 RGB chip, 0..255, NHWC. The chip is cut by
//! `faces::chip_transform` from the face's landmarks.

pub const NAME: &str = "faceapi_age";
pub const CHIP: usize = 112;

/// Appends one chip (RGB bytes, `CHIP * CHIP * 3`) to the NHWC input.
pub fn preprocess(chip: &[u8], out: &mut Vec<f32>) {
    out.extend(chip.iter().map(|&v| f32::from(v)));
}
