//! `vcw classify IMAGE...`

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{GlobalArgs, Outcome, report_error, settings};
use crate::frame::Frame;
use crate::inference::Classifier;
use crate::report::{IMAGE_HEADER, ImageReport, image_row};

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// PNG or JPEG images.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Also write the aligned 112x112 chip of every face the face-api age model saw into
    /// DIR, as raw RGB bytes named `<image number>-<face number>.rgb` (both from 0, in
    /// report order): to check alignment by eye, and for the parity test against face-api.
    #[arg(long, value_name = "DIR")]
    pub face_chips: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: &ClassifyArgs) -> anyhow::Result<Outcome> {
    let (config, policy) = settings(global)?;
    let mut classifier = Classifier::load(&config.inference)?;
    if let Some(dir) = &args.face_chips {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        classifier.keep_face_chips();
    }
    if !global.json {
        println!("{IMAGE_HEADER}");
    }
    let mut worst = Outcome::Allowed;
    for (n, path) in args.images.iter().enumerate() {
        let shown = path.display().to_string();
        let result = Frame::load(path, config.limits.max_pixels())
            .map_err(anyhow::Error::from)
            .and_then(|frame| {
                let mut signals = classifier.classify(&[&frame])?;
                let signals = signals.pop().ok_or_else(|| anyhow::anyhow!("no result"))?;
                let judgement = policy.judge(&[(0.0, &signals)]);
                if let Some(dir) = &args.face_chips {
                    for (k, face) in signals.faces.iter().enumerate() {
                        if let Some(chip) = &face.chip {
                            let file = dir.join(format!("{n}-{k}.rgb"));
                            std::fs::write(&file, chip)
                                .with_context(|| format!("cannot write {}", file.display()))?;
                        }
                    }
                }
                Ok(ImageReport::new(
                    shown.clone(),
                    frame.width,
                    frame.height,
                    signals,
                    judgement,
                    classifier.models().to_vec(),
                    policy.version.clone(),
                ))
            });
        match result {
            Ok(report) => {
                worst = worst.max(report.verdict.into());
                if global.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{}", image_row(&report));
                }
            }
            Err(e) => {
                worst = Outcome::Failed;
                report_error(global.json, &shown, &e);
            }
        }
    }
    Ok(worst)
}
