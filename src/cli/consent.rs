//! `vcw consent issue | revoke | show`

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{GlobalArgs, Outcome, VaultArgs, runtime};
use crate::config::Config;
use crate::consent::{LocalIssuer, parse_ttl};
use crate::vault::Vault;

#[derive(Args, Debug)]
pub struct ConsentArgs {
    #[command(subcommand)]
    pub command: ConsentCommand,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Subcommand, Debug)]
pub enum ConsentCommand {
    /// Mint a consent token with the local issuer (its key is created next to the keyring
    /// if there is none): what `vcw serve` accepts on embedded defaults. A production
    /// deployment's tokens come from its own consent service.
    Issue {
        /// Data subject, as the platform knows it.
        #[arg(long)]
        subject: String,
        /// Purpose granted (repeatable); default: consent.purpose (`moderation`).
        #[arg(long = "purpose", value_name = "PURPOSE")]
        purposes: Vec<String>,
        /// How long consent lasts: 30d, 12h, 45m, 90s.
        #[arg(long, default_value = "30d", value_parser = parse_ttl)]
        ttl: u64,
    },
    /// Revoke a subject's consent in the catalog: its jobs stop, and nothing of it is
    /// served from now on (until a token issued later is presented).
    Revoke {
        /// Data subject, as the platform knows it (hashed before use).
        subject: String,
    },
    /// Print a subject's consent ledger (grant, renew, revoke, expire) as JSON.
    Show {
        /// Data subject, as the platform knows it (hashed before use).
        subject: String,
    },
}

pub fn run(global: &GlobalArgs, args: &ConsentArgs) -> anyhow::Result<Outcome> {
    let (keyring, data_dir) = args.vault.resolve(global)?;
    let config = Config::load(global.config.as_deref(), std::env::vars())?;
    let vault = || async {
        let catalog = super::open_catalog(&config, &data_dir).await?;
        anyhow::Ok(Vault::with_catalog(&keyring, catalog)?)
    };
    match &args.command {
        ConsentCommand::Issue {
            subject,
            purposes,
            ttl,
        } => {
            anyhow::ensure!(!subject.is_empty(), "--subject must not be empty");
            let path = config.consent.local_issuer_path(&keyring);
            let issuer = LocalIssuer::open_or_create(&path)?;
            let purposes = if purposes.is_empty() {
                vec![config.consent.purpose.clone()]
            } else {
                purposes.clone()
            };
            println!("{}", issuer.issue(subject, &purposes, *ttl)?);
        }
        ConsentCommand::Revoke { subject } => {
            let revocation = runtime()?.block_on(async {
                let vault = vault().await?;
                let hash = vault.kms_subject_hash(subject)?;
                let revoked = vault.catalog().revoke_consent(&hash, "cli").await;
                let revoked = revoked.context("recording the revocation")?;
                // In a cluster, the API nodes evict at once rather than within a second.
                let fanout = match &config.cluster.nats_url {
                    Some(url) => {
                        let subject = &config.cluster.revocation_subject;
                        let f = crate::fanout::Fanout::connect(url, subject).await?;
                        Some(f.announce_revocation(vault.catalog(), &hash).await)
                    }
                    None => None,
                };
                anyhow::Ok(serde_json::json!({
                    "at_ms": revoked.at_ms,
                    "jobs_cancelled": revoked.jobs_cancelled,
                    "fanout": fanout,
                }))
            })?;
            println!("{}", serde_json::to_string(&revocation)?);
        }
        ConsentCommand::Show { subject } => {
            let history = runtime()?.block_on(async {
                let vault = vault().await?;
                let hash = vault.kms_subject_hash(subject)?;
                let history = vault.catalog().consent_history(&hash).await;
                history.context("reading the ledger")
            })?;
            println!("{}", serde_json::to_string_pretty(&history)?);
        }
    }
    Ok(Outcome::Allowed)
}
