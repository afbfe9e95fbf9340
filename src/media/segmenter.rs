//! Remuxing a video into fragmented MP4 (CMAF) segments of about N seconds, cut on
//! keyframes, without re-encoding, plus the HLS playlist that plays them.
//!
//! One MP4 muxer writes the whole video into memory (libavformat's dynamic buffer), never
//! to a file: the caller seals each piece before anything touches the disk, so no
//! plaintext is ever at rest. Its output is cut at top-level box boundaries: the init
//! segment (`ftyp` + `moov`: codecs and their parameters) and then one media segment
//! (`styp` + `moof` + `mdat`) per cut, each cut asked for (`frag_custom`) at the first
//! video keyframe after the target length. Decrypted and concatenated, init + segments
//! are one fragmented MP4 with the source's packets, bit for bit.
//!
//! Why fMP4 and not MPEG-TS: MPEG-TS has no mapping for VP9, AV1 or Opus (FFmpeg writes
//! them as opaque data streams that no player decodes, so such uploads would be lost),
//! while fMP4 carries every codec HLS players play (H.264, HEVC, VP9, AV1; AAC, MP3,
//! AC-3, E-AC-3, Opus, FLAC, ALAC). What it cannot carry as HLS (VP8, Theora, Vorbis,
//! MPEG-4 Part 2, MJPEG, ...) is refused with [`MediaError::NotStreamable`] instead of
//! being stored wrong.

use std::ffi::CString;
use std::ptr;

use ff::codec::packet::Mut as _;
use ff::ffi;
use ff::media::Type as MediaType;
use ffmpeg_next as ff;

use super::transcode::Reencoder;
use super::{MediaError, MediaSource};
use crate::config::{Limits, Transcode};

/// One piece of the segmented video, in memory, in the order it is produced.
#[derive(Debug)]
pub enum Piece {
    /// The init segment (`ftyp` + `moov`), first.
    Init(Vec<u8>),
    Media(Segment),
}

/// One finished media segment.
#[derive(Debug)]
pub struct Segment {
    pub index: usize,
    /// Start time, seconds.
    pub start: f64,
    /// Duration, seconds (until the next segment's first keyframe, or the end).
    pub duration: f64,
    /// `styp` + `moof` + `mdat` bytes.
    pub data: Vec<u8>,
}

/// Timing of a segment, for the playlist and the manifest.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentInfo {
    pub index: usize,
    pub start: f64,
    pub duration: f64,
    pub bytes: u64,
    /// Cut mid-GOP (`limits.max_segment_bytes`): starts with a frame that depends on the
    /// segment before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mid_gop: bool,
}

/// What the segmenter wrote: the segments, and per stream (video first) its codec and
/// how many packets went in, for the read-back check.
#[derive(Clone, Debug, PartialEq)]
pub struct Segmented {
    pub segments: Vec<SegmentInfo>,
    pub streams: Vec<StreamCount>,
    /// Streams of the source a viewer would see or hear that the rendition leaves out
    /// (further audio tracks, subtitles, further video), e.g. `audio 2 (aac)`.
    pub left_out: Vec<String>,
    /// Streams re-encoded (`server.transcode`), e.g. `vp8 → h264`.
    pub transcoded: Vec<String>,
}

/// A stream's codec (FFmpeg's name) and its number of packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCount {
    pub codec: String,
    pub packets: u64,
}

/// Every stream of `source` with its packet count, read without decoding: what a
/// stored rendition is checked against.
pub fn count_packets(
    source: &MediaSource,
    limits: &Limits,
) -> Result<Vec<StreamCount>, MediaError> {
    let (mut ictx, _, _) = super::probe::open(source, limits)?;
    let mut streams: Vec<StreamCount> = ictx
        .streams()
        .map(|s| StreamCount {
            codec: codec_name(s.parameters().id().into()),
            packets: 0,
        })
        .collect();
    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => {
                return Err(MediaError::Corrupt {
                    path: source.name().to_string(),
                    detail: format!("unreadable data: {e}"),
                });
            }
        }
        if let Some(s) = streams.get_mut(packet.stream()) {
            s.packets += 1;
        }
    }
    Ok(streams)
}

