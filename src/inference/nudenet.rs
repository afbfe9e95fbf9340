//! NudeNet 320n (YOLOv8n): body-part and face detections with boxes.
//!
//! Reproduces nudenet 3.4.2's `NudeDetector.detect`: zero-pad right/bottom to a square,
//! bilinear resize to 320x320, scale to [0, 1]. The reference reads files with OpenCV
//! (BGR), converts with `COLOR_RGBA2BGR` (which swaps a 3-channel image to RGB) and then
//! asks `blobFromImage` to swap again, so the network receives **BGR**; we do the same.
//! Post-processing: best class per anchor with score >= 0.2, box mapped back to source
//! pixels and clipped, class-agnostic NMS (score > 0.25, IoU <= 0.45), boxes truncated to
//! integers.

use super::resize::cv_bilinear_padded;
use crate::frame::Frame;

pub const NAME: &str = "nudenet_320n";
pub const SIZE: usize = 320;
const CANDIDATE_SCORE: f32 = 0.2;
const NMS_SCORE: f32 = 0.25;
const NMS_IOU: f32 = 0.45;

/// The 18 NudeNet labels in output order.
pub const LABELS: [&str; 18] = [
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
];

/// One detection in source-frame pixels.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    pub class: String,
    pub score: f32,
    /// `[x, y, w, h]`, top-left origin, integer pixels as the reference reports them.
    #[serde(rename = "box")]
    pub bbox: [i32; 4],
}

impl Detection {
    pub fn is_face(&self) -> bool {
        self.class == "FACE_FEMALE" || self.class == "FACE_MALE"
    }
}

/// Appends one frame's NCHW input (3*320*320 floats, BGR planes) to `out`.
pub fn preprocess(frame: &Frame, out: &mut Vec<f32>) {
    let side = frame.width.max(frame.height);
    let small = cv_bilinear_padded(frame, side, side, SIZE, SIZE);
    for channel in [2usize, 1, 0] {
        out.extend(
            small
                .data
                .chunks_exact(3)
                .map(|px| f32::from(px[channel]) / 255.0),
        );
    }
}

/// Decodes one image's `[22, anchors]` slice of the output into detections.
pub fn postprocess(output: &[f32], anchors: usize, width: usize, height: usize) -> Vec<Detection> {
    let factor = width.max(height) as f32 / SIZE as f32;
    let (w_img, h_img) = (width as f32, height as f32);
    let at = |row: usize, a: usize| output[row * anchors + a];
    let mut candidates: Vec<(f32, usize, [f32; 4])> = Vec::new();
    for a in 0..anchors {
        let (mut best, mut class) = (f32::NEG_INFINITY, 0);
        for k in 0..LABELS.len() {
            let s = at(4 + k, a);
            if s > best {
                best = s;
                class = k;
            }
        }
        if best < CANDIDATE_SCORE {
            continue;
        }
        let (cx, cy, w, h) = (at(0, a), at(1, a), at(2, a), at(3, a));
        let x = ((cx - w / 2.0) * factor).clamp(0.0, w_img);
        let y = ((cy - h / 2.0) * factor).clamp(0.0, h_img);
        let w = (w * factor).min(w_img - x);
        let h = (h * factor).min(h_img - y);
        candidates.push((best, class, [x, y, w, h]));
    }
    nms(&mut candidates);
    candidates
        .into_iter()
        .map(|(score, class, b)| Detection {
            class: LABELS[class].to_string(),
            score,
            bbox: [b[0] as i32, b[1] as i32, b[2] as i32, b[3] as i32],
        })
        .collect()
}

/// OpenCV's `NMSBoxes`: keep scores above the threshold, visit by descending score (stable),
/// drop a box whose IoU with any kept box exceeds the limit.
fn nms(candidates: &mut Vec<(f32, usize, [f32; 4])>) {
    candidates.retain(|c| c.0 > NMS_SCORE);
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut kept: Vec<(f32, usize, [f32; 4])> = Vec::new();
    for c in candidates.drain(..) {
        if kept.iter().all(|k| iou(&k.2, &c.2) <= NMS_IOU) {
            kept.push(c);
        }
    }
    *candidates = kept;
}

/// Intersection over union of two `[x, y, w, h]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a `[22, anchors]` output with the given (cx, cy, w, h, class, score) anchors.
    fn output(anchors: &[(f32, f32, f32, f32, usize, f32)]) -> Vec<f32> {
        let n = anchors.len();
        let mut out = vec![0.0; 22 * n];
        for (a, &(cx, cy, w, h, class, score)) in anchors.iter().enumerate() {
            out[a] = cx;
            out[n + a] = cy;
            out[2 * n + a] = w;
            out[3 * n + a] = h;
            out[(4 + class) * n + a] = score;
        }
        out
    }

    #[test]
    fn overlapping_boxes_keep_the_best_and_map_to_source_pixels() {
        // 640x320 source: factor 2, boxes in 320-space.
        let out = output(&[
            (100.0, 50.0, 40.0, 20.0, 1, 0.9),
            (101.0, 50.0, 40.0, 20.0, 1, 0.8), // overlaps the first: suppressed
            (250.0, 50.0, 20.0, 20.0, 3, 0.5),
            (10.0, 10.0, 10.0, 10.0, 3, 0.22), // candidate, but under the NMS score
        ]);
        let d = postprocess(&out, 4, 640, 320);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].class, "FACE_FEMALE");
        assert_eq!(d[0].bbox, [160, 80, 80, 40]);
        assert!(d[0].is_face());
        assert_eq!(d[1].class, "FEMALE_BREAST_EXPOSED");
    }

    #[test]
    fn boxes_are_clipped_to_the_frame() {
        let out = output(&[(315.0, 5.0, 20.0, 20.0, 0, 0.7)]);
        let d = postprocess(&out, 1, 320, 320);
        assert_eq!(
            d[0].bbox,
            [305, 0, 15, 20],
            "height is not reduced by the top clip, as in the reference"
        );
    }

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 5.0, 5.0]), 0.0);
        assert!((iou(&a, &[5.0, 0.0, 10.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6);
    }
}
