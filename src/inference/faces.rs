//! From face detections to judged faces: which faces there are (CenterFace's and NudeNet's
//! merged), how each is cut out for the face-api age network, whether it can be judged at
//! all, and what the age models together say about it. Plain functions, no models here.
//!
//! The age combination, in short (docs/detection.md has the reasoning and the figures):
//! each model's estimate `a` gets a standard deviation from the mean absolute error its
//! authors publish for that age band (`sd = MAE * sqrt(pi / 2)`, the normal distribution's
//! ratio); the combined age is the inverse-variance mean, its deviation the smaller of the
//! two (the models' errors are correlated, so agreeing does not make us twice as sure)
//! widened to cover half their disagreement; `P(minor) = Phi((18 - age) / sd)`.

use serde::{Deserialize, Serialize};

use super::centerface::FaceBox;
use super::nudenet::{Detection, iou};
use crate::frame::Frame;

/// Age at which a person is an adult.
pub const ADULT_AGE: f32 = 18.0;

/// One face with everything the models say about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// `[x, y, w, h]` in source pixels: NudeNet's box where NudeNet found the face (so it
    /// joins its FACE_* detection), CenterFace's otherwise.
    #[serde(rename = "box")]
    pub bbox: [i32; 4],
    /// Detector confidence: the higher of CenterFace's and NudeNet's.
    pub score: f32,
    /// Which detectors found it, with their own boxes and scores.
    pub found_by: Vec<Sighting>,
    /// CenterFace's five landmarks (eyes, nose, mouth corners), where it found the face.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<[[f32; 2]; 5]>,
    pub quality: Quality,
    /// Why no age is given (`too_small`, `turned`, `blurred`), when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unjudgeable: Option<String>,
    /// Combined age estimate in years, and its standard deviation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_sd: Option<f32>,
    /// Combined probability that the person is under 18.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_minor: Option<f32>,
    /// Each age model's own answer, as evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimates: Vec<AgeEstimate>,
    /// The aligned 112x112 RGB chip face-api saw, kept only on request
    /// (`Classifier::keep_face_chips`, for `vcw classify --face-chips`).
    #[serde(skip)]
    pub chip: Option<Vec<u8>>,
}

impl Face {
    /// Whether at least two age models judged this face and each gives it, on its own, a
    /// P(minor) of at least `agree`. One model alone (the other misaligned, as on a
    /// cartoon face) never makes a probable minor.
    pub fn models_agree_minor(&self, agree: f32) -> bool {
        let used: Vec<&AgeEstimate> = self.estimates.iter().filter(|e| e.used()).collect();
        used.len() >= 2 && used.iter().all(|e| e.p_minor >= agree)
    }
}

/// One detector's view of a face.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub detector: String,
    /// `[x, y, w, h]`, source pixels, as the detector reports it.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
}

impl Sighting {
    fn centerface(f: &FaceBox) -> Self {
        let [x1, y1, x2, y2] = f.corners;
        Self {
            detector: super::centerface::NAME.to_string(),
            bbox: [x1, y1, x2 - x1, y2 - y1],
            score: f.score,
        }
    }

    fn nudenet(d: &Detection) -> Self {
        Self {
            detector: super::nudenet::NAME.to_string(),
            bbox: d.bbox.map(|v| v as f32),
            score: d.score,
        }
    }
}

/// One age model's answer for one face.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgeEstimate {
    pub model: String,
    pub age: f32,
    /// The standard deviation this model's published errors give at this age.
    pub sd: f32,
    /// `Phi((18 - age) / sd)`: this model's own P(minor).
    pub p_minor: f32,
    /// What the model itself reports as P(age < 18) (the dlib model's softmax mass), where
    /// it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_p_minor: Option<f32>,
    /// Why this answer is left out of the combination (`misaligned`: dlib's landmarks
    /// disagree with CenterFace's, so its chip is not the face), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

impl AgeEstimate {
    pub fn used(&self) -> bool {
        self.ignored.is_none()
    }
}

