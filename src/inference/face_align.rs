//! Pure-Rust reproduction of dlib's 5-point face alignment.
//!
//! The age and gender networks were trained on face chips that dlib cut out with
//! `shape_predictor` -> `get_face_chip_details(shape, size, 0.2)` ->
//! `extract_image_chip`. Any deviation in landmarks or resampling shifts every
//! downstream prediction, so this module follows dlib's arithmetic step by step
//! (including its integer rounding points, its `f32` feature math and its
//! `pyramid_down<2>` pre-filter) rather than using a "nicer" resampler.
//!
//! Three pieces are provided:
//! - [`ShapePredictor::from_bytes`]: a reader for dlib's serialized
//!   `shape_predictor` (`shape_predictor_5_face_landmarks.dat`).
//! - [`ShapePredictor::predict`]: the regression-tree cascade, returning the
//!   landmarks rounded to whole pixels exactly as dlib's `full_object_detection`.
//! - [`face_chip`]: the aligned, rotated and scaled chip.

use thiserror::Error;

/// Errors from model loading and chip extraction.
#[derive(Debug, Error)]
pub enum AlignError {
    /// The model data ended before a value could be read.
    #[error("shape predictor model is truncated: needed {what} at byte {offset}")]
    Truncated { offset: usize, what: &'static str },
    /// The model data is not a valid dlib `shape_predictor`.
    #[error("shape predictor model is malformed at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    /// The model data is valid but its contents are inconsistent.
    #[error("shape predictor model is inconsistent: {0}")]
    Inconsistent(String),
    /// The pixel buffer does not hold `width * height` RGB pixels.
    #[error("image buffer holds {actual} bytes, {width}x{height} RGB needs {expected}")]
    ImageSize {
        width: usize,
        height: usize,
        expected: usize,
        actual: usize,
    },
    /// Chip alignment is defined for the 5-point model only.
    #[error("face chip needs exactly 5 landmarks, got {0}")]
    LandmarkCount(usize),
    /// Size zero, a non-finite or negative padding, or non-finite landmarks.
    #[error("invalid face chip request: {0}")]
    InvalidChip(String),
}

/// Packed RGB24 image, rows top to bottom, no padding.
#[derive(Clone, Copy, Debug)]
pub struct RgbView<'a> {
    pub width: usize,
    pub height: usize,
    pub data: &'a [u8],
}

impl<'a> RgbView<'a> {
    /// Wraps `data`, checking that it holds exactly `width * height` pixels.
    pub fn new(width: usize, height: usize, data: &'a [u8]) -> Result<Self, AlignError> {
        let view = Self {
            width,
            height,
            data,
        };
        view.check()?;
        Ok(view)
    }

    fn check(&self) -> Result<(), AlignError> {
        let expected = self
            .width
            .checked_mul(self.height)
            .and_then(|n| n.checked_mul(3));
        match expected {
            Some(expected) if expected == self.data.len() => Ok(()),
            _ => Err(AlignError::ImageSize {
                width: self.width,
                height: self.height,
                expected: expected.unwrap_or(usize::MAX),
                actual: self.data.len(),
            }),
        }
    }

    /// Gray value of one pixel the way dlib converts `rgb_pixel` to
    /// `unsigned char`: the truncated mean of the three channels. Pixels the
    /// buffer does not hold read as 0, like pixels outside the image.
    fn intensity(&self, x: usize, y: usize) -> f32 {
        let start = y
            .checked_mul(self.width)
            .and_then(|i| i.checked_add(x))
            .and_then(|i| i.checked_mul(3));
        match start.and_then(|i| self.data.get(i..i.checked_add(3)?)) {
            Some(p) => ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as f32,
            None => 0.0,
        }
    }
}

/// dlib-style rectangle with INCLUSIVE right/bottom.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub left: i64,
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
}

/// One split node: go left when `feature[idx1] - feature[idx2] > thresh`.
#[derive(Clone, Debug)]
struct Split {
    idx1: usize,
    idx2: usize,
    thresh: f32,
}

/// A complete binary regression tree stored breadth first, as dlib does.
#[derive(Clone, Debug)]
struct Tree {
    splits: Vec<Split>,
    /// Shape increments, one per leaf, each `leaf_len` (= `2 * num_parts`)
    /// long, stored back to back: one allocation per tree keeps the 7500
    /// leaf lookups per face cache friendly.
    leaves: Vec<f32>,
    leaf_len: usize,
}