/// Video codecs HLS players take in fMP4.
const STREAMABLE_VIDEO: &[ffi::AVCodecID] = &[
    ffi::AVCodecID::AV_CODEC_ID_H264,
    ffi::AVCodecID::AV_CODEC_ID_HEVC,
    ffi::AVCodecID::AV_CODEC_ID_VP9,
    ffi::AVCodecID::AV_CODEC_ID_AV1,
];

/// Audio codecs HLS players take in fMP4.
const STREAMABLE_AUDIO: &[ffi::AVCodecID] = &[
    ffi::AVCodecID::AV_CODEC_ID_AAC,
    ffi::AVCodecID::AV_CODEC_ID_MP3,
    ffi::AVCodecID::AV_CODEC_ID_AC3,
    ffi::AVCodecID::AV_CODEC_ID_EAC3,
    ffi::AVCodecID::AV_CODEC_ID_OPUS,
    ffi::AVCodecID::AV_CODEC_ID_FLAC,
    ffi::AVCodecID::AV_CODEC_ID_ALAC,
];

/// FFmpeg's short name of a codec, for messages.
fn codec_name(id: ffi::AVCodecID) -> String {
    // SAFETY: avcodec_get_name returns a static string for any id.
    unsafe { std::ffi::CStr::from_ptr(ffi::avcodec_get_name(id)) }
        .to_string_lossy()
        .into_owned()
}

