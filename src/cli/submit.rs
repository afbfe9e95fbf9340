//! `vcw submit`: send a video (streamed PUT) or an S3 reference (POST /v1/jobs) to a
//! running vcw service, and optionally wait for the verdict.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{GlobalArgs, Outcome};

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The video to upload (streamed, never buffered whole).
    #[arg(
        value_name = "FILE",
        required_unless_present = "s3",
        conflicts_with = "s3"
    )]
    pub file: Option<PathBuf>,
    /// Instead of a file: an object the service reads from S3.
    #[arg(long, value_name = "s3://BUCKET/KEY")]
    pub s3: Option<String>,
    /// Base URL of the service.
    #[arg(long, env = "VCW_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Bearer token with the uploader or admin role.
    #[arg(long, env = "VCW_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The data subject's consent token (JWT) from the platform's consent service.
    #[arg(
        long,
        env = "VCW_CONSENT",
        hide_env_values = true,
        required_unless_present = "subject"
    )]
    pub consent: Option<String>,
    /// Instead of --consent: mint a token for this subject with the local issuer (the key
    /// `vcw serve` created next to the keyring), valid for an hour.
    #[arg(long, conflicts_with = "consent")]
    pub subject: Option<String>,
    #[command(flatten)]
    pub vault: super::VaultArgs,
    /// Video id (32 hex digits); repeating a submission with the same id is safe.
    #[arg(long)]
    pub id: Option<String>,
    /// Webhook for the result (the server needs a webhook_secret).
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Wait for the job to finish and print the result (exit status from the verdict).
    #[arg(long)]
    pub wait: bool,
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Needs no configuration: everything comes from flags (or VCW_SERVER / VCW_TOKEN).
pub fn run(global: &GlobalArgs, args: &SubmitArgs) -> anyhow::Result<Outcome> {
    let consent = match (&args.consent, &args.subject) {
        (Some(token), _) => token.clone(),
        (None, Some(subject)) => {
            let (keyring, _) = args.vault.resolve(global)?;
            let config = crate::config::Config::load(global.config.as_deref(), std::env::vars())?;
            let path = config.consent.local_issuer_path(&keyring);
            let issuer = crate::consent::LocalIssuer::open(&path).with_context(
                || "no local consent issuer: pass --consent TOKEN, or start `vcw serve` once",
            )?;
            issuer.issue(subject, std::slice::from_ref(&config.consent.purpose), 3600)?
        }
        (None, None) => bail!("give --consent TOKEN or --subject S"),
    };
    let rt = super::runtime()?;
    rt.block_on(submit(args, &consent))
}

async fn submit(args: &SubmitArgs, consent: &str) -> anyhow::Result<Outcome> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build(https);
    let base = args.server.trim_end_matches('/');
    let auth = format!("Bearer {}", args.token);
    let id = match &args.id {
        Some(id) => id.clone(),
        None => crate::domain::id_hex(&*crate::crypto::random::<16>()?),
    };
    let request = match (&args.file, &args.s3) {
        (Some(file), _) => {
            let f = tokio::fs::File::open(file)
                .await
                .with_context(|| format!("{}", file.display()))?;
            let len = f.metadata().await?.len();
            let stream = futures_util::StreamExt::map(
                tokio_util::io::ReaderStream::with_capacity(f, 1 << 16),
                |r| r.map(Frame::data),
            );
            let mut req = hyper::Request::put(format!("{base}/v1/videos/{id}"))
                .header("authorization", &auth)
                .header("content-length", len)
                .header("content-type", "application/octet-stream")
                .header("vcw-consent", consent);
            if let Some(cb) = &args.callback_url {
                req = req.header("vcw-callback-url", cb);
            }
            req.body(BodyExt::boxed(StreamBody::new(stream)))?
        }
        (None, Some(url)) => {
            let job = serde_json::json!({
                "id": id,
                "source": {"s3": {"url": url}},
                "callback_url": args.callback_url,
            });
            hyper::Request::post(format!("{base}/v1/jobs"))
                .header("authorization", &auth)
                .header("vcw-consent", consent)
                .header("content-type", "application/json")
                .body(full(job.to_string()))?
        }
        (None, None) => bail!("give a FILE or --s3 URL"),
    };
    let (status, body) = call(&client, request).await?;
    if !(200..300).contains(&status) {
        bail!("server answered {status}: {body}");
    }
    if !args.wait {
        println!("{body}");
        return Ok(Outcome::Allowed);
    }
    loop {
        let req = hyper::Request::get(format!("{base}/v1/videos/{id}"))
            .header("authorization", &auth)
            .body(full(String::new()))?;
        let (status, body) = call(&client, req).await?;
        if status != 200 {
            bail!("server answered {status}: {body}");
        }
        let v: Value = serde_json::from_str(&body)?;
        match v["state"].as_str() {
            Some("done") => {
                println!("{body}");
                let verdict: crate::policy::Action =
                    serde_json::from_value(v["verdict"].clone()).context("verdict")?;
                return Ok(verdict.into());
            }
            Some("failed" | "dead" | "cancelled") => {
                println!("{body}");
                return Ok(Outcome::Failed);
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

fn full(s: String) -> Body {
    BodyExt::boxed(Full::new(Bytes::from(s)).map_err(|never| match never {}))
}

async fn call<C>(
    client: &Client<C, Body>,
    req: hyper::Request<Body>,
) -> anyhow::Result<(u16, String)>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let resp = client
        .request(req)
        .await
        .context("cannot reach the server")?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