/// How well a face can be judged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Distance between the eye centres, source pixels.
    pub eye_distance: f32,
    /// Head turn: the nose's sideways offset from the eyes' midpoint, in eye distances
    /// (0 frontal, about 0.5 in half profile).
    pub yaw: f32,
    /// Nod: where the nose sits between the eye line (0) and the mouth (1); about 0.5
    /// frontal.
    pub pitch: f32,
    /// Tilt of the eye line, degrees.
    pub roll: f32,
    /// Variance of the Laplacian on the aligned grey chip: low means blurred.
    pub sharpness: f32,
}

/// Limits under which a face gets no age.
#[derive(Clone, Copy, Debug)]
pub struct Judgeable {
    /// Shorter side of the face box, pixels.
    pub min_face_px: f32,
    pub max_yaw: f32,
    pub pitch_range: (f32, f32),
    pub min_sharpness: f32,
}

impl Default for Judgeable {
    fn default() -> Self {
        Self {
            min_face_px: 24.0,
            max_yaw: 0.45,
            pitch_range: (0.2, 0.8),
            min_sharpness: 10.0,
        }
    }
}

impl Judgeable {
    /// The reason a face with this box and quality cannot be judged, if any.
    pub fn verdict(&self, bbox: [i32; 4], q: &Quality) -> Option<&'static str> {
        let side = bbox[2].min(bbox[3]) as f32;
        if side < self.min_face_px || q.eye_distance < self.min_face_px / 3.0 {
            Some("too_small")
        } else if q.yaw.abs() > self.max_yaw
            || q.pitch < self.pitch_range.0
            || q.pitch > self.pitch_range.1
        {
            Some("turned")
        } else if q.sharpness < self.min_sharpness {
            Some("blurred")
        } else {
            None
        }
    }
}

/// A face before any age model ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub bbox: [i32; 4],
    pub score: f32,
    pub found_by: Vec<Sighting>,
    pub landmarks: Option<[[f32; 2]; 5]>,
}

/// Faces judged per frame at most (the crowd photo has 144).
pub const MAX_FACES: usize = 256;

/// Boxes overlapping at least this much are the same face.
const SAME_FACE_IOU: f32 = 0.3;

/// CenterFace's faces and NudeNet's face detections as one list, strongest first: a
/// NudeNet face that overlaps a CenterFace face is the same face (NudeNet's box,
/// CenterFace's landmarks); a face either found alone stays.
pub fn merge(centerface: &[FaceBox], detections: &[Detection]) -> Vec<Candidate> {
    let mut taken = vec![false; centerface.len()];
    let mut out = Vec::new();
    for d in detections.iter().filter(|d| d.is_face()) {
        let nbox = d.bbox.map(|v| v as f32);
        let best = centerface
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .map(|(i, c)| (i, iou(&nbox, &Sighting::centerface(c).bbox)))
            .filter(|(_, iou)| *iou >= SAME_FACE_IOU)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let mut c = Candidate {
            bbox: d.bbox,
            score: d.score,
            found_by: vec![Sighting::nudenet(d)],
            landmarks: None,
        };
        if let Some((i, _)) = best {
            taken[i] = true;
            c.score = c.score.max(centerface[i].score);
            c.found_by.insert(0, Sighting::centerface(&centerface[i]));
            c.landmarks = Some(centerface[i].landmarks);
        }
        out.push(c);
    }
    for (f, _) in centerface.iter().zip(&taken).filter(|(_, t)| !**t) {
        let [x1, y1, x2, y2] = f.corners;
        out.push(Candidate {
            bbox: [
                x1 as i32,
                y1 as i32,
                ((x2 - x1) as i32).max(1),
                ((y2 - y1) as i32).max(1),
            ],
            score: f.score,
            found_by: vec![Sighting::centerface(f)],
            landmarks: Some(f.landmarks),
        });
    }
    // Strongest first, and a bounded number: a frame full of face-like texture must not
    // cost unbounded alignment and age-model work.
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(MAX_FACES);
    out
}

