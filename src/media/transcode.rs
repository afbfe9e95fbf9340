//! Re-encoding a stream HLS cannot carry (VP8, MPEG-4 Part 2, MJPEG, Theora video;
//! Vorbis, PCM, WMA audio) into one it can, for `server.transcode = "h264" | "vp9"`.
//!
//! Off by default, and the segmenter only ever re-encodes the streams that need it
//! (H.264 video with Vorbis audio keeps its video bit for bit): a re-encode is lossy, so
//! the original upload is always kept beside it. Video goes to H.264 (libx264) or VP9
//! (libvpx) as 4:2:0 at the source's size (rounded down to even), keeping every frame with
//! its timestamp; audio goes to AAC (FFmpeg's own encoder) at the source's rate where AAC
//! has it, in mono or stereo. Licences: libx264 is GPL, libvpx BSD, FFmpeg's AAC encoder
//! LGPL; docs/media.md says what that means for a build.

use std::ffi::c_void;
use std::ptr;

use ff::ffi;
use ff::format::{Pixel, Sample, sample};
use ff::software::{resampling, scaling};
use ff::{ChannelLayout, Dictionary, Packet, Rational, Rescale};
use ffmpeg_next as ff;

use super::MediaError;
use crate::config::Transcode;

/// Sample rates the AAC encoder takes; others are resampled to 48 kHz.
const AAC_RATES: &[u32] = &[
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
];

/// Whether this FFmpeg has the encoders `to` needs. Checked at start, so that a build
/// without libx264 refuses `transcode = "h264"` at once instead of failing every job
/// that would need it.
pub fn check_encoders(to: Transcode) -> Result<(), String> {
    let video = match to {
        Transcode::Off => return Ok(()),
        Transcode::H264 => "libx264",
        Transcode::Vp9 => "libvpx-vp9",
    };
    super::init();
    if ff::encoder::find_by_name(video).is_none() {
        return Err(format!(
            "transcode {to:?}: this FFmpeg has no {video} encoder (an FFmpeg built without \
             --enable-gpl has no H.264 encoder; \"vp9\" needs only libvpx)"
        ));
    }
    if ff::encoder::find(ff::codec::Id::AAC).is_none() {
        return Err(format!("transcode {to:?}: this FFmpeg has no AAC encoder"));
    }
    Ok(())
}

/// Decodes one input stream and encodes it again, packet by packet.
pub(super) struct Reencoder {
    lane: Lane,
    /// The encoder's codec (FFmpeg's name), e.g. `h264`.
    codec: String,
}

enum Lane {
    Video(Box<VideoLane>),
    Audio(Box<AudioLane>),
}

struct VideoLane {
    decoder: ff::decoder::Video,
    encoder: ff::encoder::Video,
    /// Converts decoded frames to the encoder's format and size, made for the first frame
    /// that needs it (and again if the decoded size or format changes).
    scaler: Option<(Pixel, u32, u32, scaling::Context)>,
    /// One frame's duration in the encoder's time base, for packets that carry none.
    frame_ticks: i64,
    last_pts: Option<i64>,
}

struct AudioLane {
    decoder: ff::decoder::Audio,
    encoder: ff::encoder::Audio,
    /// Made for the first decoded frame (a decoder may know its format only then).
    resampler: Option<resampling::Context>,
    layout: ChannelLayout,
    fifo: AudioFifo,
    /// Presentation time of the next encoded frame, in samples.
    next_pts: Option<i64>,
    in_time_base: Rational,
}

