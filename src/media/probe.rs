//! Opening a file, finding its video stream, and checking it against the limits before
//! any decoding starts.

use ff::media::Type as MediaType;
use ffmpeg_next as ff;

use super::MediaError;
use super::source::{MediaSource, Opened};
use crate::config::Limits;

/// What the sampler needs to know about a video before decoding it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Probe {
    pub container: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Seconds, from the container or stream header.
    pub duration: f64,
    /// Average frame rate, frames per second (0 when unknown).
    pub frame_rate: f64,
    /// Clockwise rotation a player applies, from the display matrix (0, 90, 180, 270).
    pub rotation: u32,
    pub size_bytes: u64,
}

/// Opens `source` and returns the input context, the video stream index and its probe.
pub(super) fn open(
    source: &MediaSource,
    limits: &Limits,
) -> Result<(Opened, usize, Probe), MediaError> {
    super::init();
    let shown = source.name().to_string();
    let size = source.len().map_err(|source| match source.kind() {
        std::io::ErrorKind::InvalidInput => MediaError::NotMedia {
            path: shown.clone(),
            detail: source.to_string(),
        },
        _ => MediaError::Io {
            path: shown.clone(),
            source,
        },
    })?;
    if size == 0 {
        return Err(MediaError::Empty { path: shown });
    }
    if size > limits.max_file_size {
        return Err(MediaError::FileTooLarge {
            path: shown,
            size,
            limit: limits.max_file_size,
        });
    }
    let ictx = source.open().map_err(|detail| MediaError::NotMedia {
        path: shown.clone(),
        detail,
    })?;
    let Some(stream) = ictx.streams().best(MediaType::Video) else {
        let found: Vec<String> = ictx
            .streams()
            .map(|s| format!("{:?}", s.parameters().medium()).to_lowercase())
            .collect();
        let found = if found.is_empty() {
            "none".to_string()
        } else {
            found.join(", ")
        };
        return Err(MediaError::NoVideo { path: shown, found });
    };
    let params = stream.parameters();
    // SAFETY: `params` wraps a valid AVCodecParameters owned by the open stream.
    let (width, height) = unsafe {
        let p = &*params.as_ptr();
        (p.width.max(0) as u32, p.height.max(0) as u32)
    };
    if width == 0 || height == 0 {
        return Err(MediaError::Corrupt {
            path: shown,
            detail: "video stream has no picture size".into(),
        });
    }
    if width > limits.max_width || height > limits.max_height {
        return Err(MediaError::TooManyPixels {
            path: shown,
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    let tb = f64::from(stream.time_base());
    let duration = if stream.duration() > 0 {
        stream.duration() as f64 * tb
    } else if ictx.duration() > 0 {
        ictx.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    if duration > limits.max_duration {
        return Err(MediaError::TooLong {
            path: shown,
            duration,
            limit: limits.max_duration,
        });
    }
    let rate = stream.avg_frame_rate();
    let frame_rate = if rate.denominator() != 0 {
        f64::from(rate)
    } else {
        0.0
    };
    let probe = Probe {
        container: ictx.format().name().to_string(),
        codec: params.id().name().to_string(),
        width,
        height,
        duration,
        frame_rate,
        rotation: rotation(&stream),
        size_bytes: size,
    };
    let index = stream.index();
    Ok((ictx, index, probe))
}

/// Probes a video without decoding any frame.
pub fn probe(source: &MediaSource, limits: &Limits) -> Result<Probe, MediaError> {
    open(source, limits).map(|(_, _, p)| p)
}

/// Clockwise rotation a player would apply, from the stream's display matrix.
fn rotation(stream: &ff::format::stream::Stream) -> u32 {
    for side in stream.side_data() {
        if side.kind() != ff::codec::packet::side_data::Type::DisplayMatrix {
            continue;
        }
        let data = side.data();
        if data.len() < 36 {
            continue;
        }
        let m: Vec<i32> = data[..36]
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // SAFETY: `m` holds the nine 16.16 fixed-point entries FFmpeg expects.
        let ccw = unsafe { ff::ffi::av_display_rotation_get(m.as_ptr()) };
        if ccw.is_nan() {
            return 0;
        }
        // FFmpeg reports counter-clockwise degrees; players rotate the other way.
        let cw = (-ccw).round() as i64;
        return (cw.rem_euclid(360) as u32 + 45) / 90 * 90 % 360;
    }
    0
}
