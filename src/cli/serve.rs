//! `vcw serve` (API + worker pool on embedded defaults), `vcw api` and `vcw worker`
//! (cluster roles on NATS JetStream, PostgreSQL and S3), and `vcw token create`.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tokio::sync::watch;

use super::{GlobalArgs, Outcome, VaultArgs, settings};
use crate::api::Role;
use crate::audit::AuditSigner;
use crate::catalog::create_private_dir;
use crate::config::Config;
use crate::crypto::LocalKms;
use crate::policy::Policy;
use crate::queue::{JobQueue, LocalQueue};
use crate::service::Service;
use crate::storage::{BlobStore, open_store};
use crate::vault::Vault;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:8080 (port 0 picks a free port) [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Jobs processed at once [default: 1].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Where sealed objects go: a directory or s3://BUCKET/PREFIX [default: <data-dir>/objects].
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// (api) Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// (worker) Jobs processed at once [default: 1].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// NATS server [config cluster.nats_url, VCW__CLUSTER__NATS_URL].
    #[arg(long, value_name = "nats://HOST:PORT")]
    pub nats: Option<String>,
    /// PostgreSQL catalog [config cluster.database_url, VCW__CLUSTER__DATABASE_URL].
    #[arg(long, value_name = "postgres://…")]
    pub database: Option<String>,
    /// Object store, s3://BUCKET/PREFIX [config server.store, VCW__SERVER__STORE].
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bearer token and print it (only its hash is stored: keep it safe). The
    /// token starts with its public id (`vcw_<id>_…`), which `list` and `revoke` use.
    Create {
        /// uploader (upload, submit, own videos), reviewer (results, playback),
        /// privacy-officer (results, erasure) or admin (everything).
        #[arg(long, value_parser = ["uploader", "reviewer", "admin", "privacy-officer"])]
        role: String,
        /// A note to recognise the token by (e.g. who holds it).
        #[arg(long)]
        label: Option<String>,
        /// Days until the token stops working; 0: never (for a service account whose
        /// token is rotated by other means).
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// List tokens: id, role, label, created, expires, and whether revoked or expired.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (from `list`, or the part after `vcw_` of the token):
    /// refused from the next request on, on every node.
    Revoke { id: String },
}

pub fn token(global: &GlobalArgs, args: &TokenArgs) -> anyhow::Result<Outcome> {
    let (_, data_dir) = args.vault.resolve(global)?;
    let rt = super::runtime()?;
    let config = Config::load(global.config.as_deref(), std::env::vars())?;
    rt.block_on(async {
        let catalog = super::open_catalog(&config, &data_dir).await?;
        match &args.command {
            TokenCommand::Create { role, label, days } => {
                let role = Role::parse(role).context("unknown role")?;
                let expires = (*days > 0)
                    .then(|| crate::domain::clock::now_ms() + i64::from(*days) * 86_400_000);
                let token =
                    crate::api::create_token(&catalog, role, label.as_deref(), expires).await?;
                println!("{token}");
            }
            TokenCommand::List { json } => {
                let tokens = catalog.tokens().await?;
                let now = crate::domain::clock::now_ms();
                if !*json {
                    println!(
                        "{:<16}  {:<15}  {:<8}  {:<10}  {:<10}  LABEL",
                        "ID", "ROLE", "STATE", "CREATED", "EXPIRES"
                    );
                }
                for t in tokens {
                    let state = match (t.revoked_at_ms, t.expires_at_ms) {
                        (Some(_), _) => "revoked",
                        (None, Some(e)) if e <= now => "expired",
                        _ => "active",
                    };
                    if *json {
                        let mut v = serde_json::to_value(&t)?;
                        v["state"] = state.into();
                        println!("{v}");
                    } else {
                        let day = |ms: i64| crate::domain::clock::utc_date(ms);
                        println!(
                            "{:<16}  {:<15}  {:<8}  {:<10}  {:<10}  {}",
                            t.id,
                            t.role,
                            state,
                            day(t.created_at_ms),
                            t.expires_at_ms.map_or_else(|| "never".to_string(), day),
                            t.label.unwrap_or_default()
                        );
                    }
                }
            }
            TokenCommand::Revoke { id } => match catalog.revoke_token(id).await? {
                0 => anyhow::bail!("no active token with id {id}"),
                _ => eprintln!("vcw: token {id} revoked"),
            },
        }
        anyhow::Ok(())
    })?;
    Ok(Outcome::Allowed)
}

/// The keyring for embedded mode: created on first start when it is the default one
/// inside the data directory (a configured keyring must exist).
fn ensure_keyring(keyring: &Path, data_dir: &Path, explicit: bool) -> anyhow::Result<()> {
    if keyring.exists() || explicit {
        return Ok(());
    }
    create_private_dir(data_dir)?;
    LocalKms::init(keyring)?;
    eprintln!("vcw: created keyring {}", keyring.display());
    Ok(())
}

pub fn serve(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<Outcome> {
    let (mut config, policy) = settings(global)?;
    if let Some(l) = &args.listen {
        config.server.listen = l.clone();
    }
    if let Some(n) = args.workers {
        config.server.workers = n;
    }
    if let Some(s) = &args.store {
        config.server.store = Some(s.clone());
    }
    config.validate()?;
    crate::media::check_encoders(config.server.transcode).map_err(anyhow::Error::msg)?;
    let (keyring, data_dir) = args.vault.resolve(global)?;
    let explicit = args.vault.keyring.is_some() || config.vault.keyring.is_some();
    ensure_keyring(&keyring, &data_dir, explicit)?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if config.inference.intra_threads == 0 {
        config.inference.intra_threads = (cores / config.server.workers).max(1);
    }
    let rt = super::runtime_threads(cores.clamp(2, 8))?;
    rt.block_on(run_embedded(config, policy, &keyring, &data_dir))?;
    Ok(Outcome::Allowed)
}

async fn run_embedded(
    config: Config,
    policy: Policy,
    keyring: &Path,
    data_dir: &Path,
) -> anyhow::Result<()> {
    // One node may still keep its catalog in PostgreSQL (like `vcw token create`, it then
    // uses `cluster.database_url`); the job queue is the catalog itself either way.
    let vault = Arc::new(match &config.cluster.database_url {
        Some(url) => Vault::with_catalog(
            keyring,
            crate::catalog::Catalog::connect(url.expose()).await?,
        )?,
        None => Vault::load(keyring, data_dir).await?,
    });
    let store_uri = config
        .server
        .store
        .clone()
        .unwrap_or_else(|| data_dir.join("objects").display().to_string());
    let store: Arc<dyn BlobStore> = Arc::from(open_store(&store_uri, &config.s3)?);
    let tmp_dir = data_dir.join("tmp");
    create_private_dir(&tmp_dir)?;
    // Nothing is in flight yet: every staging file is a crash's leftover.
    crate::jobs::reaper::remove_old_parts(&tmp_dir, Duration::ZERO);
    let queue: Arc<dyn JobQueue> = Arc::new(LocalQueue::new(vault.catalog().clone()));
    let consent = crate::consent::verifier_for(&config.consent, keyring, true)?;
    let audit_key = config.audit.signing_key_path(keyring);
    let audit = Some(AuditSigner::open(&audit_key, true).map_err(anyhow::Error::msg)?);
    let cache = segment_cache(&config.server);
    let svc = Arc::new(Service {
        config,
        policy,
        vault,
        store,
        queue,
        tmp_dir,
        consent,
        audit,
        cache,
        fanout: None,
    });
    run_service(svc, true, true).await
}

/// The decrypted-segment cache `server.cache_bytes` asks for.
fn segment_cache(server: &crate::config::ServerConfig) -> Option<crate::cache::SegmentCache> {
    (server.cache_bytes > 0).then(|| {
        let ttl = Duration::from_secs_f64(server.cache_seconds);
        crate::cache::SegmentCache::new(server.cache_bytes, ttl)
    })
}

/// Keeps the cache honest, with or without traffic: expiry and eviction run every second;
/// revocations announced by other nodes (cluster mode) evict at once and are
/// acknowledged; revocations recorded anywhere (any node, `vcw consent revoke`) are read
/// from the ledger every second as well. A node that cannot read the ledger empties its
/// cache, and one that lost the fan-out channel keeps it off until it is connected again
/// and has read the ledger since (fail closed).
async fn tend_cache(svc: Arc<Service>, mut stop: watch::Receiver<bool>) {
    let Some(cache) = &svc.cache else { return };
    let fanout = svc.fanout.as_ref();
    let mut announcements = None;
    let mut seen: Option<i64> = None;
    // Set from a loss until the cache is back on (said in the log, at warn).
    let mut was_lost = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(message) = next_announcement(&mut announcements) => {
                if let Some(f) = fanout {
                    f.handle(message, |subject| { cache.revoke(subject); }).await;
                }
                continue;
            }
            _ = async { if let Some(f) = fanout { f.lost_changed().await } else { std::future::pending().await } } => {}
            _ = stop.changed() => return,
        }
        if let Some(f) = fanout {
            if f.take_lost() {
                announcements = None;
            }
            if announcements.is_none() && seen.is_some() && !was_lost {
                tracing::warn!("revocation fan-out lost: cache off until caught up");
                was_lost = true;
            }
            if announcements.is_none() {
                // Not subscribed (at start, or the subscription ended): announcements
                // may have been missed.
                cache.suspend();
                match f.subscribe().await {
                    Ok(sub) => announcements = Some(sub),
                    Err(e) => tracing::warn!("{e}"),
                }
            }
            if let Err(e) = svc.catalog().node_heartbeat(f.node()).await {
                tracing::warn!("node heartbeat: {e}");
            }
        }
        // Subscribed before reading the ledger: every revocation is then either in this
        // read or announced to the subscription.
        let listening = fanout.is_none_or(|f| announcements.is_some() && f.connected());
        match svc.catalog().revocations_after(seen).await {
            Ok((last, subjects)) => {
                for subject in &subjects {
                    cache.revoke(subject);
                }
                seen = Some(last);
                if listening && cache.is_suspended() {
                    if was_lost {
                        tracing::warn!("revocation fan-out back and the ledger read: cache on");
                        was_lost = false;
                    }
                    cache.resume();
                }
            }
            Err(e) => {
                tracing::warn!("cache: cannot read revocations, emptying the cache: {e}");
                cache.suspend();
            }
        }
        cache.maintain();
    }
}