/// Splits `source` into an init segment and media segments of at least `target` seconds
/// (cut at the first video keyframe after that), handing each to `sink` as soon as it is
/// complete. Every packet of the video and the best audio stream is kept, in order; a
/// stream HLS cannot carry is re-encoded if `transcode` says so, and refused otherwise.
pub fn segment(
    source: &MediaSource,
    target: f64,
    limits: &Limits,
    transcode: Transcode,
    sink: impl FnMut(Piece) -> Result<(), String>,
) -> Result<Segmented, MediaError> {
    let shown = source.name().to_string();
    let fail = |detail: String| MediaError::Segment {
        path: shown.clone(),
        detail,
    };
    let (mut ictx, video, _) = super::probe::open(source, limits)?;
    let audio = ictx.streams().best(MediaType::Audio).map(|s| s.index());
    let inputs: Vec<usize> = std::iter::once(video).chain(audio).collect();
    // Data tracks (timecode, a phone's metadata) and cover pictures are not content.
    let left_out: Vec<String> = ictx
        .streams()
        .filter(|s| !inputs.contains(&s.index()))
        .filter(|s| {
            let medium = s.parameters().medium();
            let cover = s
                .disposition()
                .contains(ff::format::stream::Disposition::ATTACHED_PIC);
            matches!(medium, MediaType::Audio | MediaType::Subtitle)
                || (medium == MediaType::Video && !cover)
        })
        .map(|s| {
            let codec = codec_name(s.parameters().id().into());
            format!("{:?} {} ({codec})", s.parameters().medium(), s.index()).to_lowercase()
        })
        .collect();
    // One lane per output stream: packets copied as they are, or re-encoded.
    let mut lanes: Vec<Lane> = Vec::new();
    let mut outputs: Vec<Output> = Vec::new();
    let mut streams: Vec<StreamCount> = Vec::new();
    let mut transcoded: Vec<String> = Vec::new();
    for (slot, &i) in inputs.iter().enumerate() {
        let stream = ictx
            .stream(i)
            .ok_or_else(|| fail("stream vanished".into()))?;
        let id: ffi::AVCodecID = stream.parameters().id().into();
        let allowed = if slot == 0 {
            STREAMABLE_VIDEO
        } else {
            STREAMABLE_AUDIO
        };
        // SAFETY: the stream lives as long as `ictx`, which outlives the muxer.
        let side_data_of = unsafe { stream.as_ptr() };
        if allowed.contains(&id) {
            // AAC from MPEG-TS (or a raw .aac) comes as ADTS frames, each with a header
            // and no codec config; MP4 wants raw frames and the config once.
            // SAFETY: the stream and its parameters live as long as `ictx`.
            let no_config = unsafe { (*(*side_data_of).codecpar).extradata_size == 0 };
            let adts = id == ffi::AVCodecID::AV_CODEC_ID_AAC && no_config;
            lanes.push(Lane::Copy {
                time_base: stream.time_base(),
                adts,
            });
            outputs.push(Output {
                parameters: stream.parameters(),
                time_base: stream.time_base(),
                side_data_of,
            });
            streams.push(StreamCount {
                codec: codec_name(id),
                packets: 0,
            });
        } else if transcode != Transcode::Off {
            let reencoder = Reencoder::new(&stream, transcode, target)
                .map_err(|e| fail(format!("re-encoding {}: {e}", codec_name(id))))?;
            transcoded.push(format!("{} → {}", codec_name(id), reencoder.codec()));
            outputs.push(Output {
                parameters: reencoder.parameters(),
                time_base: reencoder.time_base(),
                side_data_of,
            });
            streams.push(StreamCount {
                codec: reencoder.codec().to_string(),
                packets: 0,
            });
            lanes.push(Lane::Encode(Box::new(reencoder)));
        } else {
            return Err(MediaError::NotStreamable {
                path: shown.clone(),
                codec: codec_name(id),
            });
        }
    }

    let mut writer = Writer {
        muxer: FragMuxer::new(&outputs).map_err(&fail)?,
        target,
        infos: Vec::new(),
        init_sent: false,
        current: None,
        mid_gop: false,
        bytes: 0,
        max_bytes: limits.max_segment_bytes,
        last_end: 0.0,
        held: (0..streams.len()).map(|_| None).collect(),
        streams,
        sink,
        shown: &shown,
        fail: &fail,
    };
    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(fail(format!("unreadable data: {e}"))),
        }
        let Some(slot) = inputs.iter().position(|&i| i == packet.stream()) else {
            continue;
        };
        match &mut lanes[slot] {
            Lane::Copy { time_base, adts } if *adts => {
                let mut raw = from_adts(&packet, slot, &mut writer.muxer).map_err(|e| {
                    MediaError::NotStreamable {
                        path: shown.clone(),
                        codec: format!("aac ({e})"),
                    }
                })?;
                writer.put(slot, &mut raw, *time_base)?
            }
            Lane::Copy { time_base, .. } => writer.put(slot, &mut packet, *time_base)?,
            Lane::Encode(reencoder) => {
                let time_base = reencoder.time_base();
                reencoder.feed(
                    Some(&packet),
                    &mut |p| writer.put(slot, p, time_base),
                    &fail,
                )?;
            }
        }
    }
    for (slot, lane) in lanes.iter_mut().enumerate() {
        if let Lane::Encode(reencoder) = lane {
            let time_base = reencoder.time_base();
            reencoder.feed(None, &mut |p| writer.put(slot, p, time_base), &fail)?;
        }
    }
    let (segments, streams) = writer.finish()?;
    Ok(Segmented {
        segments,
        streams,
        left_out,
        transcoded,
    })
}

/// How one output stream's packets are made.
enum Lane {
    /// Copied from the input as they are (timestamps in `time_base`); ADTS AAC loses
    /// its frame headers.
    Copy {
        time_base: ff::Rational,
        adts: bool,
    },
    Encode(Box<Reencoder>),
}

