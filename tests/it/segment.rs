//! The segmenter: MPEG-TS segments cut on keyframes, no re-encode; concatenated, they
//! are a stream ffprobe reads with the source's duration (within one GOP).

use std::process::Command;

use crate::util::{asset, ffprobe_duration};
use vcw::config::Limits;
use vcw::media::{MediaSource, playlist, segment};

#[test]
fn segments_reassemble_into_the_source_duration() {
    let dir = tempfile::tempdir().unwrap();
    for (clip, gop) in [
        ("samples/generated/longgop.mp4", 10.0),
        ("samples/bikes.mp4", 5.0),
    ] {
        let src = asset(clip);
        let mut joined = Vec::new();
        let infos = segment(&MediaSource::file(&src), 4.0, &Limits::default(), |s| {
            assert!(s.data.len() > 188 && s.data[0] == 0x47, "MPEG-TS sync byte");
            joined.extend_from_slice(&s.data);
            Ok(())
        })
        .unwrap();
        let path = dir.path().join("joined.ts");
        std::fs::write(&path, &joined).unwrap();
        let source = ffprobe_duration(&src);
        let got = ffprobe_duration(&path);
        assert!((got - source).abs() <= gop, "{clip}: {got} s vs {source} s");
        // Segments are at least the target long (but the last), and start on keyframes.
        for s in &infos[..infos.len() - 1] {
            assert!(s.duration >= 4.0 - 1e-6, "{s:?}");
        }
        let total: f64 = infos.iter().map(|s| s.duration).sum();
        assert!(
            (total - source).abs() <= 0.1,
            "{clip}: segment durations sum to {total}"
        );
        let m3u8 = playlist(&infos, |i| format!("{i}.ts"));
        assert_eq!(m3u8.matches("#EXTINF").count(), infos.len());
        // Every decoded frame of the reassembled stream is there: count frames.
        let count = |p: &std::path::Path| {
            let out = Command::new("ffprobe")
                .args([
                    "-v",
                    "error",
                    "-count_packets",
                    "-select_streams",
                    "v:0",
                    "-show_entries",
                    "stream=nb_read_packets",
                    "-of",
                    "csv=p=0",
                ])
                .arg(p)
                .output()
                .unwrap();
            // MPEG-TS reports the stream once per program section: take the first figure.
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(count(&path), count(&src), "{clip}: no video packet lost");
    }
}