/// The next announcement, or never when not subscribed (a subscription that ended is
/// dropped, and the channel counts as lost).
async fn next_announcement(
    sub: &mut Option<async_nats::Subscriber>,
) -> Option<async_nats::Message> {
    use futures_util::StreamExt as _;
    let Some(s) = sub else {
        return std::future::pending().await;
    };
    let next = s.next().await;
    if next.is_none() {
        *sub = None;
    }
    next
}

/// Refreshes what lives elsewhere: jobs by state and the outbox (catalog), and the
/// segment cache's counters.
async fn refresh_metrics(svc: &Service) {
    let m = crate::metrics::metrics();
    match svc.catalog().job_counts().await {
        Ok(counts) => {
            for state in crate::domain::JobState::ALL {
                let n = counts.get(state.as_str()).copied().unwrap_or(0);
                m.jobs.with_label_values(&[state.as_str()]).set(n);
            }
        }
        Err(e) => tracing::warn!("metrics: job counts: {e}"),
    }
    let attempts = svc.config.server.webhook_attempts;
    match svc.catalog().outbox_backlog(attempts).await {
        Ok((pending, oldest_ms)) => {
            m.outbox_pending.set(pending);
            let now = crate::domain::clock::now_ms();
            let lag = oldest_ms.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
            m.outbox_lag.set(lag);
        }
        Err(e) => tracing::warn!("metrics: outbox: {e}"),
    }
    if let Some(cache) = &svc.cache {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &cache.stats;
        let requests = |r: &str| m.cache_requests.with_label_values(&[r]);
        crate::metrics::catch_up(&requests("hit"), s.hits.load(Relaxed));
        crate::metrics::catch_up(&requests("miss"), s.misses.load(Relaxed));
        let evictions = |c: &str| m.cache_evictions.with_label_values(&[c]);
        crate::metrics::catch_up(&evictions("expired"), s.evicted_expired.load(Relaxed));
        crate::metrics::catch_up(&evictions("size"), s.evicted_size.load(Relaxed));
        crate::metrics::catch_up(&evictions("revoked"), s.evicted_revoked.load(Relaxed));
        m.cache_bytes.set(cache.bytes() as i64);
    }
}