/// Eye centres (image-left first) from CenterFace's landmarks, or from dlib's five points
/// (two corners per eye, then the nose).
pub fn eyes_from_centerface(l: &[[f32; 2]; 5]) -> [[f64; 2]; 2] {
    order_eyes([l[0], l[1]].map(|p| p.map(f64::from)))
}

pub fn eyes_from_dlib(points: &[(f64, f64)]) -> Option<[[f64; 2]; 2]> {
    if points.len() < 4 {
        return None;
    }
    let mid = |a: (f64, f64), b: (f64, f64)| [(a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0];
    Some(order_eyes([
        mid(points[0], points[1]),
        mid(points[2], points[3]),
    ]))
}

fn order_eyes(e: [[f64; 2]; 2]) -> [[f64; 2]; 2] {
    if e[0][0] <= e[1][0] { e } else { [e[1], e[0]] }
}

/// Whether dlib's eyes and CenterFace's agree: each within a quarter of the eye distance.
pub fn eyes_agree(a: &[[f64; 2]; 2], b: &[[f64; 2]; 2]) -> bool {
    let d = dist(a[0], a[1]).max(1.0);
    dist(a[0], b[0]) <= d / 4.0 && dist(a[1], b[1]) <= d / 4.0
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Where the face-api chip puts the landmarks, in eye distances from the eyes' midpoint:
/// the five-point template of easy-detection's `_align` (ArcFace's), placed so that the
/// chip frames the face the way face-api's own crop does (the 68-landmark box padded by
/// 20%, squared): eye distance 0.36 of the side, eyes 0.21 from the top.
const TEMPLATE: [[f64; 2]; 5] = [
    [-0.5, 0.0],
    [0.5, 0.0],
    [-0.003, 0.575],
    [-0.414, 1.161],
    [0.414, 1.157],
];
const CHIP_EYE_DISTANCE: f64 = 0.362;
const CHIP_EYE_Y: f64 = 0.21;

/// The 2x3 matrix taking chip pixels to frame pixels for a `size` chip: a least-squares
/// similarity (rotation, uniform scale, shift) from the template to the landmarks: all five
/// where CenterFace gave them, else the two eyes.
pub fn chip_transform(
    landmarks: Option<&[[f32; 2]; 5]>,
    eyes: [[f64; 2]; 2],
    size: usize,
) -> [f64; 6] {
    let s = size as f64;
    let to_chip = |t: [f64; 2]| {
        [
            s / 2.0 + t[0] * CHIP_EYE_DISTANCE * s,
            CHIP_EYE_Y * s + t[1] * CHIP_EYE_DISTANCE * s,
        ]
    };
    let (src, dst): (Vec<[f64; 2]>, Vec<[f64; 2]>) = match landmarks {
        Some(l) => {
            // The template's first eye and mouth corner are image-left ones.
            let mut pts: Vec<[f64; 2]> = l.iter().map(|p| p.map(f64::from)).collect();
            if l[0][0] > l[1][0] {
                pts.swap(0, 1);
                pts.swap(3, 4);
            }
            (TEMPLATE.iter().map(|&t| to_chip(t)).collect(), pts)
        }
        None => (
            TEMPLATE[..2].iter().map(|&t| to_chip(t)).collect(),
            eyes.to_vec(),
        ),
    };
    similarity(&src, &dst)
}

/// Least-squares similarity `dst ~ [a -b; b a] src + t`, as a 2x3 row-major matrix.
fn similarity(src: &[[f64; 2]], dst: &[[f64; 2]]) -> [f64; 6] {
    let n = src.len() as f64;
    let mean = |p: &[[f64; 2]]| {
        let (x, y) = p.iter().fold((0.0, 0.0), |a, q| (a.0 + q[0], a.1 + q[1]));
        [x / n, y / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (s[0] - ms[0], s[1] - ms[1]);
        let (dx, dy) = (d[0] - md[0], d[1] - md[1]);
        num_a += sx * dx + sy * dy;
        num_b += sx * dy - sy * dx;
        den += sx * sx + sy * sy;
    }
    let (a, b) = if den > 0.0 {
        (num_a / den, num_b / den)
    } else {
        (1.0, 0.0)
    };
    [
        a,
        -b,
        md[0] - (a * ms[0] - b * ms[1]),
        b,
        a,
        md[1] - (b * ms[0] + a * ms[1]),
    ]
}

/// A `size` x `size` RGB chip: each chip pixel's centre mapped through `m` into the frame,
/// sampled bilinearly; black outside the frame (face-api pads with black too).
pub fn warp(frame: &Frame, m: &[f64; 6], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size * size * 3];
    let (w, h) = (frame.width as f64, frame.height as f64);
    let px = |x: i64, y: i64, c: usize| -> f64 {
        if x < 0 || y < 0 || x >= frame.width as i64 || y >= frame.height as i64 {
            0.0
        } else {
            f64::from(frame.data[(y as usize * frame.width + x as usize) * 3 + c])
        }
    };
    for v in 0..size {
        for u in 0..size {
            let (cu, cv) = (u as f64 + 0.5, v as f64 + 0.5);
            let x = m[0] * cu + m[1] * cv + m[2] - 0.5;
            let y = m[3] * cu + m[4] * cv + m[5] - 0.5;
            if !(x > -1.0 && y > -1.0 && x < w && y < h) {
                continue;
            }
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - fx) + px(x0 + 1, y0, c) * fx;
                let bottom = px(x0, y0 + 1, c) * (1.0 - fx) + px(x0 + 1, y0 + 1, c) * fx;
                out[(v * size + u) * 3 + c] = (top * (1.0 - fy) + bottom * fy).round() as u8;
            }
        }
    }
    out
}

