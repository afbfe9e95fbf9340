//! One picture of a video at a given time, small: the evidence thumbnails a reviewer sees.
//! Read from the stored rendition (init + one media segment, decrypted in memory), so no
//! extra copy of a frame is ever stored.

use ff::software::scaling;
use ffmpeg_next as ff;

use super::MediaError;
use super::source::MediaSource;
use crate::config::Limits;

/// An RGB picture, rows top to bottom, 3 bytes a pixel.
pub struct Still {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// The first frame shown at or after `t` seconds (or the last one before it), scaled to
/// at most `max_width` pixels wide.
pub fn still(
    source: &MediaSource,
    t: f64,
    max_width: u32,
    limits: &Limits,
) -> Result<Still, MediaError> {
    let shown = source.name().to_string();
    let corrupt = |detail: String| MediaError::Corrupt {
        path: shown.clone(),
        detail,
    };
    let (mut ictx, index, _) = super::probe::open(source, limits)?;
    let stream = ictx
        .stream(index)
        .ok_or_else(|| corrupt("no video stream".into()))?;
    let tb = f64::from(stream.time_base());
    let ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| corrupt(format!("codec parameters: {e}")))?;
    let mut decoder = ctx
        .decoder()
        .video()
        .map_err(|e| corrupt(format!("no decoder for this codec: {e}")))?;
    let mut packet = ff::Packet::empty();
    let mut frame = ff::frame::Video::empty();
    let mut kept: Option<ff::frame::Video> = None;
    let mut eof = false;
    'read: while !eof {
        match packet.read(&mut ictx) {
            Ok(()) if packet.stream() == index => {
                // A damaged packet is skipped, as a player would.
                let _ = decoder.send_packet(&packet);
            }
            Ok(()) => continue,
            Err(ff::Error::Eof) => {
                eof = true;
                let _ = decoder.send_eof();
            }
            Err(e) => return Err(corrupt(format!("unreadable data: {e}"))),
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            let at = frame.timestamp().or(frame.pts()).map(|ts| ts as f64 * tb);
            kept = Some(frame.clone());
            if at.is_some_and(|at| at + 1e-3 >= t) {
                break 'read;
            }
        }
    }
    let frame = kept.ok_or_else(|| corrupt("no frame could be decoded".into()))?;
    let (w, h) = (frame.width().max(1), frame.height().max(1));
    let width = w.min(max_width).max(2) & !1;
    let height = ((u64::from(h) * u64::from(width) / u64::from(w)).max(2) as u32) & !1;
    let mut scaler = scaling::Context::get(
        frame.format(),
        w,
        h,
        ff::format::Pixel::RGB24,
        width,
        height,
        scaling::Flags::BILINEAR,
    )
    .map_err(|e| corrupt(format!("cannot convert the picture: {e}")))?;
    let mut rgb = ff::frame::Video::empty();
    scaler
        .run(&frame, &mut rgb)
        .map_err(|e| corrupt(format!("cannot convert the picture: {e}")))?;
    let stride = rgb.stride(0);
    let row = width as usize * 3;
    let data = rgb.data(0);
    let mut out = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        out.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(Still {
        width,
        height,
        rgb: out,
    })
}
