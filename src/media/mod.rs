//! FFmpeg-backed media handling: probing a file and sampling frames from it.
//!
//! All of it is blocking CPU work; callers run it on a plain thread, never on an async
//! runtime.

mod avio;
mod probe;
mod sampler;
mod segmenter;
mod source;
mod still;
mod transcode;

pub use probe::{Probe, probe};
pub use sampler::{SampleReason, SampleStats, SampledFrame, Sampler};
pub use segmenter::{
    Piece, Segment, SegmentInfo, Segmented, StreamCount, count_packets, playlist, segment,
};
pub use source::{MediaSource, NoteFailures, OpenReader, ReadSeek};
pub use still::{Still, still};
pub use transcode::check_encoders;

/// Everything that can be wrong with a media input, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: empty file (0 bytes)")]
    Empty { path: String },
    #[error("{path}: file is {size} bytes, over the limit of {limit} bytes (limits.max_file_size)")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: not a video file FFmpeg can read ({detail})")]
    NotMedia { path: String, detail: String },
    #[error("{path}: no video stream (streams found: {found})")]
    NoVideo { path: String, found: String },
    #[error(
        "{path}: video is {width}x{height}, over the limit of {max_width}x{max_height} (limits.max_width/max_height)"
    )]
    TooManyPixels {
        path: String,
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error(
        "{path}: video lasts {duration:.1} s, over the limit of {limit:.1} s (limits.max_duration)"
    )]
    TooLong {
        path: String,
        duration: f64,
        limit: f64,
    },
    #[error("{path}: {count} {what}, over the limit of {limit} ({setting})")]
    OverLimit {
        path: String,
        what: &'static str,
        count: u64,
        limit: u64,
        setting: &'static str,
    },
    #[error("{path}: corrupt video: {detail}")]
    Corrupt { path: String, detail: String },
    #[error(
        "{path}: truncated or damaged: frames decode only up to {decoded_until:.2} s of {declared:.2} s"
    )]
    Truncated {
        path: String,
        decoded_until: f64,
        declared: f64,
    },
    #[error("{path}: cannot segment: {detail}")]
    Segment { path: String, detail: String },
    #[error(
        "{path}: HLS cannot carry {codec} (fMP4 segments carry H.264, HEVC, VP9 and AV1 video; AAC, MP3, AC-3, E-AC-3, Opus, FLAC and ALAC audio); server.transcode = \"h264\" or \"vp9\" re-encodes it"
    )]
    NotStreamable { path: String, codec: String },
    #[error("{path}: scan stopped: {reason}")]
    Stopped { path: String, reason: String },
}

impl MediaError {
    /// Reading failed (the store or the network): the same input may well work next
    /// time. Every other variant is about the input itself.
    pub fn is_transient(&self) -> bool {
        matches!(self, MediaError::Io { .. })
    }
}

/// FFmpeg's own logging would interleave with ours; errors are reported through
/// [`MediaError`] instead.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // init() only registers codecs in FFmpeg >= 4; it cannot fail there.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
    });
}