/// The raw AAC frame inside an ADTS `packet`; the first one also gives the muxer's stream
/// `slot` its AudioSpecificConfig, read from the header.
fn from_adts(
    packet: &ff::Packet,
    slot: usize,
    muxer: &mut FragMuxer,
) -> Result<ff::Packet, String> {
    let data = packet.data().unwrap_or(&[]);
    let (len, config) = adts_header(data)?;
    muxer.set_extradata_once(slot, &config)?;
    let mut raw = ff::Packet::copy(&data[len..]);
    raw.set_pts(packet.pts());
    raw.set_dts(packet.dts());
    raw.set_duration(packet.duration());
    raw.set_flags(packet.flags());
    Ok(raw)
}

/// An ADTS header's length and the AudioSpecificConfig it describes (ISO 14496-3,
/// 1.A.2.2 and 1.6.2.1): object type, sampling-frequency index, channel configuration.
fn adts_header(data: &[u8]) -> Result<(usize, [u8; 2]), String> {
    // Sync word 0xFFF, then MPEG version, layer 00, protection-absent.
    if data.len() < 7 || data[0] != 0xFF || data[1] & 0xF6 != 0xF0 {
        return Err("a frame without its ADTS header".into());
    }
    let header = if data[1] & 1 == 1 { 7 } else { 9 };
    let object_type = (data[2] >> 6) + 1;
    let frequency = (data[2] >> 2) & 0xF;
    let channels = ((data[2] & 1) << 2) | (data[3] >> 6);
    let blocks = data[6] & 3;
    if channels == 0 || blocks != 0 || frequency > 12 || data.len() < header {
        return Err("ADTS with an in-band channel layout or several blocks per frame".into());
    }
    let config = [
        (object_type << 3) | (frequency >> 1),
        ((frequency & 1) << 7) | (channels << 3),
    ];
    Ok((header, config))
}

/// Writes packets into the fragmented-MP4 muxer and cuts its output into pieces.
struct Writer<'a, S> {
    muxer: FragMuxer,
    target: f64,
    infos: Vec<SegmentInfo>,
    init_sent: bool,
    /// Start of the segment being written (video time, seconds); None before any video.
    current: Option<f64>,
    /// Whether the segment being written was cut mid-GOP.
    mid_gop: bool,
    /// Packet bytes written since the last cut, and the most a segment may take.
    bytes: u64,
    max_bytes: u64,
    last_end: f64,
    streams: Vec<StreamCount>,
    /// Per output stream, the packet not yet written (see [`Writer::put`]).
    held: Vec<Option<(ff::Packet, ff::Rational)>>,
    sink: S,
    /// The source's name, for errors.
    shown: &'a str,
    fail: &'a dyn Fn(String) -> MediaError,
}

