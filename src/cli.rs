//! Command line: `serve` (the default), `migrate`, `token`.

use clap::{Args, Parser, Subcommand};
use todo_app::config::{CommonSettings, ServeSettings};

/// Event-driven task platform: API, recurring tasks, reminders, WebSocket sync and audit.
///
/// With no subcommand, `todo` runs `serve`. Every flag also reads the environment variable
/// shown in its help.
#[derive(Debug, Parser)]
#[command(name = "todo", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeSettings,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform (all five services by default).
    Serve(ServeSettings),
    /// Apply database migrations and exit.
    Migrate(CommonSettings),
    /// Print a token signed with the configured HS256 secret, for local use.
    Token(TokenArgs),
}

/// `todo token` options.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(long)]
    pub user: String,

    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub ttl_secs: u64,

    #[command(flatten)]
    pub common: CommonSettings,
}
