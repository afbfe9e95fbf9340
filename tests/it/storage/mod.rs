//! The blob stores against real backends: a temp directory and an `s3s-fs` server.

mod fs_store;
mod open_store;
pub mod readers;
mod s3_store;
pub mod s3s_server;
