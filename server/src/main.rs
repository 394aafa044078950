//! The `stalecast` binary: `serve` (the default way to run Stalecast), `sim` (the
//! OpenStack-shaped simulator alone) and `gen` (the generated contract files).

use anyhow::Context;
use clap::Parser;
use stalecast::config::{Cli, Command, LogFormat, SimArgs};
use stalecast::sim::{self, Sim, SimConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match cli.command {
        Command::Serve(mut config) => {
            config.os_environment = stalecast::config::cloud::OsEnvironment::from_process();
            let app = stalecast::app::start(config, shutdown).await?;
            app.wait().await?;
        }
        Command::Sim(args) => run_sim(args, shutdown).await?,
        Command::Gen(args) => {
            // A stale file is an expected outcome of `--check`: say so plainly, no backtrace.
            let targets = stalecast::codegen::Targets { bindings: args.bindings, openapi: args.openapi };
            if let Err(error) = stalecast::codegen::run(&targets, args.check) {
                tracing::error!("{error:#}");
                std::process::exit(1);
            }
            return Ok(());
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn run_sim(args: SimArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let config = SimConfig {
        churn_interval: args.churn,
        transition_delay: args.transition_delay,
        seed: args.seed,
        ..SimConfig::default()
    };
    let addr = listener.local_addr()?;
    let sim = match &args.keystone {
        Some(keystone) => {
            tracing::info!(%addr, %keystone, "OpenStack simulator (Nova, Neutron) listening, trusting Keystone");
            Sim::with_keystone(config, keystone).map_err(anyhow::Error::msg)?
        }
        None => {
            tracing::info!(%addr, user = %config.user, "OpenStack simulator listening");
            Sim::new(config)
        }
    };
    if let Some(path) = &args.ready_file {
        stalecast::app::write_ready_file(path, &serde_json::json!({"addr": addr.to_string()}))?;
    }
    sim::run(listener, sim, shutdown).await?;
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Fires `shutdown` on Ctrl-C or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