fn failed(what: &str) -> impl Fn(ff::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Reencoder {
    /// A re-encoder for `stream` (video or audio) to the target of `to`; video gets a
    /// keyframe at least every `gop_seconds`, so segments can be cut there.
    pub fn new(stream: &ff::Stream, to: Transcode, gop_seconds: f64) -> Result<Self, String> {
        let context = ff::codec::context::Context::from_parameters(stream.parameters())
            .map_err(failed("reading the stream's parameters"))?;
        let lane = match stream.parameters().medium() {
            ff::media::Type::Video => {
                let decoder = context
                    .decoder()
                    .video()
                    .map_err(failed("no decoder for this video"))?;
                Lane::Video(Box::new(VideoLane::new(decoder, stream, to, gop_seconds)?))
            }
            ff::media::Type::Audio => {
                let decoder = context
                    .decoder()
                    .audio()
                    .map_err(failed("no decoder for this audio"))?;
                Lane::Audio(Box::new(AudioLane::new(decoder, stream.time_base())?))
            }
            other => return Err(format!("cannot re-encode a {other:?} stream")),
        };
        let id = match &lane {
            Lane::Video(v) => v.encoder.id(),
            Lane::Audio(a) => a.encoder.id(),
        };
        Ok(Reencoder {
            codec: id.name().to_string(),
            lane,
        })
    }

    /// The encoder's codec name, e.g. `h264`.
    pub fn codec(&self) -> &str {
        &self.codec
    }

    /// The encoded stream's parameters, for the muxer.
    pub fn parameters(&self) -> ff::codec::Parameters {
        match &self.lane {
            Lane::Video(v) => ff::codec::Parameters::from(&*v.encoder),
            Lane::Audio(a) => ff::codec::Parameters::from(&*a.encoder),
        }
    }

    /// The time base of the packets handed out.
    pub fn time_base(&self) -> Rational {
        match &self.lane {
            Lane::Video(v) => v.encoder.time_base(),
            Lane::Audio(a) => a.encoder.time_base(),
        }
    }

    /// Decodes `packet` (`None`: the input ended, flush everything) and hands each
    /// packet the encoder produces to `emit`. A packet the decoder rejects is skipped,
    /// as a player would skip it.
    pub fn feed(
        &mut self,
        packet: Option<&Packet>,
        emit: &mut dyn FnMut(&mut Packet) -> Result<(), MediaError>,
        fail: &dyn Fn(String) -> MediaError,
    ) -> Result<(), MediaError> {
        match &mut self.lane {
            Lane::Video(v) => v.feed(packet, emit, fail),
            Lane::Audio(a) => a.feed(packet, emit, fail),
        }
    }
}

/// Hands every packet `encoder` has ready to `emit`.
fn drain(
    encoder: &mut ff::encoder::Encoder,
    frame_ticks: i64,
    emit: &mut dyn FnMut(&mut Packet) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let mut packet = Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        if packet.duration() <= 0 {
            packet.set_duration(frame_ticks);
        }
        emit(&mut packet)?;
    }
    Ok(())
}

impl VideoLane {
    fn new(
        decoder: ff::decoder::Video,
        stream: &ff::Stream,
        to: Transcode,
        gop_seconds: f64,
    ) -> Result<Self, String> {
        let name = match to {
            Transcode::H264 => "libx264",
            Transcode::Vp9 => "libvpx-vp9",
            Transcode::Off => return Err("transcoding is off".into()),
        };
        let codec = ff::encoder::find_by_name(name)
            .ok_or_else(|| format!("this FFmpeg has no {name} encoder"))?;
        let mut encoder = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(failed("cannot make the video encoder"))?;
        // 4:2:0 needs even dimensions.
        let (width, height) = (
            (decoder.width() & !1).max(2),
            (decoder.height() & !1).max(2),
        );
        let rate = [stream.avg_frame_rate(), stream.rate()]
            .into_iter()
            .find(|r| r.numerator() > 0 && r.denominator() > 0)
            .unwrap_or(Rational::new(25, 1));
        let time_base = stream.time_base();
        encoder.set_width(width);
        encoder.set_height(height);
        encoder.set_format(Pixel::YUV420P);
        encoder.set_time_base(time_base);
        encoder.set_frame_rate(Some(rate));
        encoder.set_aspect_ratio(decoder.aspect_ratio());
        let fps = f64::from(rate);
        encoder.set_gop((fps * gop_seconds).round().clamp(1.0, 600.0) as u32);
        // MP4 keeps codec headers in the sample entry, not in the stream.
        encoder.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        let mut options = Dictionary::new();
        match to {
            Transcode::H264 => {
                options.set("preset", "veryfast");
                options.set("crf", "20");
            }
            _ => {
                options.set("deadline", "good");
                options.set("cpu-used", "5");
                options.set("row-mt", "1");
                options.set("crf", "30");
                options.set("b", "0");
            }
        }
        let encoder = encoder
            .open_with(options)
            .map_err(failed(&format!("cannot open {name}")))?;
        let time_base = encoder.time_base();
        let frame_ticks = (f64::from(time_base.invert()) / fps).round().max(1.0) as i64;
        Ok(VideoLane {
            decoder,
            encoder,
            scaler: None,
            frame_ticks,
            last_pts: None,
        })
    }