impl<S: FnMut(Piece) -> Result<(), String>> Writer<'_, S> {
    /// Takes one packet (timestamps in `time_base`) of output stream `slot`, and writes
    /// the stream's previous one. Each packet is held until the next of its stream shows
    /// its true duration: the muxer takes a fragment's last sample duration from the
    /// packet, and a declared duration shorter than the gap to the next frame (variable
    /// frame rate) would shift every later frame of the video.
    fn put(
        &mut self,
        slot: usize,
        packet: &mut ff::Packet,
        time_base: ff::Rational,
    ) -> Result<(), MediaError> {
        let packet = std::mem::replace(packet, ff::Packet::empty());
        if let Some((mut previous, tb)) = self.held[slot].take() {
            if let (Some(a), Some(b)) = (previous.dts(), packet.dts())
                && b > a
                && tb == time_base
            {
                previous.set_duration(b - a);
            }
            self.write(slot, &mut previous, tb)?;
        }
        self.held[slot] = Some((packet, time_base));
        Ok(())
    }

    /// Writes one packet of output stream `slot`, first cutting a segment if it is a
    /// video keyframe at least `target` after the last cut.
    fn write(
        &mut self,
        slot: usize,
        packet: &mut ff::Packet,
        time_base: ff::Rational,
    ) -> Result<(), MediaError> {
        if slot == 0 {
            let tb = f64::from(time_base);
            let t = packet.pts().or(packet.dts()).unwrap_or(0) as f64 * tb;
            let end = t + packet.duration().max(0) as f64 * tb;
            self.last_end = self.last_end.max(end);
            let due = packet.is_key() && self.current.is_some_and(|s| t - s >= self.target - 1e-6);
            match self.current {
                None => self.current = Some(t),
                // At the first keyframe past the target length, or anywhere once the
                // segment is full (a long GOP must not grow one without bound).
                Some(start) if due || self.bytes >= self.max_bytes => {
                    self.cut(start, t)?;
                    self.current = Some(t);
                    self.mid_gop = !packet.is_key();
                }
                Some(_) => {}
            }
        }
        self.bytes += packet.size() as u64;
        // Timestamps go through as they are: a negative start (B-frames, AAC priming)
        // becomes the MP4's edit list, so players skip exactly what the source skipped.
        self.muxer
            .write(packet, slot, time_base.into())
            .map_err(self.fail)?;
        self.streams[slot].packets += 1;
        Ok(())
    }

    /// Cuts the fragment written so far into the pieces it holds and hands them on.
    fn cut(&mut self, start: f64, end: f64) -> Result<(), MediaError> {
        let fail = self.fail;
        let mut bytes = self.muxer.cut().map_err(fail)?;
        self.bytes = 0;
        let path = self.shown;
        let stopped = |reason| MediaError::Stopped {
            path: path.to_string(),
            reason,
        };
        if !self.init_sent {
            // With `delay_moov` the first flush writes only `ftyp` + `moov`; the samples
            // go out with the next one.
            if first_box(&bytes, &[b"moof"]).is_none() {
                bytes.extend(self.muxer.cut().map_err(fail)?);
            }
            let at = first_box(&bytes, &[b"styp", b"moof"])
                .ok_or_else(|| fail("the muxer wrote no fragment".into()))?;
            let media = bytes.split_off(at);
            (self.sink)(Piece::Init(bytes)).map_err(stopped)?;
            self.init_sent = true;
            bytes = media;
        }
        if first_box(&bytes, &[b"moof"]).is_none() {
            return Ok(());
        }
        let seg = Segment {
            index: self.infos.len(),
            start,
            duration: (end - start).max(0.0),
            data: bytes,
        };
        self.infos.push(SegmentInfo {
            index: seg.index,
            start: seg.start,
            duration: seg.duration,
            bytes: seg.data.len() as u64,
            mid_gop: self.mid_gop,
        });
        (self.sink)(Piece::Media(seg)).map_err(stopped)
    }

    /// Cuts the last segment and ends the muxer.
    fn finish(mut self) -> Result<(Vec<SegmentInfo>, Vec<StreamCount>), MediaError> {
        let fail = self.fail;
        for slot in 0..self.held.len() {
            if let Some((mut last, tb)) = self.held[slot].take() {
                self.write(slot, &mut last, tb)?;
            }
        }
        let Some(start) = self.current else {
            return Err(fail("no video packet to segment".into()));
        };
        self.cut(start, self.last_end)?;
        self.muxer.finish().map_err(fail)?;
        if self.infos.is_empty() {
            return Err(fail("no segment was written".into()));
        }
        Ok((self.infos, self.streams))
    }
}

/// Offset of the first top-level box of one of `kinds` in `bytes`.
fn first_box(bytes: &[u8], kinds: &[&[u8; 4]]) -> Option<usize> {
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        let kind = &bytes[at + 4..at + 8];
        if kinds.iter().any(|k| k.as_slice() == kind) {
            return Some(at);
        }
        let size = match size {
            // 64-bit size follows the type.
            1 => u64::from_be_bytes(bytes.get(at + 8..at + 16)?.try_into().ok()?) as usize,
            0 => return None,
            n => n,
        };
        if size < 8 {
            return None;
        }
        at = at.checked_add(size)?;
    }
    None
}