/// Refreshes the metrics every `every` until `stop`.
async fn keep_metrics(svc: Arc<Service>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        refresh_metrics(&svc).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Which cluster role to run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClusterRole {
    Api,
    Worker,
}

pub fn cluster(
    global: &GlobalArgs,
    args: &ClusterArgs,
    role: ClusterRole,
) -> anyhow::Result<Outcome> {
    let (mut config, policy) = settings(global)?;
    if let Some(l) = &args.listen {
        config.server.listen = l.clone();
    }
    if let Some(n) = args.workers {
        config.server.workers = n;
    }
    if let Some(s) = &args.store {
        config.server.store = Some(s.clone());
    }
    if let Some(n) = &args.nats {
        config.cluster.nats_url = Some(n.clone());
    }
    if let Some(d) = &args.database {
        config.cluster.database_url = Some(crate::secret::Secret::new(d.clone()));
    }
    config.validate()?;
    crate::media::check_encoders(config.server.transcode).map_err(anyhow::Error::msg)?;
    let (keyring, _) = args.vault.resolve(global)?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if config.inference.intra_threads == 0 {
        config.inference.intra_threads = (cores / config.server.workers).max(1);
    }
    let rt = super::runtime_threads(cores.clamp(2, 8))?;
    rt.block_on(async {
        let svc = cluster_service(config, policy, &keyring).await?;
        run_service(svc, role == ClusterRole::Api, role == ClusterRole::Worker).await
    })?;
    Ok(Outcome::Allowed)
}

async fn cluster_service(
    config: Config,
    policy: Policy,
    keyring: &Path,
) -> anyhow::Result<Arc<Service>> {
    let c = &config.cluster;
    let database = c
        .database_url
        .as_ref()
        .map(crate::secret::Secret::expose)
        .context("cluster.database_url is required (--database or VCW__CLUSTER__DATABASE_URL)")?;
    let nats = c
        .nats_url
        .clone()
        .context("cluster.nats_url is required (--nats or VCW__CLUSTER__NATS_URL)")?;
    let store_uri =
        config.server.store.as_deref().context(
            "server.store is required (--store s3://BUCKET/PREFIX or VCW__SERVER__STORE)",
        )?;
    let catalog = crate::catalog::Catalog::connect(database).await?;
    let vault = Arc::new(Vault::with_catalog(keyring, catalog)?);
    let store: Arc<dyn BlobStore> = Arc::from(open_store(store_uri, &config.s3)?);
    let queue = crate::queue::NatsQueue::connect(crate::queue::NatsSettings {
        url: nats.clone(),
        stream: c.stream.clone(),
        subject: c.subject.clone(),
        consumer: c.consumer.clone(),
        ack_wait: Duration::from_secs_f64(config.server.lease_seconds),
    })
    .await?;
    let tmp_dir = std::env::temp_dir().join(format!("vcw-{}", std::process::id()));
    create_private_dir(&tmp_dir)?;
    let consent = crate::consent::verifier_for(&config.consent, keyring, false)?;
    let audit_key = config.audit.signing_key_path(keyring);
    let audit = if audit_key.exists() {
        Some(AuditSigner::open(&audit_key, false).map_err(anyhow::Error::msg)?)
    } else {
        tracing::warn!(path = %audit_key.display(), "no audit signing key: this process signs no checkpoints");
        None
    };
    let cache = segment_cache(&config.server);
    let fanout = crate::fanout::Fanout::connect(&nats, &c.revocation_subject).await?;
    Ok(Arc::new(Service {
        config,
        policy,
        vault,
        store,
        queue: Arc::new(queue),
        tmp_dir,
        consent,
        audit,
        cache,
        fanout: Some(fanout),
    }))
}

/// Runs the API and/or the worker pool (with the webhook dispatcher) until SIGTERM or
/// SIGINT, then drains: no new requests or jobs, in-flight jobs get `server.drain_seconds`.
async fn run_service(svc: Arc<Service>, api: bool, work: bool) -> anyhow::Result<()> {
    let server = svc.config.server.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers =
        work.then(|| tokio::spawn(crate::jobs::worker::run_pool(svc.clone(), stop_rx.clone())));
    // Every process delivers the outbox (an API replica's job announcements must go out
    // even with no worker in it); the reaper runs where workers do.
    let webhooks = match &server.webhook_secret {
        Some(secret) => {
            let policy = crate::outbound::OutboundPolicy::new(&server.webhook_allow)
                .map_err(anyhow::Error::msg)?;
            let timeout = Duration::from_secs_f64(server.webhook_timeout_seconds);
            Some(crate::webhook::WebhookClient::new(
                secret.expose(),
                policy,
                timeout,
            )?)
        }
        None => None,
    };
    let dispatcher = crate::dispatcher::Dispatcher::new(
        svc.catalog().clone(),
        svc.queue.clone(),
        webhooks,
        server.webhook_attempts,
        Duration::from_secs_f64(server.webhook_retry_base_seconds),
        server.webhook_per_host,
        Duration::from_secs_f64(server.webhook_timeout_seconds),
    );
    let dispatcher = tokio::spawn(Arc::new(dispatcher).run(stop_rx.clone()));
    let reaper = work.then(|| tokio::spawn(crate::jobs::reaper::run(svc.clone(), stop_rx.clone())));
    tokio::spawn(keep_metrics(
        svc.clone(),
        Duration::from_secs(5),
        stop_rx.clone(),
    ));
    if api {
        tokio::spawn(tend_cache(svc.clone(), stop_rx.clone()));
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("vcw: stopping: draining in-flight work");
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx.clone();
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    if api {
        let listener = crate::api::bind(&server.listen).await?;
        let scheme = if server.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        // One line, written without panicking: whoever started vcw may have stopped
        // reading its output (a closed pipe must not take the service down).
        let addr = listener.local_addr()?;
        let _ = writeln!(
            std::io::stdout(),
            "vcw: listening on {scheme}://{addr} (store {}, queue {}, {} worker(s)); dashboard: {scheme}://{}/dashboard",
            svc.store.describe(),
            svc.queue.describe(),
            if work { server.workers } else { 0 },
            shown_addr(addr),
        );
        crate::api::serve(svc, listener, shutdown).await?;
    } else {
        // Liveness and metrics for the kubelet and Prometheus.
        let listener = crate::api::bind(&server.listen).await?;
        let _ = writeln!(
            std::io::stdout(),
            "vcw: worker running, health and metrics on http://{} (store {}, queue {}, {} worker(s))",
            listener.local_addr()?,
            svc.store.describe(),
            svc.queue.describe(),
            server.workers
        );
        axum::serve(listener, crate::api::worker_router())
            .with_graceful_shutdown(shutdown)
            .await?;
    }
    let drain = Duration::from_secs_f64(server.drain_seconds);
    if let Some(w) = workers
        && tokio::time::timeout(drain, w).await.is_err()
    {
        eprintln!("vcw: drain timed out; unfinished jobs will be retried after their lease");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), dispatcher).await;
    if let Some(r) = reaper {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// An address a browser can open: a wildcard bind is reached through loopback.
fn shown_addr(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}