    fn feed(
        &mut self,
        packet: Option<&Packet>,
        emit: &mut dyn FnMut(&mut Packet) -> Result<(), MediaError>,
        fail: &dyn Fn(String) -> MediaError,
    ) -> Result<(), MediaError> {
        let _ = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        let mut frame = ff::frame::Video::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            // Every frame keeps its time; the encoder needs them strictly increasing.
            let pts = frame.timestamp().or(frame.pts());
            let pts = match (pts, self.last_pts) {
                (Some(p), Some(last)) if p <= last => last + 1,
                (Some(p), _) => p,
                (None, Some(last)) => last + self.frame_ticks,
                (None, None) => 0,
            };
            self.last_pts = Some(pts);
            let (width, height) = (self.encoder.width(), self.encoder.height());
            let mut converted;
            let out = if frame.format() == Pixel::YUV420P
                && frame.width() == width
                && frame.height() == height
            {
                &mut frame
            } else {
                let key = (frame.format(), frame.width(), frame.height());
                if self
                    .scaler
                    .as_ref()
                    .is_none_or(|(f, w, h, _)| (*f, *w, *h) != key)
                {
                    let ctx = scaling::Context::get(
                        key.0,
                        key.1,
                        key.2,
                        Pixel::YUV420P,
                        width,
                        height,
                        scaling::Flags::BICUBIC,
                    )
                    .map_err(|e| fail(format!("cannot convert the frames: {e}")))?;
                    self.scaler = Some((key.0, key.1, key.2, ctx));
                }
                // A fresh frame each time: the encoder may still hold the last one.
                converted = ff::frame::Video::empty();
                if let Some((.., scaler)) = &mut self.scaler {
                    scaler
                        .run(&frame, &mut converted)
                        .map_err(|e| fail(format!("cannot convert a frame: {e}")))?;
                }
                &mut converted
            };
            out.set_pts(Some(pts));
            out.set_kind(ff::picture::Type::None);
            self.encoder
                .send_frame(out)
                .map_err(|e| fail(format!("encoding: {e}")))?;
            drain(&mut self.encoder, self.frame_ticks, emit)?;
        }
        if packet.is_none() {
            let _ = self.encoder.send_eof();
            drain(&mut self.encoder, self.frame_ticks, emit)?;
        }
        Ok(())
    }
}

impl AudioLane {
    fn new(decoder: ff::decoder::Audio, in_time_base: Rational) -> Result<Self, String> {
        let codec = ff::encoder::find(ff::codec::Id::AAC)
            .ok_or_else(|| "this FFmpeg has no AAC encoder".to_string())?;
        let mut encoder = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(failed("cannot make the audio encoder"))?;
        let channels = if decoder.channels() >= 2 { 2 } else { 1 };
        let layout = ChannelLayout::default(channels);
        let rate = if AAC_RATES.contains(&decoder.rate()) {
            decoder.rate()
        } else {
            48_000
        };
        encoder.set_rate(rate as i32);
        encoder.set_channel_layout(layout);
        encoder.set_format(Sample::F32(sample::Type::Planar));
        encoder.set_bit_rate(64_000 * channels as usize);
        encoder.set_time_base(Rational::new(1, rate as i32));
        encoder.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        let encoder = encoder
            .open_as(codec)
            .map_err(failed("cannot open the AAC encoder"))?;
        let fifo = AudioFifo::new(channels)?;
        Ok(AudioLane {
            decoder,
            encoder,
            resampler: None,
            layout,
            fifo,
            next_pts: None,
            in_time_base,
        })
    }

