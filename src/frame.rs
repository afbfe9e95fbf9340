//! The packed RGB24 image that flows from the sampler (or an image file) to the models.

use std::path::Path;

/// A decoded picture: RGB24, rows top to bottom, no padding.
///
/// Every model derives its own input from this one conversion, so FFmpeg's
/// swscale runs once per sampled frame whatever the number of models.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Why an image file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a PNG or JPEG image this build can decode: {detail}")]
    Decode { path: String, detail: String },
    #[error("{path}: image is {width}x{height}, larger than the limit of {max_pixels} pixels")]
    TooLarge {
        path: String,
        width: u32,
        height: u32,
        max_pixels: u64,
    },
}

impl Frame {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width * height * 3);
        Self {
            width,
            height,
            data,
        }
    }

    /// The RGB triple at (x, y); callers keep x and y in bounds.
    #[inline]
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Rotates clockwise by a multiple of 90 degrees (display-matrix rotation).
    pub fn rotated(self, degrees_cw: u32) -> Self {
        let (w, h) = (self.width, self.height);
        match degrees_cw % 360 {
            90 | 270 => {
                let mut out = vec![0u8; self.data.len()];
                for y in 0..h {
                    for x in 0..w {
                        let (nx, ny) = if degrees_cw % 360 == 90 {
                            (h - 1 - y, x)
                        } else {
                            (y, w - 1 - x)
                        };
                        let src = (y * w + x) * 3;
                        let dst = (ny * h + nx) * 3;
                        out[dst..dst + 3].copy_from_slice(&self.data[src..src + 3]);
                    }
                }
                Frame::new(h, w, out)
            }
            180 => {
                let mut out = Vec::with_capacity(self.data.len());
                for px in self.data.chunks_exact(3).rev() {
                    out.extend_from_slice(px);
                }
                Frame::new(w, h, out)
            }
            _ => self,
        }
    }

    /// Decodes a PNG or JPEG file into RGB24, refusing images above `max_pixels`.
    pub fn load(path: &Path, max_pixels: u64) -> Result<Self, ImageError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
            path: shown.clone(),
            source,
        })?;
        let decode_err = |e: image::ImageError| ImageError::Decode {
            path: shown.clone(),
            detail: e.to_string(),
        };
        let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| ImageError::Decode {
                path: shown.clone(),
                detail: e.to_string(),
            })?;
        let (width, height) = reader.into_dimensions().map_err(decode_err)?;
        if u64::from(width) * u64::from(height) > max_pixels {
            return Err(ImageError::TooLarge {
                path: shown,
                width,
                height,
                max_pixels,
            });
        }
        let rgb = image::load_from_memory(&bytes)
            .map_err(decode_err)?
            .into_rgb8();
        Ok(Frame::new(width as usize, height as usize, rgb.into_raw()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(w: usize, h: usize) -> Frame {
        let data = (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect();
        Frame::new(w, h, data)
    }

    #[test]
    fn rotation_moves_corners_where_a_viewer_expects() {
        // 3x2 image: top-left pixel 0, top-right 2, bottom-left 3.
        let f = numbered(3, 2);
        let cw = f.clone().rotated(90);
        assert_eq!((cw.width, cw.height), (2, 3));
        // After a clockwise turn the old bottom-left is the new top-left.
        assert_eq!(cw.pixel(0, 0)[0], 3);
        assert_eq!(cw.pixel(1, 0)[0], 0);
        let ccw = f.clone().rotated(270);
        assert_eq!(ccw.pixel(0, 0)[0], 2);
        let half = f.clone().rotated(180);
        assert_eq!(half.pixel(0, 0)[0], 5);
        assert_eq!(f.clone().rotated(360), f);
    }
}
