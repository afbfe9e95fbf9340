//! Remuxing a video into MPEG-TS segments of about N seconds, cut on keyframes, without
//! re-encoding, plus the HLS playlist that plays them.
//!
//! Each segment is muxed into memory (libavformat's dynamic buffer), never to a file: the
//! caller seals it before anything touches the disk, so no plaintext is ever at rest.
//! MPEG-TS keeps every segment self-contained (no init segment), and players take
//! original timestamps across segments, so decrypted segments concatenate into one stream.

use std::ffi::CString;
use std::ptr;

use ff::codec::packet::Mut as _;
use ff::ffi;
use ff::media::Type as MediaType;
use ffmpeg_next as ff;

use super::{MediaError, MediaSource};
use crate::config::Limits;

/// One finished segment, in memory.
#[derive(Debug)]
pub struct Segment {
    pub index: usize,
    /// Start time, seconds.
    pub start: f64,
    /// Duration, seconds (until the next segment's first keyframe, or the end).
    pub duration: f64,
    /// MPEG-TS bytes.
    pub data: Vec<u8>,
}

/// Timing of a segment, for the playlist and the manifest.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentInfo {
    pub index: usize,
    pub start: f64,
    pub duration: f64,
    pub bytes: u64,
}

/// Splits `source` into segments of at least `target` seconds (cut at the first keyframe
/// after that), handing each to `sink` as soon as it is complete.
pub fn segment(
    source: &MediaSource,
    target: f64,
    limits: &Limits,
    mut sink: impl FnMut(Segment) -> Result<(), String>,
) -> Result<Vec<SegmentInfo>, MediaError> {
    let shown = source.name().to_string();
    let fail = |detail: String| MediaError::Segment {
        path: shown.clone(),
        detail,
    };
    let (mut ictx, video, _) = super::probe::open(source, limits)?;
    let audio = ictx.streams().best(MediaType::Audio).map(|s| s.index());
    let inputs: Vec<usize> = std::iter::once(video).chain(audio).collect();
    let time_bases: Vec<ffi::AVRational> = inputs
        .iter()
        .map(|&i| ictx.stream(i).map(|s| s.time_base().into()))
        .collect::<Option<_>>()
        .ok_or_else(|| fail("stream vanished".into()))?;
    let video_tb = f64::from(ff::Rational::from(time_bases[0]));
    let params: Vec<*const ffi::AVCodecParameters> = inputs
        .iter()
        .map(|&i| ictx.stream(i).map(|s| unsafe { s.parameters().as_ptr() }))
        .collect::<Option<_>>()
        .ok_or_else(|| fail("stream vanished".into()))?;

    let mut infos = Vec::new();
    let mut current: Option<(MemMuxer, f64)> = None;
    // One timestamp shift for the whole video (B-frames start at a negative dts): each
    // segment's muxer would otherwise shift only its own first segment, and the segments
    // would overlap in time.
    let mut shift: Option<f64> = None;
    let mut last_end = 0.0f64;
    let mut packet = ff::Packet::empty();
    let mut finish = |muxer: MemMuxer,
                      start: f64,
                      end: f64,
                      infos: &mut Vec<SegmentInfo>|
     -> Result<(), MediaError> {
        let data = muxer.finish().map_err(&fail)?;
        let seg = Segment {
            index: infos.len(),
            start,
            duration: (end - start).max(0.0),
            data,
        };
        infos.push(SegmentInfo {
            index: seg.index,
            start: seg.start,
            duration: seg.duration,
            bytes: seg.data.len() as u64,
        });
        sink(seg).map_err(|reason| MediaError::Stopped {
            path: shown.clone(),
            reason,
        })
    };
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => return Err(fail(format!("unreadable data: {e}"))),
        }
        let Some(slot) = inputs.iter().position(|&i| i == packet.stream()) else {
            continue;
        };
        if slot == 0 {
            let t = packet.pts().or(packet.dts()).unwrap_or(0) as f64 * video_tb;
            let end = t + packet.duration().max(0) as f64 * video_tb;
            last_end = last_end.max(end);
            let cut = packet.is_key()
                && current
                    .as_ref()
                    .is_none_or(|(_, start)| t - start >= target - 1e-6);
            if cut {
                if let Some((muxer, start)) = current.take() {
                    finish(muxer, start, t, &mut infos)?;
                }
                current = Some((MemMuxer::new(&params).map_err(&fail)?, t));
            }
        }
        // Audio before the first video keyframe has no segment to go to; it is dropped,
        // as a player starting at the first keyframe would.
        if let Some((muxer, _)) = current.as_mut() {
            let tb = time_bases[slot];
            let tb_seconds = f64::from(ff::Rational::from(tb));
            let shift = *shift.get_or_insert_with(|| {
                let first = packet.dts().or(packet.pts()).unwrap_or(0) as f64 * tb_seconds;
                (-first).max(0.0)
            });
            let ticks = (shift / tb_seconds).round() as i64;
            packet.set_pts(packet.pts().map(|t| t + ticks));
            packet.set_dts(packet.dts().map(|t| t + ticks));
            muxer.write(&mut packet, slot, tb).map_err(&fail)?;
        }
    }
    if let Some((muxer, start)) = current.take() {
        finish(muxer, start, last_end, &mut infos)?;
    }
    if infos.is_empty() {
        return Err(fail("no keyframe to start a segment at".into()));
    }
    Ok(infos)
}