/// Size, pose and sharpness of a face from its eyes, its landmarks (where CenterFace gave
/// them) and its aligned chip.
pub fn quality(
    eyes: [[f64; 2]; 2],
    landmarks: Option<&[[f32; 2]; 5]>,
    chip: &[u8],
    size: usize,
) -> Quality {
    let d = dist(eyes[0], eyes[1]);
    let (ex, ey) = (eyes[1][0] - eyes[0][0], eyes[1][1] - eyes[0][1]);
    let roll = ey.atan2(ex).to_degrees();
    let (mut yaw, mut pitch) = (0.0, 0.5);
    if let Some(l) = landmarks
        && d > 0.0
    {
        // Coordinates along the eye line (u) and across it (v), from the eyes' midpoint.
        let mid = [
            (eyes[0][0] + eyes[1][0]) / 2.0,
            (eyes[0][1] + eyes[1][1]) / 2.0,
        ];
        let (ux, uy) = (ex / d, ey / d);
        let along = |p: [f32; 2]| {
            let (px, py) = (f64::from(p[0]) - mid[0], f64::from(p[1]) - mid[1]);
            (px * ux + py * uy, -px * uy + py * ux)
        };
        let (nose_u, nose_v) = along(l[2]);
        let (_, mouth_v) = {
            let (a, b) = (along(l[3]), along(l[4]));
            ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0)
        };
        yaw = nose_u / d;
        if mouth_v > 0.0 {
            pitch = nose_v / mouth_v;
        }
    }
    Quality {
        eye_distance: d as f32,
        yaw: yaw as f32,
        pitch: pitch as f32,
        roll: roll as f32,
        sharpness: laplacian_variance(chip, size) as f32,
    }
}

