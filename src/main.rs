//! The `todo` binary: parse the command line, set up logging, dispatch.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use todo_app::shutdown::os_signal;
use todo_app::startup::Application;

use cli::{Cli, Command};

/// Request handling allocates and frees small objects on several threads at once (the
/// async workers, the SQLite writer, the blocking pool); mimalloc's per-thread heaps serve
/// that pattern with far less time in the allocator than the system one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = Cli::parse_from(cli::args_with_default_command()).command;
    // Blocking work is mostly SQLite reads, which share four read-only connections: more
    // threads than that would only wait for a connection, each holding its own stack and
    // allocator heap (uncapped, a burst of list requests grew the process by 70 MiB).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting on error");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(settings) => {
            let all = settings.services == todo_app::config::ServiceSet::all();
            let service = if all {
                "todo".to_owned()
            } else {
                settings.services.to_string()
            };
            // Spans are exported when an OTLP endpoint is set: as `todo` for the whole
            // platform, `todo-api` for one service, `todo-api-audit` for a subset.
            let service_name = if all {
                "todo".to_owned()
            } else {
                format!("todo-{}", service.replace(',', "-"))
            };
            let export = todo_telemetry::otlp::ExportSettings::from_env(&service_name)?;
            let _guard = todo_telemetry::init_with_export(
                settings.common.log_format,
                &service,
                "info",
                export.as_ref(),
            )?;
            let stop = os_signal().context("cannot install signal handlers")?;
            let app = Application::build(*settings).await?;
            app.run_until_stopped(stop).await
        }
        Command::Migrate(common) => {
            let _guard = todo_telemetry::init(common.log_format, "migrate", "info")?;
            let backend = todo_store::connect(&common.database_url()?)
                .await
                .context("cannot open the store")?;
            backend.store.migrate().await.context("migration failed")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Token(args) => {
            let secret = args.common.jwt_secret()?.context(
                "no HS256 secret: TODO_JWT_SECRET is unset and a JWKS URL is configured",
            )?;
            let token = todo_auth::mint_hs256(
                &secret,
                &args.user,
                Duration::from_secs(args.ttl_secs),
                args.common.jwt_issuer.as_deref(),
                args.common.jwt_audience.as_deref(),
            )
            .context("cannot sign the token")?;
            println!("{token}");
            Ok(())
        }
    }
}