/// An HLS (version 7, VOD) playlist for fMP4 `segments`: the init segment at `init_uri`,
/// each media segment at `uri(index)`.
pub fn playlist(segments: &[SegmentInfo], init_uri: &str, uri: impl Fn(usize) -> String) -> String {
    let target = segments
        .iter()
        .map(|s| s.duration.ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    // Segments cut mid-GOP cannot be decoded on their own.
    let independent = if segments.iter().any(|s| s.mid_gop) {
        ""
    } else {
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
    };
    let mut m3u8 = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n{independent}#EXT-X-MAP:URI=\"{init_uri}\"\n"
    );
    for s in segments {
        m3u8.push_str(&format!("#EXTINF:{:.3},\n{}\n", s.duration, uri(s.index)));
    }
    m3u8.push_str("#EXT-X-ENDLIST\n");
    m3u8
}

/// One stream of the muxer.
struct Output {
    parameters: ff::codec::Parameters,
    time_base: ff::Rational,
    /// The input stream whose side data goes along.
    side_data_of: *const ffi::AVStream,
}

/// A fragmented-MP4 muxer writing into memory, cut on request. Owns its
/// AVFormatContext and dynamic buffer.
struct FragMuxer {
    ctx: *mut ffi::AVFormatContext,
}

fn averr(what: &str, code: i32) -> String {
    format!("{what}: {}", ff::Error::from(code))
}

/// `hvc1`: the HEVC sample entry Apple's players require (FFmpeg's default is `hev1`).
const HVC1: u32 = u32::from_le_bytes(*b"hvc1");

impl FragMuxer {
    /// A muxer with one stream per output: its codec parameters and time base, and the
    /// input stream's side data (the display matrix of a rotated phone video, HDR
    /// metadata), so that players show what the source shows.
    fn new(outputs: &[Output]) -> Result<Self, String> {
        let format = CString::new("mp4").map_err(|e| e.to_string())?;
        let mut ctx = ptr::null_mut();
        // SAFETY: plain libavformat allocation calls; every pointer is checked, and `Drop`
        // releases what was allocated even on the error paths below.
        unsafe {
            let rc = ffi::avformat_alloc_output_context2(
                &mut ctx,
                ptr::null_mut(),
                format.as_ptr(),
                ptr::null(),
            );
            if rc < 0 || ctx.is_null() {
                return Err(averr("cannot create the MP4 muxer", rc));
            }
            let muxer = FragMuxer { ctx };
            for output in outputs {
                let stream = ffi::avformat_new_stream(ctx, ptr::null());
                if stream.is_null() {
                    return Err("cannot add a stream to the muxer".into());
                }
                let rc =
                    ffi::avcodec_parameters_copy((*stream).codecpar, output.parameters.as_ptr());
                if rc < 0 {
                    return Err(averr("cannot copy codec parameters", rc));
                }
                let par = (*stream).codecpar;
                (*par).codec_tag = if (*par).codec_id == ffi::AVCodecID::AV_CODEC_ID_HEVC {
                    HVC1
                } else {
                    0
                };
                (*stream).time_base = output.time_base.into();
                let input = output.side_data_of;
                for k in 0..usize::try_from((*input).nb_side_data).unwrap_or(0) {
                    let sd = &*(*input).side_data.add(k);
                    let copy = ffi::av_stream_new_side_data(stream, sd.type_, sd.size as _);
                    if copy.is_null() {
                        return Err("cannot copy stream side data".into());
                    }
                    ptr::copy_nonoverlapping(sd.data, copy, sd.size);
                }
            }
            let rc = ffi::avio_open_dyn_buf(&mut (*ctx).pb);
            if rc < 0 {
                return Err(averr("cannot open an in-memory buffer", rc));
            }
            // Fragments only where we cut; the moov waits for the first fragment (some
            // codecs, AC-3 for one, know their parameters only from their packets); no
            // index or trailer after the last fragment: HLS needs neither.
            let mut options = ptr::null_mut();
            let (key, value) = (
                CString::new("movflags").map_err(|e| e.to_string())?,
                CString::new("frag_custom+dash+delay_moov+skip_sidx+skip_trailer")
                    .map_err(|e| e.to_string())?,
            );
            ffi::av_dict_set(&mut options, key.as_ptr(), value.as_ptr(), 0);
            let rc = ffi::avformat_write_header(ctx, &mut options);
            ffi::av_dict_free(&mut options);
            if rc < 0 {
                return Err(averr(
                    "these codecs cannot be written as fragmented MP4",
                    rc,
                ));
            }
            Ok(muxer)
        }
    }