/// Variance of the 4-neighbour Laplacian of the chip's luma.
fn laplacian_variance(chip: &[u8], size: usize) -> f64 {
    if size < 3 || chip.len() < size * size * 3 {
        return 0.0;
    }
    let luma = |x: usize, y: usize| {
        let p = &chip[(y * size + x) * 3..];
        0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
    };
    let (mut sum, mut sq, mut n) = (0.0, 0.0, 0.0);
    for y in 1..size - 1 {
        for x in 1..size - 1 {
            let l = luma(x - 1, y) + luma(x + 1, y) + luma(x, y - 1) + luma(x, y + 1)
                - 4.0 * luma(x, y);
            sum += l;
            sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sq / n - mean * mean
}

/// face-api's published mean absolute error by age band (TUTORIAL.md of
/// @vladmandic/face-api 1.7.15): upper band limit (exclusive) and MAE in years.
const FACEAPI_MAE: [(f32, f32); 8] = [
    (4.0, 1.52),
    (9.0, 3.06),
    (19.0, 4.82),
    (29.0, 4.99),
    (41.0, 5.43),
    (61.0, 4.94),
    (81.0, 6.17),
    (f32::INFINITY, 9.91),
];
/// Normal distribution: standard deviation = MAE * sqrt(pi / 2).
const MAE_TO_SD: f32 = 1.253_314_1;

/// The standard deviation of face-api's estimate at `age`.
pub fn faceapi_sd(age: f32) -> f32 {
    let mae = FACEAPI_MAE
        .iter()
        .find(|(upper, _)| age < *upper)
        .map_or(9.91, |b| b.1);
    mae * MAE_TO_SD
}

/// The standard deviation of the dlib model's estimate: its authors publish no per-band
/// error, so its own predictive spread (the softmax's standard deviation) is used, never
/// below face-api's band error at that age.
pub fn dlib_sd(age: f32, spread: f32) -> f32 {
    spread.max(faceapi_sd(age))
}

/// An estimate from a model's age and standard deviation.
pub fn estimate(model: &str, age: f32, sd: f32, reported_p_minor: Option<f32>) -> AgeEstimate {
    AgeEstimate {
        model: model.to_string(),
        age,
        sd,
        p_minor: p_below(ADULT_AGE, age, sd),
        reported_p_minor,
        ignored: None,
    }
}

/// Combined age, deviation and P(minor) of the estimates in use (see the module comment).
pub fn combine(all: &[AgeEstimate]) -> Option<(f32, f32, f32)> {
    let estimates: Vec<&AgeEstimate> = all.iter().filter(|e| e.used()).collect();
    if estimates.is_empty() {
        return None;
    }
    let weights: f32 = estimates.iter().map(|e| 1.0 / (e.sd * e.sd)).sum();
    let age = estimates.iter().map(|e| e.age / (e.sd * e.sd)).sum::<f32>() / weights;
    let min_sd = estimates.iter().map(|e| e.sd).fold(f32::INFINITY, f32::min);
    let spread = estimates
        .iter()
        .flat_map(|a| estimates.iter().map(move |b| (a.age - b.age).abs()))
        .fold(0.0f32, f32::max);
    let sd = min_sd.max(spread / 2.0);
    Some((age, sd, p_below(ADULT_AGE, age, sd)))
}

/// P(X < limit) for X ~ N(mean, sd).
fn p_below(limit: f32, mean: f32, sd: f32) -> f32 {
    let z = f64::from((limit - mean) / sd.max(1e-3));
    (0.5 * erfc(-z / std::f64::consts::SQRT_2)) as f32
}

/// The complementary error function (Numerical Recipes' erfc, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_probabilities() {
        assert!((p_below(18.0, 18.0, 5.0) - 0.5).abs() < 1e-6);
        assert!((p_below(18.0, 13.0, 5.0) - 0.841_344_7).abs() < 1e-5);
        assert!((p_below(18.0, 28.0, 5.0) - 0.022_750_1).abs() < 1e-5);
    }

    #[test]
    fn band_errors_follow_the_published_table() {
        assert!((faceapi_sd(2.0) - 1.52 * MAE_TO_SD).abs() < 1e-5);
        assert!((faceapi_sd(15.0) - 4.82 * MAE_TO_SD).abs() < 1e-5);
        assert!((faceapi_sd(90.0) - 9.91 * MAE_TO_SD).abs() < 1e-5);
        assert_eq!(dlib_sd(30.0, 1.0), faceapi_sd(30.0));
        assert_eq!(dlib_sd(30.0, 20.0), 20.0);
    }

    #[test]
    fn agreeing_models_keep_the_smaller_deviation_and_disagreement_widens_it() {
        let a = estimate("a", 30.0, 6.0, None);
        let b = estimate("b", 32.0, 6.0, None);
        let (age, sd, p) = combine(&[a.clone(), b]).unwrap();
        assert!((age - 31.0).abs() < 1e-4 && (sd - 6.0).abs() < 1e-4);
        assert!(p < 0.02);
        let child = estimate("c", 4.0, 2.0, None);
        let (_, sd, _) = combine(&[a, child]).unwrap();
        assert!((sd - 13.0).abs() < 1e-4, "{sd}");
        assert!(combine(&[]).is_none());
    }

    #[test]
    fn overlapping_detections_merge_into_one_face() {
        let cf = FaceBox {
            corners: [10.0, 10.0, 50.0, 60.0],
            score: 0.9,
            landmarks: [
                [20.0, 30.0],
                [40.0, 30.0],
                [30.0, 40.0],
                [22.0, 50.0],
                [38.0, 50.0],
            ],
        };
        let lone = FaceBox {
            corners: [200.0, 10.0, 220.0, 34.0],
            score: 0.6,
            landmarks: [[0.0; 2]; 5],
        };
        let nude = Detection {
            class: "FACE_FEMALE".into(),
            score: 0.7,
            bbox: [12, 8, 38, 50],
        };
        let merged = merge(&[lone, cf], &[nude]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].bbox, [12, 8, 38, 50]);
        assert_eq!(merged[0].score, 0.9);
        let by: Vec<&str> = merged[0]
            .found_by
            .iter()
            .map(|s| s.detector.as_str())
            .collect();
        assert_eq!(by, ["centerface", "nudenet_320n"]);
        assert_eq!(merged[0].found_by[0].bbox, [10.0, 10.0, 40.0, 50.0]);
        assert!(merged[0].landmarks.is_some());
        assert_eq!(merged[1].bbox, [200, 10, 20, 24]);
        assert_eq!(merged[1].found_by.len(), 1);
    }

    #[test]
    fn the_chip_puts_the_eyes_where_the_template_says() {
        let l = [
            [100.0, 100.0],
            [140.0, 100.0],
            [120.0, 123.0],
            [103.4, 146.4],
            [136.6, 146.3],
        ];
        let m = chip_transform(Some(&l), eyes_from_centerface(&l), 112);
        // The chip's left-eye position maps back onto the left eye.
        let (cx, cy) = (56.0 - 0.5 * CHIP_EYE_DISTANCE * 112.0, CHIP_EYE_Y * 112.0);
        let x = m[0] * cx + m[1] * cy + m[2];
        let y = m[3] * cx + m[4] * cy + m[5];
        assert!(
            (x - 100.0).abs() < 0.5 && (y - 100.0).abs() < 0.5,
            "{x} {y}"
        );
        // No rotation for level eyes.
        assert!(m[1].abs() < 1e-2 && m[3].abs() < 1e-2);
    }

    #[test]
    fn pose_from_landmarks() {
        let eyes = [[100.0, 100.0], [140.0, 100.0]];
        let frontal = [
            [100.0, 100.0],
            [140.0, 100.0],
            [120.0, 123.0],
            [104.0, 146.0],
            [136.0, 146.0],
        ];
        let q = quality(eyes, Some(&frontal), &[128; 112 * 112 * 3], 112);
        assert!(q.yaw.abs() < 0.01 && (q.pitch - 0.5).abs() < 0.01 && q.roll.abs() < 1e-6);
        assert_eq!(q.eye_distance, 40.0);
        assert_eq!(q.sharpness, 0.0);
        let turned = [
            [100.0, 100.0],
            [140.0, 100.0],
            [145.0, 123.0],
            [110.0, 146.0],
            [142.0, 146.0],
        ];
        let q = quality(eyes, Some(&turned), &[128; 112 * 112 * 3], 112);
        assert!(q.yaw > 0.6);
        assert_eq!(
            Judgeable::default().verdict([0, 0, 60, 60], &q),
            Some("turned")
        );
        let small = Quality {
            eye_distance: 5.0,
            pitch: 0.5,
            sharpness: 100.0,
            ..Default::default()
        };
        assert_eq!(
            Judgeable::default().verdict([0, 0, 14, 16], &small),
            Some("too_small")
        );
    }
}