impl Tree {
    fn leaf(&self, features: &[f32]) -> &[f32] {
        let mut i = 0;
        while let Some(s) = self.splits.get(i) {
            // Features are whole numbers 0..=255, so this f32 difference is exact.
            i = if features[s.idx1] - features[s.idx2] > s.thresh {
                2 * i + 1
            } else {
                2 * i + 2
            };
        }
        // Validated at load time: every reachable leaf index exists.
        let start = (i - self.splits.len()) * self.leaf_len;
        &self.leaves[start..start + self.leaf_len]
    }
}

/// One cascade level: the pixels it samples and the trees it evaluates.
#[derive(Clone, Debug)]
struct Cascade {
    trees: Vec<Tree>,
    /// For each feature pixel, the landmark it is anchored to...
    anchors: Vec<usize>,
    /// ...and its offset from that landmark in the mean (initial) shape.
    deltas: Vec<[f32; 2]>,
}

/// dlib's ensemble-of-regression-trees landmark model (Kazemi & Sullivan).
#[derive(Clone, Debug)]
pub struct ShapePredictor {
    /// Mean shape in rectangle-normalized coordinates, `[x0, y0, x1, y1, ...]`.
    initial_shape: Vec<f32>,
    cascades: Vec<Cascade>,
}

impl ShapePredictor {
    /// Parses a dlib-serialized `shape_predictor` (the `.dat` file).
    ///
    /// Every count and index is checked against the data, so truncated or
    /// corrupt files give an error instead of a panic or a huge allocation.
    pub fn from_bytes(data: &[u8]) -> Result<Self, AlignError> {
        let mut r = Reader { data, pos: 0 };
        let version = r.signed(4, "version")?;
        if version != 1 {
            return Err(AlignError::Malformed {
                offset: 0,
                reason: format!("unsupported shape_predictor version {version}, expected 1"),
            });
        }
        let initial_shape = r.column_vector("initial shape")?;

        let n = r.len("forest count")?;
        let mut forests = Vec::with_capacity(n);
        for _ in 0..n {
            let n = r.len("tree count")?;
            let mut trees = Vec::with_capacity(n);
            for _ in 0..n {
                let n = r.len("split count")?;
                let mut splits = Vec::with_capacity(n);
                for _ in 0..n {
                    splits.push(Split {
                        idx1: r.index("split index")?,
                        idx2: r.index("split index")?,
                        thresh: r.float("split threshold")?,
                    });
                }
                let n = r.len("leaf count")?;
                let mut leaves = Vec::new();
                let mut leaf_len = 0;
                for k in 0..n {
                    let leaf = r.column_vector("leaf value")?;
                    if k == 0 {
                        leaf_len = leaf.len();
                        leaves.reserve(n * leaf_len);
                    } else if leaf.len() != leaf_len {
                        return Err(AlignError::Inconsistent(
                            "leaf values differ in length".into(),
                        ));
                    }
                    leaves.extend(leaf);
                }
                trees.push(Tree {
                    splits,
                    leaves,
                    leaf_len,
                });
            }
            forests.push(trees);
        }

        let n = r.len("anchor list count")?;
        let mut anchors = Vec::with_capacity(n);
        for _ in 0..n {
            let n = r.len("anchor count")?;
            let mut list = Vec::with_capacity(n);
            for _ in 0..n {
                list.push(r.index("anchor index")?);
            }
            anchors.push(list);
        }

        let n = r.len("delta list count")?;
        let mut deltas = Vec::with_capacity(n);
        for _ in 0..n {
            let n = r.len("delta count")?;
            let mut list = Vec::with_capacity(n);
            for _ in 0..n {
                list.push([r.float("delta x")?, r.float("delta y")?]);
            }
            deltas.push(list);
        }

        if anchors.len() != forests.len() || deltas.len() != forests.len() {
            return Err(AlignError::Inconsistent(format!(
                "{} cascades but {} anchor lists and {} delta lists",
                forests.len(),
                anchors.len(),
                deltas.len()
            )));
        }
        // Bytes after the model are ignored, as dlib's stream reader does.
        let cascades = forests
            .into_iter()
            .zip(anchors)
            .zip(deltas)
            .map(|((trees, anchors), deltas)| Cascade {
                trees,
                anchors,
                deltas,
            })
            .collect();
        let predictor = Self {
            initial_shape,
            cascades,
        };
        predictor.validate()?;
        Ok(predictor)
    }

