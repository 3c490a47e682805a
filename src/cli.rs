//! Command line: `serve` (the default), `migrate`, `token`.

use clap::{Args, Parser, Subcommand};
use todo_app::config::{CommonSettings, ServeSettings};

/// Event-driven task platform: API, recurring tasks, reminders, WebSocket sync and audit.
/// With no subcommand, `todo` runs `serve`; every flag also reads the environment variable
/// shown in its help.
#[derive(Debug, Parser)]
#[command(name = "todo", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The arguments with `serve` inserted when no subcommand is named, so `todo` and
/// `todo --listen-addr ...` run the platform. (A flattened top-level `serve` would make
/// `todo token` fail on a bad `TODO_*` serve variable it never uses.)
pub fn args_with_default_command() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let first = args.get(1).and_then(|a| a.to_str());
    let names_command = matches!(first, Some("serve" | "migrate" | "token" | "help"));
    let asks_about_todo = matches!(first, Some("-h" | "--help" | "-V" | "--version"));
    if !names_command && !asks_about_todo {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform (all five services by default).
    Serve(Box<ServeSettings>),
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
