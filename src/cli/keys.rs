//! `vcw keys init | rotate | retire | shred`

use clap::{Args, Subcommand};

use super::{GlobalArgs, Outcome, VaultArgs, runtime};
use crate::crypto::LocalKms;
use crate::domain::parse_id;
use crate::vault::Vault;

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a new keyring (KEK version 1 and the subject-hash salt), mode 0600.
    Init,
    /// Add a KEK version and rewrap every subject key under it (content is not re-encrypted).
    Rotate,
    /// Destroy KEK versions no backup can need any more, so that shredded keys stay
    /// shredded even in old catalog backups (PostgreSQL keeps old row versions, WAL and
    /// base backups). Retires each version that is not current, wraps no live subject
    /// key, and was superseded by `vcw keys rotate` more than the backup retention ago.
    /// Rotate regularly (say monthly): a shred is then final in every backup within one
    /// rotation period plus the backup retention.
    Retire {
        /// How long the catalog's backups (base backups, archived WAL, snapshots) are
        /// kept, in days.
        #[arg(long, default_value_t = 35)]
        backup_retention_days: u64,
    },
    /// Crypto-shred: destroy a subject's key (every object of the subject) or one object's key.
    Shred {
        /// Data-subject identifier as the platform knows it (hashed before use, never stored).
        #[arg(long, conflicts_with = "object", required_unless_present = "object")]
        subject: Option<String>,
        /// Object id (32 hex digits, as printed by `vcw seal`).
        #[arg(long)]
        object: Option<String>,
    },
}

pub fn run(global: &GlobalArgs, args: &KeysArgs) -> anyhow::Result<Outcome> {
    let (keyring, data_dir) = args.vault.resolve(global)?;
    let config = crate::config::Config::load(global.config.as_deref(), std::env::vars())?;
    // The cluster's catalog when `cluster.database_url` is set, as the service uses.
    let vault = || async {
        let catalog = super::open_catalog(&config, &data_dir).await?;
        anyhow::Ok(Vault::with_catalog(&keyring, catalog)?)
    };
    match &args.command {
        KeysCommand::Init => {
            if let Some(parent) = keyring.parent() {
                crate::catalog::create_private_dir(parent)?;
            }
            LocalKms::init(&keyring)?;
            eprintln!(
                "vcw: created keyring {} (KEK version 1, mode 0600)",
                keyring.display()
            );
        }
        KeysCommand::Rotate => {
            let (version, count) = runtime()?
                .block_on(async { vault().await?.rotate().await.map_err(anyhow::Error::from) })?;
            println!("KEK version {version} is current; {count} subject key(s) rewrapped");
        }
        KeysCommand::Retire {
            backup_retention_days,
        } => {
            let retention = std::time::Duration::from_secs(backup_retention_days * 86_400);
            let report = runtime()?.block_on(async {
                vault()
                    .await?
                    .retire(retention)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            println!("{}", serde_json::to_string(&report)?);
        }
        KeysCommand::Shred { subject, object } => {
            // Parse before touching anything, so a typo shreds nothing.
            let object_id = match object {
                Some(o) => Some(parse_id(o).ok_or_else(|| {
                    anyhow::anyhow!("--object {o}: expected 32 hex digits (an object id)")
                })?),
                None => None,
            };
            let report = runtime()?.block_on(async {
                let vault = vault().await?;
                match (subject, object_id) {
                    (Some(s), _) => vault.shred_subject(s).await.map_err(anyhow::Error::from),
                    (None, Some(id)) => vault.shred_object(&id).await.map_err(anyhow::Error::from),
                    (None, None) => Err(anyhow::anyhow!("give --subject or --object")),
                }
            })?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(Outcome::Allowed)
}
