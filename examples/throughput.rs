//! vcw's side of scripts/bench: times the sampler or each model on given inputs and
//! prints `name frames seconds` lines for the script to put next to the peers' figures.
//!
//!   throughput sample CLIP MAX_GAP MIN_RATE
//!   throughput models IMAGE...
//!   throughput scan CLIP      (`vcw scan`'s work, and the part of it spent inside
//!                              ONNX Runtime: the pipeline's floor)

use std::time::Instant;

use vcw::config::Config;
use vcw::frame::Frame;
use vcw::inference::Classifier;
use vcw::media::{MediaSource, Sampler};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sample") if args.len() == 4 => {
            let mut config = Config::default();
            config.sampler.max_gap = args[2].parse()?;
            config.sampler.min_rate = args[3].parse()?;
            let sampler = Sampler {
                config: &config.sampler,
                limits: &config.limits,
            };
            let start = Instant::now();
            let stats = sampler.run(&MediaSource::file(args[1].as_ref()), |_| Ok(()), |_, _| {})?;
            println!(
                "sample {} {:.4} decoded={} keyframes_only={}",
                stats.sampled_frames,
                start.elapsed().as_secs_f64(),
                stats.decoded_frames,
                stats.keyframes_only
            );
        }
        Some("models") if args.len() > 1 => {
            let config = Config::default();
            let mut classifier = Classifier::load(&config.inference)?;
            let frames: Vec<Frame> = args[1..]
                .iter()
                .map(|p| Frame::load(p.as_ref(), config.limits.max_pixels()))
                .collect::<Result<_, _>>()?;
            let refs: Vec<&Frame> = frames.iter().collect();
            let batch = config.inference.batch_size;
            // Warm-up: first runs allocate ONNX Runtime's arenas.
            classifier.classify(&refs[..batch.min(refs.len())])?;
            let start = Instant::now();
            for chunk in refs.chunks(batch) {
                classifier.nsfw(chunk)?;
            }
            println!(
                "open_nsfw {} {:.4}",
                refs.len(),
                start.elapsed().as_secs_f64()
            );
            let start = Instant::now();
            let mut dets = Vec::new();
            for chunk in refs.chunks(batch) {
                dets.extend(classifier.detect(chunk)?);
            }
            println!(
                "nudenet {} {:.4}",
                refs.len(),
                start.elapsed().as_secs_f64()
            );
            let start = Instant::now();
            let mut found = Vec::new();
            for chunk in refs.chunks(batch) {
                found.extend(classifier.find_faces(chunk)?);
            }
            let faces: usize = found.iter().map(Vec::len).sum();
            println!(
                "centerface {} {:.4}",
                refs.len(),
                start.elapsed().as_secs_f64()
            );
            let start = Instant::now();
            for ((chunk, f), d) in refs
                .chunks(batch)
                .zip(found.chunks(batch))
                .zip(dets.chunks(batch))
            {
                classifier.judge_faces(chunk, f, d)?;
            }
            println!("age {} {:.4}", faces, start.elapsed().as_secs_f64());
        }
        Some("scan") if args.len() == 2 => {
            let config = Config::default();
            let mut classifier = Classifier::load(&config.inference)?;
            let policy = vcw::policy::Policy::builtin();
            let clip = MediaSource::file(args[1].as_ref());
            let start = Instant::now();
            let report =
                vcw::scan::scan_file(&clip, &mut classifier, &config, &policy, &|_, _| {})?;
            let wall = start.elapsed().as_secs_f64();
            let in_scan = classifier.model_time();
            // The peer: the same frames through the same models with nothing else
            // running. Each is decoded (by seeking) before its batch runs, so decoding
            // never competes with the models; only the models' time is counted.
            let mut times = report.sampled.clone();
            times.sort_by(f64::total_cmp);
            times.dedup();
            let windows: Vec<(f64, f64)> = times.iter().map(|&t| (t, t)).collect();
            let sampler = Sampler {
                config: &config.sampler,
                limits: &config.limits,
            };
            let batch = config.inference.batch_size;
            let mut pending: Vec<Frame> = Vec::with_capacity(batch);
            let mut frames = 0;
            let before = classifier.model_time();
            let mut run = |pending: &mut Vec<Frame>| -> Result<(), String> {
                let refs: Vec<&Frame> = pending.iter().collect();
                classifier.classify(&refs).map_err(|e| e.to_string())?;
                frames += pending.len();
                pending.clear();
                Ok(())
            };
            sampler.around(&clip, &windows, 1.0, |f| {
                pending.push(f.image);
                if pending.len() == batch {
                    run(&mut pending)
                } else {
                    Ok(())
                }
            })?;
            run(&mut pending).map_err(anyhow::Error::msg)?;
            let alone = classifier.model_time() - before;
            println!(
                "scan {} {:.4} model_seconds_in_scan={:.4} model_alone {} {:.4}",
                report.sampled.len(),
                wall,
                in_scan.as_secs_f64(),
                frames,
                alone.as_secs_f64()
            );
        }
        _ => anyhow::bail!(
            "usage: throughput sample CLIP MAX_GAP MIN_RATE | throughput models IMAGE... | throughput scan CLIP"
        ),
    }
    Ok(())
}
