use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use cm_export::emulator::{Emulator, EmulatorConfig, RateLimitConfig};

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on; port 0 picks a free one (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// An API key the emulator accepts (repeatable).
    #[arg(long = "api-key", required = true)]
    api_keys: Vec<String>,
    /// A list: `LIST_ID` or `LIST_ID=Title` (repeatable).
    #[arg(long = "list")]
    lists: Vec<String>,
    /// An OAuth client: `ID:SECRET` (repeatable).
    #[arg(long = "oauth-client")]
    oauth_clients: Vec<String>,
    /// Requests allowed per API key per window.
    #[arg(long, requires = "rate_window")]
    rate_limit: Option<u64>,
    /// The rate-limit window, in seconds.
    #[arg(long, requires = "rate_limit")]
    rate_window: Option<u64>,
    /// Share of requests answered 500 without being applied (0..=1).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Share of requests whose connection is dropped; half after applying (0..=1).
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Answer delay: `MS` or `MIN-MAX`.
    #[arg(long)]
    latency_ms: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn latency(text: &str) -> anyhow::Result<(Duration, Duration)> {
    let parse = |s: &str| -> anyhow::Result<Duration> {
        Ok(Duration::from_millis(s.trim().parse().with_context(|| {
            format!("`--latency-ms {text}`: `{s}` is not a number of milliseconds")
        })?))
    };
    let (min, max) = match text.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(text)?, parse(text)?),
    };
    if max < min {
        bail!("`--latency-ms {text}`: MIN is over MAX");
    }
    Ok((min, max))
}

pub fn config(args: &EmulatorArgs) -> anyhow::Result<EmulatorConfig> {
    for (name, value) in [("--fail-rate", args.fail_rate), ("--drop-rate", args.drop_rate)] {
        if !(0.0..=1.0).contains(&value) {
            bail!("`{name} {value}`: give a share between 0 and 1");
        }
    }
    if args.fail_rate + args.drop_rate > 1.0 {
        bail!("--fail-rate and --drop-rate add up to more than 1");
    }
    let lists = args
        .lists
        .iter()
        .map(|l| match l.split_once('=') {
            Some((id, title)) => (id.to_owned(), title.to_owned()),
            None => (l.clone(), format!("List {l}")),
        })
        .collect();
    let oauth_clients = args
        .oauth_clients
        .iter()
        .map(|c| {
            c.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
                .with_context(|| "`--oauth-client` takes ID:SECRET".to_owned())
        })
        .collect::<anyhow::Result<_>>()?;
    let rate_limit = match (args.rate_limit, args.rate_window) {
        (Some(0), _) | (_, Some(0)) => bail!("--rate-limit and --rate-window must be at least 1"),
        (Some(requests), Some(window)) => Some(RateLimitConfig {
            requests,
            window: Duration::from_secs(window),
        }),
        _ => None,
    };
    Ok(EmulatorConfig {
        api_keys: args.api_keys.clone(),
        lists,
        oauth_clients,
        rate_limit,
        fail_rate: args.fail_rate,
        drop_rate: args.drop_rate,
        latency: args.latency_ms.as_deref().map(latency).transpose()?,
        seed: args.seed,
        ..EmulatorConfig::default()
    })
}

pub async fn serve(args: EmulatorArgs) -> anyhow::Result<u8> {
    let config = config(&args)?;
    let emulator = Emulator::start(config, args.listen)
        .await
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    println!("listening on {}", emulator.base_url());
    super::shutdown_signal().await;
    emulator.stop();
    Ok(0)
}
