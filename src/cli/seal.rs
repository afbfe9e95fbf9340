//! `vcw seal IN OUT --subject S` and `vcw open IN OUT [--range START-END]`

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{GlobalArgs, Outcome, VaultArgs, runtime};
use crate::crypto::RangeSource;
use crate::domain::id_hex;
use crate::vault::Vault;

#[derive(Args, Debug)]
pub struct SealArgs {
    /// Plaintext input file, or - for stdin.
    pub input: PathBuf,
    /// Sealed output file, or - for stdout.
    pub output: PathBuf,
    /// Data subject the content belongs to (hashed before use, never stored).
    #[arg(long)]
    pub subject: String,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    /// Sealed input file, or - for stdin (no --range then).
    pub input: PathBuf,
    /// Plaintext output file, or - for stdout.
    pub output: PathBuf,
    /// Only bytes START-END (inclusive, 0-based) of the plaintext; reads only the chunks
    /// they touch.
    #[arg(long, value_name = "START-END", value_parser = parse_range)]
    pub range: Option<(u64, u64)>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').ok_or("expected START-END, e.g. 0-1023")?;
    let start = a.trim().parse::<u64>().map_err(|e| format!("START: {e}"))?;
    let end = b.trim().parse::<u64>().map_err(|e| format!("END: {e}"))?;
    if end < start {
        return Err("END must not be before START".into());
    }
    Ok((start, end))
}

fn is_stdio(p: &Path) -> bool {
    p.as_os_str() == "-"
}

async fn reader(p: &Path) -> anyhow::Result<Box<dyn AsyncRead + Unpin + Send>> {
    Ok(if is_stdio(p) {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(p)
                .await
                .with_context(|| format!("cannot open {}", p.display()))?,
        )
    })
}

/// Output goes to a temp file renamed into place on success, so a failed open or seal
/// never leaves a partial OUT behind (and no plaintext from a chunk that failed).
struct Output {
    temp: Option<(PathBuf, PathBuf)>,
}

impl Output {
    async fn create(p: &Path) -> anyhow::Result<(Self, Box<dyn AsyncWrite + Unpin + Send>)> {
        if is_stdio(p) {
            return Ok((Output { temp: None }, Box::new(tokio::io::stdout())));
        }
        let tmp = p.with_file_name(format!(
            ".{}.vcw-partial",
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .await
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok((
            Output {
                temp: Some((tmp, p.to_path_buf())),
            },
            Box::new(file),
        ))
    }

    async fn commit(self, mut w: Box<dyn AsyncWrite + Unpin + Send>) -> anyhow::Result<()> {
        w.flush().await?;
        w.shutdown().await?;
        if let Some((tmp, dest)) = &self.temp {
            // On disk before the rename publishes it: a crash must not leave an empty
            // or torn OUT under the real name.
            tokio::fs::File::open(tmp).await?.sync_all().await?;
            tokio::fs::rename(tmp, dest).await?;
        }
        Ok(())
    }

    fn abandon(self) {
        if let Some((tmp, _)) = &self.temp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

pub fn seal(global: &GlobalArgs, args: &SealArgs) -> anyhow::Result<Outcome> {
    let (keyring, data_dir) = args.vault.resolve(global)?;
    runtime()?.block_on(async {
        let vault = Vault::load(&keyring, &data_dir).await?;
        let input = reader(&args.input).await?;
        let (out, w) = Output::create(&args.output).await?;
        let mut w = w;
        let location = args.output.display().to_string();
        match vault.seal(&args.subject, &location, input, &mut w).await {
            Ok((row, _)) => {
                out.commit(w).await?;
                eprintln!(
                    "vcw: sealed {} bytes as object {} ({} bytes)",
                    row.plaintext_len,
                    id_hex(&row.object_id),
                    row.sealed_len
                );
                Ok(Outcome::Allowed)
            }
            Err(e) => {
                out.abandon();
                Err(e.into())
            }
        }
    })
}

/// A sealed file read by offset (pread), for range opens.
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl RangeSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(
        &self,
        offset: u64,
        len: usize,
    ) -> impl Future<Output = std::io::Result<Vec<u8>>> + Send {
        let mut buf = vec![0u8; len];
        let result = self.file.read_exact_at(&mut buf, offset).map(|_| buf);
        std::future::ready(result)
    }
}

pub fn open(global: &GlobalArgs, args: &OpenArgs) -> anyhow::Result<Outcome> {
    let (keyring, data_dir) = args.vault.resolve(global)?;
    runtime()?.block_on(async {
        let vault = Vault::load(&keyring, &data_dir).await?;
        let (out, mut w) = Output::create(&args.output).await?;
        let result = match args.range {
            Some((start, end)) => {
                anyhow::ensure!(!is_stdio(&args.input), "--range needs a file, not stdin");
                let source = FileSource::open(&args.input)
                    .with_context(|| format!("cannot open {}", args.input.display()))?;
                vault.open_range(&source, None, start, end, &mut w).await
            }
            None => vault.open(reader(&args.input).await?, None, &mut w).await,
        };
        match result {
            Ok(_) => {
                out.commit(w).await?;
                Ok(Outcome::Allowed)
            }
            Err(e) => {
                out.abandon();
                Err(anyhow::Error::from(e).context(format!("{}", args.input.display())))
            }
        }
    })
}