    fn write(
        &mut self,
        packet: &mut ff::Packet,
        stream: usize,
        tb: ffi::AVRational,
    ) -> Result<(), String> {
        // SAFETY: ctx is a live muxer with `stream` < nb_streams (one per input slot); the
        // packet is a valid reference, which av_write_frame leaves to us.
        unsafe {
            let out = *(*self.ctx).streams.add(stream);
            let raw = packet.as_mut_ptr();
            (*raw).stream_index = stream as i32;
            (*raw).pos = -1;
            ffi::av_packet_rescale_ts(raw, tb, (*out).time_base);
            let rc = ffi::av_write_frame(self.ctx, raw);
            if rc < 0 {
                return Err(averr("muxing failed", rc));
            }
        }
        Ok(())
    }

    /// Gives stream `slot` its codec config (extradata) unless it has one: read by the
    /// muxer at the stream's first packet, before the delayed `moov` is written.
    fn set_extradata_once(&mut self, slot: usize, config: &[u8]) -> Result<(), String> {
        // SAFETY: ctx is live with `slot` < nb_streams; the buffer is allocated with the
        // padding FFmpeg requires and owned by the codec parameters from here on.
        unsafe {
            let par = (**(*self.ctx).streams.add(slot)).codecpar;
            if (*par).extradata_size > 0 {
                return Ok(());
            }
            let padding = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
            let buf = ffi::av_mallocz(config.len() + padding) as *mut u8;
            if buf.is_null() {
                return Err("out of memory".into());
            }
            ptr::copy_nonoverlapping(config.as_ptr(), buf, config.len());
            (*par).extradata = buf;
            (*par).extradata_size = config.len() as i32;
        }
        Ok(())
    }

    /// Ends the current fragment and returns every byte written since the last cut.
    fn cut(&mut self) -> Result<Vec<u8>, String> {
        // SAFETY: ctx and its dynamic buffer are live; the buffer handed back by
        // avio_close_dyn_buf is copied, freed once, and replaced by a fresh one.
        unsafe {
            let rc = ffi::av_write_frame(self.ctx, ptr::null_mut());
            if rc < 0 {
                return Err(averr("cannot end the fragment", rc));
            }
            let data = take_dyn_buf(self.ctx);
            let rc = ffi::avio_open_dyn_buf(&mut (*self.ctx).pb);
            if rc < 0 {
                return Err(averr("cannot open an in-memory buffer", rc));
            }
            Ok(data)
        }
    }

    /// Writes the trailer (nothing, with `skip_trailer`) and releases the buffer.
    fn finish(self) -> Result<(), String> {
        // SAFETY: ctx is live; Drop frees the buffer the trailer went to.
        let rc = unsafe { ffi::av_write_trailer(self.ctx) };
        if rc < 0 {
            return Err(averr("cannot finish the video", rc));
        }
        Ok(())
    }
}

