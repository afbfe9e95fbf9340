//! `vcw audit verify | export | checkpoint | key | verify-receipt`

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};

use super::{GlobalArgs, Outcome, VaultArgs, runtime};
use crate::audit::{
    AuditSigner, ChainCheck, Checkpoint, Record, SignedStatement, signed_by, statement_signed_by,
};
use crate::config::Config;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the audit log: the hash chain, the signed checkpoints, and that nothing was
    /// edited, deleted, inserted, reordered or cut off; names the first bad record.
    /// Exit status 2 when the log does not verify.
    Verify {
        /// An export (`vcw audit export`) to verify offline instead of the catalog.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The deployment's public key (`vcw audit key`); default: the signing key's.
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
    },
    /// Write the log for an auditor as JSON lines: `{"checkpoint": …}` lines, then
    /// `{"record": …}` lines in sequence order.
    Export {
        /// Output file (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Sign a checkpoint of the chain's head now (the reaper does it every
    /// audit.checkpoint_seconds).
    Checkpoint,
    /// Print the deployment's public key (PEM), which verifies the checkpoints and the
    /// deletion receipts.
    Key,
    /// Verify a deletion receipt (what `DELETE /v1/subjects/{subject}` answered) offline.
    /// Exit status 2 when the signature does not verify.
    VerifyReceipt {
        /// The receipt (JSON).
        file: PathBuf,
        /// The deployment's public key (`vcw audit key`); default: the signing key's.
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
    },
}

/// One line of an export.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Checkpoint(Checkpoint),
    Record(Record),
}

pub fn run(global: &GlobalArgs, args: &AuditArgs) -> anyhow::Result<Outcome> {
    let (keyring, data_dir) = args.vault.resolve(global)?;
    let config = Config::load(global.config.as_deref(), std::env::vars())?;
    let key_path = config.audit.signing_key_path(&keyring);
    let signer = || AuditSigner::open(&key_path, false).map_err(anyhow::Error::msg);
    let catalog = || super::open_catalog(&config, &data_dir);
    match &args.command {
        AuditCommand::Key => {
            let pem = signer()?
                .verifying_key()
                .to_public_key_pem(Default::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            print!("{pem}");
        }
        AuditCommand::Checkpoint => {
            let signer = signer()?;
            // The checkpoint now covering the head: new, or the one that already did.
            let c = runtime()?.block_on(async {
                let catalog = catalog().await?;
                crate::audit::checkpoint(&catalog, &signer).await?;
                anyhow::Ok(catalog.audit_checkpoints().await?.pop())
            })?;
            println!("{}", serde_json::to_string(&c)?);
        }
        AuditCommand::Export { out } => {
            let mut w: Box<dyn Write> = match out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| p.display().to_string())?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            runtime()?.block_on(async {
                let catalog = catalog().await?;
                for c in catalog.audit_checkpoints().await? {
                    serde_json::to_writer(&mut w, &Line::Checkpoint(c))?;
                    w.write_all(b"\n")?;
                }
                let mut after = i64::MIN;
                loop {
                    let page = catalog.audit_records(after, 10_000).await?;
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    for r in page {
                        serde_json::to_writer(&mut w, &Line::Record(r))?;
                        w.write_all(b"\n")?;
                    }
                }
                w.flush()?;
                anyhow::Ok(())
            })?;
        }
        AuditCommand::VerifyReceipt { file, key } => {
            let key = public_key(key.as_deref(), signer)?;
            let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
            let receipt: SignedStatement = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a receipt", file.display()))?;
            if !statement_signed_by(&key, &receipt) {
                eprintln!(
                    "vcw: {}: the receipt's signature does not verify",
                    file.display()
                );
                return Ok(Outcome::Failed);
            }
            println!("{}", serde_json::to_string_pretty(&receipt.body)?);
        }
        AuditCommand::Verify { file, key } => {
            let key = public_key(key.as_deref(), signer)?;
            let verdict = match file {
                Some(path) => verify_file(path, &key)?,
                None => runtime()?.block_on(async {
                    let catalog = catalog().await?;
                    anyhow::Ok(crate::audit::verify_catalog(&catalog, &key).await?)
                })?,
            };
            match verdict {
                Ok(v) => println!("{}", serde_json::to_string(&v)?),
                Err(t) => {
                    eprintln!("vcw: the audit log does not verify: {t}");
                    return Ok(Outcome::Failed);
                }
            }
        }
    }
    Ok(Outcome::Allowed)
}

/// The public key from a PEM file, or the deployment's own.
fn public_key(
    pem: Option<&std::path::Path>,
    signer: impl Fn() -> anyhow::Result<AuditSigner>,
) -> anyhow::Result<VerifyingKey> {
    match pem {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            VerifyingKey::from_public_key_pem(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
        None => Ok(signer()?.verifying_key()),
    }
}

/// Verifies an export: its checkpoints first, then its records in file order.
fn verify_file(
    path: &std::path::Path,
    key: &VerifyingKey,
) -> anyhow::Result<Result<crate::audit::Verified, crate::audit::Tamper>> {
    let open = || -> anyhow::Result<std::io::BufReader<std::fs::File>> {
        let f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        Ok(std::io::BufReader::new(f))
    };
    let parse = |n: usize, line: &str| -> anyhow::Result<Line> {
        serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), n + 1))
    };
    let mut checkpoints = Vec::new();
    for (n, line) in open()?.lines().enumerate() {
        if let Line::Checkpoint(c) = parse(n, &line?)? {
            checkpoints.push(c);
        }
    }
    checkpoints.sort_by_key(|c| c.seq);
    let mut check = match ChainCheck::new(&checkpoints, |c| signed_by(key, c)) {
        Ok(c) => c,
        Err(t) => return Ok(Err(t)),
    };
    // Which record has a given hash, to tell a moved record from an inserted one: read
    // again only when the chain breaks.
    let find = |hash: &str| -> Option<i64> {
        let reader = open().ok()?;
        reader
            .lines()
            .map_while(Result::ok)
            .find_map(|l| match serde_json::from_str(&l) {
                Ok(Line::Record(r)) if r.hash == hash => Some(r.seq),
                _ => None,
            })
    };
    for (n, line) in open()?.lines().enumerate() {
        if let Line::Record(r) = parse(n, &line?)?
            && let Err(t) = check.push(&r, find)
        {
            return Ok(Err(t));
        }
    }
    if checkpoints.is_empty() {
        bail!("{}: no checkpoint to verify against", path.display());
    }
    Ok(check.finish())
}
