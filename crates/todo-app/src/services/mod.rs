//! The five services. Each consumer exposes one step (`handle` a batch) that tests can
//! drive directly; [`consumer::run`] is the thin loop around it.

pub mod api;
pub mod audit;
pub mod consumer;
pub mod notification;
pub mod recurring;
pub mod relay;
pub mod retention;
pub mod sync;
pub mod webhook;
