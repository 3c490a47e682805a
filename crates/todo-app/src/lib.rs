//! The Todo platform's services and their HTTP/WebSocket surface.
//!
//! - [`config`]: settings from the contract's environment variables and flags.
//! - [`startup`]: [`startup::Application`] builds the store, bus and router for the chosen
//!   services and runs them until shutdown.
//! - [`http`]: routes, auth, problem+json errors, middleware.
//! - [`services`]: `api` operations and the `recurring`, `notification`, `sync` and `audit`
//!   consumers, each a handler driven by one generic consumer loop.

pub mod config;
pub mod faults;
pub mod http;
pub mod metered;
pub mod services;
pub mod shutdown;
pub mod startup;
pub mod state;