    /// Checks every index the prediction loop will use, so `predict` can't
    /// panic on a corrupt but well-formed file.
    fn validate(&self) -> Result<(), AlignError> {
        let bad = |m: String| Err(AlignError::Inconsistent(m));
        let len = self.initial_shape.len();
        if len == 0 || !len.is_multiple_of(2) {
            return bad(format!(
                "initial shape has {len} values, expected a positive even count"
            ));
        }
        let parts = len / 2;
        for (c, cascade) in self.cascades.iter().enumerate() {
            let features = cascade.deltas.len();
            if cascade.anchors.len() != features {
                return bad(format!(
                    "cascade {c}: {} anchors but {features} deltas",
                    cascade.anchors.len()
                ));
            }
            if let Some(a) = cascade.anchors.iter().find(|&&a| a >= parts) {
                return bad(format!("cascade {c}: anchor {a} >= {parts} parts"));
            }
            for (t, tree) in cascade.trees.iter().enumerate() {
                if tree.leaf_len != len {
                    return bad(format!(
                        "cascade {c} tree {t}: leaf size differs from shape size"
                    ));
                }
                let leaves = tree.leaves.len() / len;
                if leaves != tree.splits.len() + 1 || !leaves.is_power_of_two() {
                    return bad(format!(
                        "cascade {c} tree {t}: {} splits and {leaves} leaves is not a full tree",
                        tree.splits.len()
                    ));
                }
                if tree
                    .splits
                    .iter()
                    .any(|s| s.idx1 >= features || s.idx2 >= features)
                {
                    return bad(format!(
                        "cascade {c} tree {t}: split feature index out of range"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Number of landmarks the model produces (5 for the bundled model).
    pub fn num_parts(&self) -> usize {
        self.initial_shape.len() / 2
    }

    /// Runs the cascade inside `rect` and returns the landmarks in image
    /// pixels, rounded to whole pixels as dlib does (`floor(v + 0.5)`).
    ///
    /// `rect` may extend outside the image: pixels outside read as 0, exactly
    /// like dlib. A view whose buffer is shorter than `width * height * 3`
    /// reads missing pixels as 0 instead of panicking.
    pub fn predict(&self, img: &RgbView, rect: Rect) -> Vec<(f64, f64)> {
        let to_img = RectTransform::new(rect);
        let mut shape = self.initial_shape.clone();
        let mut features = Vec::new();
        for cascade in &self.cascades {
            // How the current estimate is rotated/scaled relative to the mean
            // shape: feature pixels are defined relative to the mean shape and
            // must follow the face. dlib computes it in f64 and casts to f32.
            let m = similarity_transform(&pairs(&self.initial_shape), &pairs(&shape)).m;
            let m = m.map(|row| row.map(|v| v as f32));
            features.clear();
            features.extend(cascade.anchors.iter().zip(&cascade.deltas).map(|(&a, d)| {
                // All f32, in dlib's order: (m * delta) + anchor.
                let x = (m[0][0] * d[0] + m[0][1] * d[1]) + shape[2 * a];
                let y = (m[1][0] * d[0] + m[1][1] * d[1]) + shape[2 * a + 1];
                let (px, py) = to_img.apply_rounded(x, y);
                if px >= 0
                    && py >= 0
                    && (px as u64) < img.width as u64
                    && (py as u64) < img.height as u64
                {
                    img.intensity(px as usize, py as usize)
                } else {
                    0.0
                }
            }));
            for tree in &cascade.trees {
                for (s, d) in shape.iter_mut().zip(tree.leaf(&features)) {
                    *s += d;
                }
            }
        }
        pairs(&shape)
            .into_iter()
            .map(|(x, y)| {
                let (px, py) = to_img.apply_rounded(x as f32, y as f32);
                (px as f64, py as f64)
            })
            .collect()
    }
}

/// Splits a flat `[x0, y0, x1, y1, ...]` shape into f64 points.
fn pairs(shape: &[f32]) -> Vec<(f64, f64)> {
    shape
        .chunks_exact(2)
        .map(|p| (f64::from(p[0]), f64::from(p[1])))
        .collect()
}

/// dlib's `unnormalizing_tform`: maps (0,0) to the rectangle's top-left and
/// (1,1) to its bottom-right (inclusive) corner. dlib fits it with a generic
/// affine solver; the exact solution is this scale-and-offset.
struct RectTransform {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl RectTransform {
    fn new(r: Rect) -> Self {
        // dlib passes the corners through `vector<float,2>` first; this only
        // matters for coordinates beyond 2^24, but keeps huge inputs identical
        // (and avoids i64 overflow in `right - left`).
        let f = |v: i64| f64::from(v as f32);
        Self {
            left: f(r.left),
            top: f(r.top),
            width: f(r.right) - f(r.left),
            height: f(r.bottom) - f(r.top),
        }
    }

    /// Maps a normalized point to the nearest whole pixel (dlib's
    /// `point(vector<double,2>)` conversion rounds with `floor(v + 0.5)`).
    fn apply_rounded(&self, x: f32, y: f32) -> (i64, i64) {
        let px = self.width * f64::from(x) + self.left;
        let py = self.height * f64::from(y) + self.top;
        (round_half_up(px), round_half_up(py))
    }
}

fn round_half_up(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// A 2-D similarity (or affine) transform `p -> m * p + b`.
#[derive(Clone, Copy, Debug)]
struct Affine {
    m: [[f64; 2]; 2],
    b: [f64; 2],
}

impl Affine {
    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.m[0][0] * x + self.m[0][1] * y + self.b[0],
            self.m[1][0] * x + self.m[1][1] * y + self.b[1],
        )
    }
}

/// Least-squares similarity transform (rotation, uniform scale, translation)
/// taking `from` onto `to`: Umeyama's method as dlib's
/// `find_similarity_transform` uses it. In 2-D the SVD in Umeyama's formulas
/// collapses to a closed form: with `cov` the cross-covariance, the scaled
/// rotation is `[[p, -q], [q, p]] / var(from)` where `p = cov00 + cov11` and
/// `q = cov10 - cov01`. The reflection handling of the general method is
/// implied, since this form is always a proper rotation. dlib reaches the
/// same numbers through a general SVD; on the parity corpus (tens of millions
/// of chip values) the results agree to the last bit.
fn similarity_transform(from: &[(f64, f64)], to: &[(f64, f64)]) -> Affine {
    let n = from.len() as f64;
    let mean = |pts: &[(f64, f64)]| {
        let (sx, sy) = pts
            .iter()
            .fold((0.0, 0.0), |(ax, ay), &(x, y)| (ax + x, ay + y));
        (sx / n, sy / n)
    };
    let (mfx, mfy) = mean(from);
    let (mtx, mty) = mean(to);
    let mut var_from = 0.0;
    let mut cov = [[0.0f64; 2]; 2];
    for (&(fx, fy), &(tx, ty)) in from.iter().zip(to) {
        let (fx, fy, tx, ty) = (fx - mfx, fy - mfy, tx - mtx, ty - mty);
        var_from += fx * fx + fy * fy;
        cov[0][0] += tx * fx;
        cov[0][1] += tx * fy;
        cov[1][0] += ty * fx;
        cov[1][1] += ty * fy;
    }
    var_from /= n;
    for row in &mut cov {
        for v in row {
            *v /= n;
        }
    }
    let p = cov[0][0] + cov[1][1];
    let q = cov[1][0] - cov[0][1];
    // `from` is always the model's mean shape or the chip template here, so
    // var_from > 0; the guard only keeps a degenerate call finite.
    let inv = if var_from != 0.0 { 1.0 / var_from } else { 1.0 };
    let m = [[inv * p, -(inv * q)], [inv * q, inv * p]];
    let b = [
        mtx - (m[0][0] * mfx + m[0][1] * mfy),
        mty - (m[1][0] * mfx + m[1][1] * mfy),
    ];
    Affine { m, b }
}

// ---------------------------------------------------------------------------
// Face chip extraction
// ---------------------------------------------------------------------------

/// dlib's reference positions of the 5 landmarks (eye corners and nose base)
/// in a unit face square, in the 5-point model's part order.
const FACE_TEMPLATE_5: [(f64, f64); 5] = [
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
];

/// dlib's `drectangle`: real-valued, with inclusive right/bottom, so width is
/// `right - left + 1`.
#[derive(Clone, Copy, Debug)]
struct DRect {
    l: f64,
    t: f64,
    r: f64,
    b: f64,
}

impl DRect {
    fn is_empty(&self) -> bool {
        self.t > self.b || self.l > self.r
    }

    fn area(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            (self.r - self.l + 1.0) * (self.b - self.t + 1.0)
        }
    }

    fn center(&self) -> (f64, f64) {
        ((self.l + self.r) / 2.0, (self.t + self.b) / 2.0)
    }

    /// One `pyramid_down<2>` step in coordinates: `p / 2 - (1.25, 0.75)`.
    fn down(&self) -> DRect {
        DRect {
            l: self.l / 2.0 - 1.25,
            t: self.t / 2.0 - 0.75,
            r: self.r / 2.0 - 1.25,
            b: self.b / 2.0 - 0.75,
        }
    }

    /// Corners rotated by `angle` around the center: tl, tr, bl, br.
    fn rotated_corners(&self, angle: f64) -> [(f64, f64); 4] {
        let (cx, cy) = self.center();
        let (s, c) = (angle.sin(), angle.cos());
        [
            (self.l, self.t),
            (self.r, self.t),
            (self.l, self.b),
            (self.r, self.b),
        ]
        .map(|(x, y)| {
            let (dx, dy) = (x - cx, y - cy);
            (c * dx - s * dy + cx, s * dx + c * dy + cy)
        })
    }
}

/// Where and how to cut a chip: dlib's `chip_details` for a square chip.
#[derive(Clone, Copy, Debug)]
struct ChipDetails {
    rect: DRect,
    angle: f64,
    size: usize,
}

/// dlib's `get_face_chip_details` for 5 landmarks: fit the padded template
/// (scaled to the chip size) onto the landmarks, then express the fit as a
/// rotated square in the image.
fn face_chip_details(landmarks: &[(f64, f64)], size: usize, padding: f64) -> ChipDetails {
    let s = size as f64;
    let template: Vec<(f64, f64)> = FACE_TEMPLATE_5
        .iter()
        .map(|&(x, y)| {
            (
                (padding + x) / (2.0 * padding + 1.0) * s,
                (padding + y) / (2.0 * padding + 1.0) * s,
            )
        })
        .collect();
    let tform = similarity_transform(&template, landmarks);
    let (px, py) = (tform.m[0][0], tform.m[1][0]);
    let angle = py.atan2(px);
    let scale = (px * px + py * py).sqrt();
    let (cx, cy) = tform.apply(s / 2.0, s / 2.0);
    // dlib's centered_drect: an inclusive rectangle `width` wide spans width-1.
    let half = (s * scale - 1.0) / 2.0;
    ChipDetails {
        rect: DRect {
            l: cx - half,
            t: cy - half,
            r: cx + half,
            b: cy + half,
        },
        angle,
        size,
    }
}

/// An owned RGB image: one pyramid level.
struct Level {
    data: Vec<u8>,
    width: usize,
    height: usize,
}

impl Level {
    fn grid(&self) -> Grid<'_> {
        Grid {
            data: &self.data,
            stride: self.width * 3,
            width: self.width,
            height: self.height,
        }
    }
}

/// An RGB pixel grid: a window into a caller's image or a pyramid level.
struct Grid<'a> {
    data: &'a [u8],
    /// Bytes from one row to the next.
    stride: usize,
    width: usize,
    height: usize,
}

impl Grid<'_> {
    const EMPTY: Grid<'static> = Grid {
        data: &[],
        stride: 0,
        width: 0,
        height: 0,
    };

    fn px(&self, x: usize, y: usize) -> &[u8] {
        let i = y * self.stride + x * 3;
        &self.data[i..i + 3]
    }

    /// dlib's `pyramid_down<2>` for RGB: a separable [1 4 6 4 1] filter with
    /// 2x decimation, kept in integers (sum of 16x16 weights, divided by 256
    /// with truncation). The output is `(n - 3) / 2` in each direction, and
    /// empty when the input is 8 pixels or less in either direction.
    fn pyramid_down(&self) -> Level {
        if self.width <= 8 || self.height <= 8 {
            return Level {
                data: Vec::new(),
                width: 0,
                height: 0,
            };
        }
        let out_w = (self.width - 3) / 2;
        let out_h = (self.height - 3) / 2;
        // Horizontal pass on every input row, keeping every other column.
        let mut rows = vec![0u16; self.height * out_w * 3];
        for y in 0..self.height {
            for c in 0..out_w {
                for ch in 0..3 {
                    let p = |k: usize| u16::from(self.px(2 * c + k, y)[ch]);
                    rows[(y * out_w + c) * 3 + ch] = p(0) + 4 * p(1) + 6 * p(2) + 4 * p(3) + p(4);
                }
            }
        }
        // Vertical pass centred on input rows 2, 4, 6, ...
        let mut out = vec![0u8; out_h * out_w * 3];
        for dr in 0..out_h {
            let r = 2 + 2 * dr;
            for i in 0..out_w * 3 {
                let t = |k: usize| u32::from(rows[(r + k - 2) * out_w * 3 + i]);
                let sum = t(0) + 4 * t(1) + 6 * t(2) + 4 * t(3) + t(4);
                out[dr * out_w * 3 + i] = (sum / 256) as u8;
            }
        }
        Level {
            data: out,
            width: out_w,
            height: out_h,
        }
    }

    /// dlib's `interpolate_bilinear`: `None` unless all four neighbours are
    /// inside; the blend is computed in f64 and truncated toward zero.
    fn bilinear(&self, x: f64, y: f64) -> Option<[u8; 3]> {
        let left = x.floor();
        let top = y.floor();
        if !(left >= 0.0
            && top >= 0.0
            && left + 1.0 < self.width as f64
            && top + 1.0 < self.height as f64)
        {
            return None;
        }
        let (l, t) = (left as usize, top as usize);
        let lr = x - left;
        let tb = y - top;
        let (tl, tr, bl, br) = (
            self.px(l, t),
            self.px(l + 1, t),
            self.px(l, t + 1),
            self.px(l + 1, t + 1),
        );
        let mut out = [0u8; 3];
        for ch in 0..3 {
            let v = (1.0 - tb) * ((1.0 - lr) * f64::from(tl[ch]) + lr * f64::from(tr[ch]))
                + tb * ((1.0 - lr) * f64::from(bl[ch]) + lr * f64::from(br[ch]));
            out[ch] = v as u8;
        }
        Some(out)
    }
}

/// Aligned face chip exactly as `dlib.get_face_chip_details(shape, size, padding)`
/// followed by `dlib.extract_image_chip`: `size * size * 3` RGB bytes.
///
/// `landmarks` are the 5 points from [`ShapePredictor::predict`] (dlib works
/// on whole-pixel points; fractional input is used as given).
pub fn face_chip(
    img: &RgbView,
    landmarks: &[(f64, f64)],
    size: usize,
    padding: f64,
) -> Result<Vec<u8>, AlignError> {
    img.check()?;
    if landmarks.len() != 5 {
        return Err(AlignError::LandmarkCount(landmarks.len()));
    }
    if size == 0 {
        return Err(AlignError::InvalidChip("size must be positive".into()));
    }
    if !(padding >= 0.0 && padding.is_finite()) {
        return Err(AlignError::InvalidChip(format!(
            "padding {padding} must be finite and >= 0"
        )));
    }
    if landmarks
        .iter()
        .any(|&(x, y)| !x.is_finite() || !y.is_finite())
    {
        return Err(AlignError::InvalidChip("landmarks must be finite".into()));
    }
    if size
        .checked_mul(size)
        .and_then(|n| n.checked_mul(3))
        .is_none()
    {
        return Err(AlignError::InvalidChip(format!("size {size} is too large")));
    }
    let details = face_chip_details(landmarks, size, padding);
    Ok(extract_chip(img, &details))
}

/// Bound on pyramid halvings. dlib loops until the area fits, which never
/// ends for an infinite rectangle (absurd landmarks). After 64 halvings every
/// image is empty, so stopping there still gives dlib's all-black result.
const MAX_PYRAMID_LEVELS: usize = 64;

/// dlib's `extract_image_chip` with bilinear interpolation, for one chip.
fn extract_chip(img: &RgbView, d: &ChipDetails) -> Vec<u8> {
    let size = d.size;
    let chip_area = (size * size) as f64;
    let mut out = vec![0u8; size * size * 3];

    // An unrotated chip of exactly the rectangle's size is a plain copy.
    if d.angle == 0.0
        && d.rect.r - d.rect.l + 1.0 == size as f64
        && d.rect.b - d.rect.t + 1.0 == size as f64
    {
        copy_rect(img, d, &mut out);
        return out;
    }

    // Sampling a much smaller chip straight from the image would alias, so
    // dlib first halves the image with pyramid_down<2> until one more halving
    // would make the source area no larger than the chip. `grow` is the
    // margin (in image pixels) that the filter needs around the crop.
    let mut grow = 2.0;
    let mut r = d.rect.down();
    for _ in 0..MAX_PYRAMID_LEVELS {
        if r.area() <= chip_area {
            break;
        }
        r = r.down();
        grow = grow * 2.0 + 2.0;
    }

    // Only the (rotated) chip area plus that margin is filtered: crop first.
    let (mut min_x, mut min_y) = (f64::INFINITY, f64::INFINITY);
    let (mut max_x, mut max_y) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (x, y) in d.rect.rotated_corners(d.angle) {
        (min_x, min_y) = (min_x.min(x), min_y.min(y));
        (max_x, max_y) = (max_x.max(x), max_y.max(y));
    }
    // Clipped to the image, then stored as an integer rectangle the way dlib
    // converts a drectangle (lround: half away from zero, like f64::round).
    let l = (min_x - grow).max(0.0).round();
    let t = (min_y - grow).max(0.0).round();
    let r = (max_x + grow).min(img.width as f64 - 1.0).round();
    let b = (max_y + grow).min(img.height as f64 - 1.0).round();
    let (crop, ox, oy) = if l <= r && t <= b && img.width > 0 && img.height > 0 {
        let (l, t, r, b) = (l as usize, t as usize, r as usize, b as usize);
        let grid = Grid {
            data: &img.data[(t * img.width + l) * 3..],
            stride: img.width * 3,
            width: r - l + 1,
            height: b - t + 1,
        };
        (grid, l as f64, t as f64)
    } else {
        // Nothing of the image is near the chip: dlib crops to an empty
        // image at the origin and every chip pixel becomes background.
        (Grid::EMPTY, 0.0, 0.0)
    };

    // Pick the pyramid level (same criterion as above, now in crop
    // coordinates) and bring the chip rectangle into that level's coordinates.
    let mut rect = DRect {
        l: d.rect.l - ox,
        t: d.rect.t - oy,
        r: d.rect.r - ox,
        b: d.rect.b - oy,
    };
    let mut level: Option<Level> = None;
    for _ in 0..MAX_PYRAMID_LEVELS {
        if rect.down().area() <= chip_area {
            break;
        }
        rect = rect.down();
        level = Some(match &level {
            None => crop.pyramid_down(),
            Some(prev) => prev.grid().pyramid_down(),
        });
    }
    let src = level.as_ref().map_or(crop, Level::grid);

    // Affine map from chip pixel (c, r) to source pixel: chip corners
    // (0,0), (size-1,0), (0,size-1) go to the rotated rectangle corners.
    let [tl, tr, bl_, _] = rect.rotated_corners(d.angle);
    let map = if size > 1 {
        let n = (size - 1) as f64;
        Affine {
            m: [
                [(tr.0 - tl.0) / n, (bl_.0 - tl.0) / n],
                [(tr.1 - tl.1) / n, (bl_.1 - tl.1) / n],
            ],
            b: [tl.0, tl.1],
        }
    } else {
        // All three chip corners coincide; the least-squares fit is their mean.
        Affine {
            m: [[0.0; 2]; 2],
            b: [(tl.0 + tr.0 + bl_.0) / 3.0, (tl.1 + tr.1 + bl_.1) / 3.0],
        }
    };
    for r in 0..size {
        for c in 0..size {
            let (x, y) = map.apply(c as f64, r as f64);
            if let Some(p) = src.bilinear(x, y) {
                let i = (r * size + c) * 3;
                out[i..i + 3].copy_from_slice(&p);
            }
        }
    }
    out
}

/// The no-resampling path: copy the (integer-rounded) rectangle, zero outside.
fn copy_rect(img: &RgbView, d: &ChipDetails, out: &mut [u8]) {
    let (l, t) = (d.rect.l.round() as i64, d.rect.t.round() as i64);
    for r in 0..d.size {
        for c in 0..d.size {
            let (x, y) = (l + c as i64, t + r as i64);
            if x >= 0 && y >= 0 && (x as usize) < img.width && (y as usize) < img.height {
                let s = (y as usize * img.width + x as usize) * 3;
                let o = (r * d.size + c) * 3;
                out[o..o + 3].copy_from_slice(&img.data[s..s + 3]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// dlib serialization reader
// ---------------------------------------------------------------------------

/// Reader for dlib's portable binary encoding: integers are a control byte
/// (low nibble = byte count, bit 7 = negative) followed by little-endian
/// magnitude bytes; floats are an integer mantissa and a 16-bit exponent.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self, what: &'static str) -> Result<u8, AlignError> {
        let b = *self.data.get(self.pos).ok_or(AlignError::Truncated {
            offset: self.pos,
            what,
        })?;
        self.pos += 1;
        Ok(b)
    }

    fn malformed(&self, at: usize, reason: String) -> AlignError {
        AlignError::Malformed { offset: at, reason }
    }

    /// Magnitude bytes after a control byte.
    fn magnitude(&mut self, n: usize, at: usize, what: &'static str) -> Result<u64, AlignError> {
        let bytes = self
            .data
            .get(self.pos..self.pos + n)
            .ok_or(AlignError::Truncated { offset: at, what })?;
        self.pos += n;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A signed integer of at most `max_bytes` bytes.
    fn signed(&mut self, max_bytes: usize, what: &'static str) -> Result<i64, AlignError> {
        let at = self.pos;
        let ctrl = self.byte(what)?;
        let n = usize::from(ctrl & 0x0f);
        if n == 0 || n > max_bytes {
            return Err(self.malformed(at, format!("bad integer size byte {ctrl:#04x} for {what}")));
        }
        let mag = self.magnitude(n, at, what)?;
        let v =
            i64::try_from(mag).map_err(|_| self.malformed(at, format!("{what} out of range")))?;
        Ok(if ctrl & 0x80 != 0 { -v } else { v })
    }

    /// An unsigned 64-bit integer (dlib `unsigned long`).
    fn unsigned(&mut self, what: &'static str) -> Result<u64, AlignError> {
        let at = self.pos;
        let ctrl = self.byte(what)?;
        // Bits 4..6 are reserved; a set sign bit is invalid for unsigned types.
        let n = usize::from(ctrl & 0x8f);
        if n == 0 || n > 8 {
            return Err(self.malformed(at, format!("bad integer size byte {ctrl:#04x} for {what}")));
        }
        self.magnitude(n, at, what)
    }

    /// An element count, bounded by the bytes left (every element takes at
    /// least one byte), so garbage can't trigger a huge allocation.
    fn len(&mut self, what: &'static str) -> Result<usize, AlignError> {
        let at = self.pos;
        let n = self.unsigned(what)?;
        let left = self.data.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= left => Ok(n),
            _ => Err(AlignError::Truncated { offset: at, what }),
        }
    }

    fn index(&mut self, what: &'static str) -> Result<usize, AlignError> {
        let at = self.pos;
        let v = self.unsigned(what)?;
        usize::try_from(v).map_err(|_| self.malformed(at, format!("{what} {v} too large")))
    }

    /// A float stored as `mantissa * 2^exponent` (dlib's `float_details`).
    fn float(&mut self, what: &'static str) -> Result<f32, AlignError> {
        let at = self.pos;
        let first = *self
            .data
            .get(self.pos)
            .ok_or(AlignError::Truncated { offset: at, what })?;
        if first & 0x70 != 0 {
            // Pre-2013 dlib wrote floats as ASCII text; no current model does.
            return Err(self.malformed(at, format!("legacy text-encoded float for {what}")));
        }
        let mantissa = self.signed(8, what)?;
        let exponent = self.signed(2, what)?;
        Ok(match exponent {
            32000 => f32::INFINITY,
            32001 => f32::NEG_INFINITY,
            32002 => f32::NAN,
            e => ldexp_f32(mantissa as f32, e),
        })
    }

    /// A dlib column vector `matrix<float,0,1>`: rows and columns (negated in
    /// the current format), then the values.
    fn column_vector(&mut self, what: &'static str) -> Result<Vec<f32>, AlignError> {
        let at = self.pos;
        let rows = self.signed(8, what)?.unsigned_abs();
        let cols = self.signed(8, what)?.unsigned_abs();
        if cols != 1 && rows != 0 {
            return Err(self.malformed(at, format!("{what} has {cols} columns, expected 1")));
        }
        let left = (self.data.len() - self.pos) as u64;
        if rows > left {
            return Err(AlignError::Truncated { offset: at, what });
        }
        (0..rows).map(|_| self.float(what)).collect()
    }
}

/// `x * 2^e` with a single rounding to f32, like C's `ldexpf`. `x` comes from
/// an i64 so it is below 2^64; splitting the power in two keeps both factors
/// exact normal f64 values.
fn ldexp_f32(x: f32, e: i64) -> f32 {
    let e = e.clamp(-1100, 1100) as i32;
    let pow2 = |k: i32| f64::from_bits(((1023 + k) as u64) << 52);
    (f64::from(x) * pow2(e / 2) * pow2(e - e / 2)) as f32
}