/// Closes `ctx`'s dynamic buffer and returns its bytes.
///
/// # Safety
/// `ctx` must be live with an open dynamic buffer (or a null `pb`).
unsafe fn take_dyn_buf(ctx: *mut ffi::AVFormatContext) -> Vec<u8> {
    // SAFETY: as the caller promises; the buffer is copied, then freed exactly once.
    unsafe {
        if (*ctx).pb.is_null() {
            return Vec::new();
        }
        let mut buf = ptr::null_mut();
        let len = ffi::avio_close_dyn_buf((*ctx).pb, &mut buf);
        (*ctx).pb = ptr::null_mut();
        let data = if len > 0 && !buf.is_null() {
            std::slice::from_raw_parts(buf, len as usize).to_vec()
        } else {
            Vec::new()
        };
        ffi::av_free(buf.cast());
        data
    }
}

impl Drop for FragMuxer {
    fn drop(&mut self) {
        // SAFETY: frees what `new` allocated, buffer first.
        unsafe {
            take_dyn_buf(self.ctx);
            ffi::avformat_free_context(self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_lists_every_segment_with_its_duration() {
        let mut segs = vec![
            SegmentInfo {
                index: 0,
                start: 0.0,
                duration: 4.0,
                bytes: 10,
                mid_gop: false,
            },
            SegmentInfo {
                index: 1,
                start: 4.0,
                duration: 4.5,
                bytes: 10,
                mid_gop: false,
            },
        ];
        let m = playlist(&segs, "init.mp4", |i| format!("seg{i}.m4s"));
        assert!(m.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n"));
        assert!(m.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
        assert!(m.contains("#EXT-X-TARGETDURATION:5\n"));
        assert!(m.contains("#EXTINF:4.500,\nseg1.m4s\n"));
        assert!(m.contains("#EXT-X-INDEPENDENT-SEGMENTS\n"));
        assert!(m.ends_with("#EXT-X-ENDLIST\n"));
        segs[1].mid_gop = true;
        let m = playlist(&segs, "init.mp4", |i| format!("seg{i}.m4s"));
        assert!(!m.contains("INDEPENDENT"), "a mid-GOP cut: {m}");
    }

    #[test]
    fn an_adts_header_gives_the_audio_specific_config() {
        // AAC-LC, 48 kHz (index 3), stereo, no CRC: ASC 0x11 0x90 (what FFmpeg's
        // aac_adtstoasc writes for the same stream).
        let frame = [0xFF, 0xF1, 0x4C, 0x80, 0x2E, 0x7F, 0xFC, 0xAA];
        assert_eq!(adts_header(&frame), Ok((7, [0x11, 0x90])));
        // With a CRC the header is 9 bytes.
        let crc = [0xFF, 0xF0, 0x4C, 0x80, 0x2E, 0x7F, 0xFC, 0, 0, 0xAA];
        assert_eq!(adts_header(&crc), Ok((9, [0x11, 0x90])));
        // Channel configuration 0 (a layout carried in the stream) is not handled.
        assert!(adts_header(&[0xFF, 0xF1, 0x4C, 0x00, 0x2E, 0x7F, 0xFC]).is_err());
        assert!(adts_header(b"\x21\x00raw aac").is_err());
    }

    #[test]
    fn boxes_are_found_at_top_level_only() {
        let mut bytes = Vec::new();
        for (kind, len) in [(b"ftyp", 16u32), (b"moov", 12), (b"moof", 8), (b"mdat", 9)] {
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(kind);
            // A payload that itself looks like a box type must not be taken for one.
            bytes.extend(b"moof".iter().cycle().take(len as usize - 8));
        }
        assert_eq!(first_box(&bytes, &[b"moof"]), Some(28));
        assert_eq!(first_box(&bytes, &[b"styp", b"mdat"]), Some(36));
        assert_eq!(first_box(&bytes, &[b"sidx"]), None);
        assert_eq!(first_box(&bytes[..20], &[b"moof"]), None);
    }
}