/// An HLS (version 3, VOD) playlist for `segments`, naming each with `uri(index)`.
pub fn playlist(segments: &[SegmentInfo], uri: impl Fn(usize) -> String) -> String {
    let target = segments
        .iter()
        .map(|s| s.duration.ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut m3u8 = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    for s in segments {
        m3u8.push_str(&format!("#EXTINF:{:.3},\n{}\n", s.duration, uri(s.index)));
    }
    m3u8.push_str("#EXT-X-ENDLIST\n");
    m3u8
}

/// An MPEG-TS muxer writing into memory. Owns its AVFormatContext and dynamic buffer.
struct MemMuxer {
    ctx: *mut ffi::AVFormatContext,
    finished: bool,
}

fn averr(what: &str, code: i32) -> String {
    format!("{what}: {}", ff::Error::from(code))
}

impl MemMuxer {
    fn new(params: &[*const ffi::AVCodecParameters]) -> Result<Self, String> {
        let format = CString::new("mpegts").map_err(|e| e.to_string())?;
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
                return Err(averr("cannot create the MPEG-TS muxer", rc));
            }
            let muxer = MemMuxer {
                ctx,
                finished: false,
            };
            for &p in params {
                let stream = ffi::avformat_new_stream(ctx, ptr::null());
                if stream.is_null() {
                    return Err("cannot add a stream to the muxer".into());
                }
                let rc = ffi::avcodec_parameters_copy((*stream).codecpar, p);
                if rc < 0 {
                    return Err(averr("cannot copy codec parameters", rc));
                }
                (*(*stream).codecpar).codec_tag = 0;
            }
            let rc = ffi::avio_open_dyn_buf(&mut (*ctx).pb);
            if rc < 0 {
                return Err(averr("cannot open an in-memory buffer", rc));
            }
            let rc = ffi::avformat_write_header(ctx, ptr::null_mut());
            if rc < 0 {
                return Err(averr("this codec cannot be segmented into MPEG-TS", rc));
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
        // packet is a valid reference that av_interleaved_write_frame takes over.
        unsafe {
            let out = *(*self.ctx).streams.add(stream);
            let raw = packet.as_mut_ptr();
            (*raw).stream_index = stream as i32;
            (*raw).pos = -1;
            ffi::av_packet_rescale_ts(raw, tb, (*out).time_base);
            let rc = ffi::av_interleaved_write_frame(self.ctx, raw);
            if rc < 0 {
                return Err(averr("muxing failed", rc));
            }
        }
        Ok(())
    }

    /// Writes the trailer and returns the segment's bytes.
    fn finish(mut self) -> Result<Vec<u8>, String> {
        // SAFETY: ctx and its dynamic buffer are live; the buffer returned by
        // avio_close_dyn_buf is copied and then freed with av_free exactly once.
        unsafe {
            let rc = ffi::av_write_trailer(self.ctx);
            self.finished = true;
            let mut buf = ptr::null_mut();
            let len = ffi::avio_close_dyn_buf((*self.ctx).pb, &mut buf);
            (*self.ctx).pb = ptr::null_mut();
            let data = if len > 0 && !buf.is_null() {
                std::slice::from_raw_parts(buf, len as usize).to_vec()
            } else {
                Vec::new()
            };
            ffi::av_free(buf.cast());
            if rc < 0 {
                return Err(averr("cannot finish the segment", rc));
            }
            Ok(data)
        }
    }
}

impl Drop for MemMuxer {
    fn drop(&mut self) {
        // SAFETY: frees what `new` allocated; `finish` already closed the buffer.
        unsafe {
            if !self.finished && !(*self.ctx).pb.is_null() {
                let mut buf = ptr::null_mut();
                ffi::avio_close_dyn_buf((*self.ctx).pb, &mut buf);
                ffi::av_free(buf.cast());
                (*self.ctx).pb = ptr::null_mut();
            }
            ffi::avformat_free_context(self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_lists_every_segment_with_its_duration() {
        let segs = vec![
            SegmentInfo {
                index: 0,
                start: 0.0,
                duration: 4.0,
                bytes: 10,
            },
            SegmentInfo {
                index: 1,
                start: 4.0,
                duration: 4.5,
                bytes: 10,
            },
        ];
        let m = playlist(&segs, |i| format!("seg{i}.ts"));
        assert!(m.starts_with("#EXTM3U\n"));
        assert!(m.contains("#EXT-X-TARGETDURATION:5\n"));
        assert!(m.contains("#EXTINF:4.500,\nseg1.ts\n"));
        assert!(m.ends_with("#EXT-X-ENDLIST\n"));
    }
}