    fn feed(
        &mut self,
        packet: Option<&Packet>,
        emit: &mut dyn FnMut(&mut Packet) -> Result<(), MediaError>,
        fail: &dyn Fn(String) -> MediaError,
    ) -> Result<(), MediaError> {
        let _ = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        let rate = self.encoder.rate();
        let mut frame = ff::frame::Audio::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            if self.next_pts.is_none() {
                // The first sample's time, in samples: the source's start offset stays.
                let start = frame.timestamp().unwrap_or(0);
                self.next_pts =
                    Some(start.rescale(self.in_time_base, Rational::new(1, rate as i32)));
            }
            // A decoder may leave the layout unset (PCM): then it is the default one for
            // the channel count, which the resampler must see on the frame too.
            if frame.channel_layout().channels() != i32::from(frame.channels()) {
                frame.set_channel_layout(ChannelLayout::default(i32::from(frame.channels())));
            }
            let input = (frame.format(), frame.channel_layout(), frame.rate());
            let current = self.resampler.as_ref().map(|r| {
                let i = r.input();
                (i.format, i.channel_layout, i.rate)
            });
            if current != Some(input) {
                // First frame, or the source changed its format midway.
                let resampler = resampling::Context::get(
                    input.0,
                    input.1,
                    input.2,
                    Sample::F32(sample::Type::Planar),
                    self.layout,
                    rate,
                )
                .map_err(|e| fail(format!("cannot resample the audio: {e}")))?;
                self.resampler = Some(resampler);
            }
            self.resample(Some(&frame), fail)?;
            self.encode(false, emit, fail)?;
        }
        if packet.is_none() {
            if self.resampler.is_some() {
                self.resample(None, fail)?;
            }
            self.encode(true, emit, fail)?;
            let _ = self.encoder.send_eof();
            drain(&mut self.encoder, 1024, emit)?;
        }
        Ok(())
    }

    /// Converts `frame` (`None`: what the resampler still holds) into the FIFO.
    fn resample(
        &mut self,
        frame: Option<&ff::frame::Audio>,
        fail: &dyn Fn(String) -> MediaError,
    ) -> Result<(), MediaError> {
        let Some(resampler) = &mut self.resampler else {
            return Ok(());
        };
        let mut out = ff::frame::Audio::empty();
        out.set_format(Sample::F32(sample::Type::Planar));
        out.set_channel_layout(self.layout);
        out.set_rate(self.encoder.rate());
        let input = frame.map_or(ptr::null(), |f| unsafe { f.as_ptr() });
        // SAFETY: both frames are live; an output frame without buffers is allocated by
        // swr_convert_frame to fit everything converted.
        let rc = unsafe { ffi::swr_convert_frame(resampler.as_mut_ptr(), out.as_mut_ptr(), input) };
        if rc < 0 {
            return Err(fail(format!("resampling: {}", ff::Error::from(rc))));
        }
        self.fifo.write(&out).map_err(fail)
    }

    /// Encodes whole encoder frames from the FIFO (and the rest too, at the `end`).
    fn encode(
        &mut self,
        end: bool,
        emit: &mut dyn FnMut(&mut Packet) -> Result<(), MediaError>,
        fail: &dyn Fn(String) -> MediaError,
    ) -> Result<(), MediaError> {
        let size = (self.encoder.frame_size() as usize).max(1);
        loop {
            let n = match self.fifo.len() {
                0 => return Ok(()),
                n if n >= size => size,
                n if end => n,
                _ => return Ok(()),
            };
            let mut frame =
                ff::frame::Audio::new(Sample::F32(sample::Type::Planar), n, self.layout);
            frame.set_rate(self.encoder.rate());
            self.fifo.read(&mut frame, n).map_err(&fail)?;
            let pts = self.next_pts.unwrap_or(0);
            frame.set_pts(Some(pts));
            self.next_pts = Some(pts + n as i64);
            self.encoder
                .send_frame(&frame)
                .map_err(|e| fail(format!("encoding: {e}")))?;
            drain(&mut self.encoder, size as i64, emit)?;
        }
    }
}

/// libavutil's audio FIFO of planar float samples: rebatches decoded audio into the
/// encoder's frame size.
struct AudioFifo(*mut ffi::AVAudioFifo);

impl AudioFifo {
    fn new(channels: i32) -> Result<Self, String> {
        // SAFETY: a plain allocation, checked.
        let fifo = unsafe {
            ffi::av_audio_fifo_alloc(ffi::AVSampleFormat::AV_SAMPLE_FMT_FLTP, channels, 4096)
        };
        if fifo.is_null() {
            return Err("cannot allocate an audio buffer".into());
        }
        Ok(AudioFifo(fifo))
    }

    fn len(&self) -> usize {
        // SAFETY: the FIFO is live.
        usize::try_from(unsafe { ffi::av_audio_fifo_size(self.0) }).unwrap_or(0)
    }

    fn write(&mut self, frame: &ff::frame::Audio) -> Result<(), String> {
        if frame.samples() == 0 {
            return Ok(());
        }
        // SAFETY: the frame holds `samples` planar samples per channel, as many channels
        // as the FIFO (both made with the encoder's layout).
        let rc = unsafe {
            ffi::av_audio_fifo_write(
                self.0,
                (*frame.as_ptr()).extended_data as *mut *mut c_void,
                frame.samples() as i32,
            )
        };
        if rc < frame.samples() as i32 {
            return Err("cannot buffer the audio".into());
        }
        Ok(())
    }

    fn read(&mut self, frame: &mut ff::frame::Audio, n: usize) -> Result<(), String> {
        // SAFETY: `frame` was allocated for `n` samples in the FIFO's format and layout.
        let rc = unsafe {
            ffi::av_audio_fifo_read(
                self.0,
                (*frame.as_mut_ptr()).extended_data as *mut *mut c_void,
                n as i32,
            )
        };
        if rc < n as i32 {
            return Err("cannot read the buffered audio".into());
        }
        Ok(())
    }
}

impl Drop for AudioFifo {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once.
        unsafe { ffi::av_audio_fifo_free(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_ffmpeg_has_the_encoders_of_every_target() {
        for to in [Transcode::Off, Transcode::H264, Transcode::Vp9] {
            assert_eq!(check_encoders(to), Ok(()), "{to:?}");
        }
    }
}
