//! One process, several workers: their classifiers share one set of loaded sessions and,
//! running at the same time, give exactly the answers each gives alone.

use vcw::config::Config;
use vcw::frame::Frame;
use vcw::inference::Classifier;

use crate::util::{asset, ffmpeg};

#[test]
fn workers_share_the_sessions_and_agree_when_they_run_together() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    // A face (carphone) and a street (bikes), so every model has work.
    let frames: Vec<Frame> = [("carphone_pristine.mp4", "2"), ("bikes.mp4", "3")]
        .iter()
        .map(|(clip, t)| {
            let png = dir.path().join(format!("{clip}.png"));
            let src = asset(&format!("samples/{clip}"));
            ffmpeg(
                &["-ss", t, "-i", src.to_str().unwrap(), "-frames:v", "1"]
                    .into_iter()
                    .chain(["-pix_fmt", "rgb24", png.to_str().unwrap()])
                    .collect::<Vec<_>>(),
            );
            Frame::load(&png, config.limits.max_pixels()).unwrap()
        })
        .collect();
    let frames: Vec<&Frame> = frames.iter().collect();

    let mut first = Classifier::load(&config.inference).unwrap();
    let second = Classifier::load(&config.inference).unwrap();
    assert!(first.shares_models_with(&second));
    let alone = first.classify(&frames).unwrap();
    assert!(
        alone.iter().any(|s| !s.faces.is_empty()),
        "carphone has a face"
    );

    let together: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = [first, second]
            .into_iter()
            .map(|mut c| {
                let frames = &frames;
                scope.spawn(move || {
                    (0..3)
                        .map(|_| c.classify(frames).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(together.len(), 6);
    for signals in together {
        assert_eq!(signals, alone);
    }

    // Sessions built differently are not shared.
    let mut other = config.inference.clone();
    other.intra_threads = 1;
    let single = Classifier::load(&other).unwrap();
    let again = Classifier::load(&config.inference).unwrap();
    assert!(!single.shares_models_with(&again));
}
