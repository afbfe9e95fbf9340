//! vcw's integration tests: one binary, driving the real `vcw` executable against real
//! models, real FFmpeg and the real sample clips (`make test` fetches them first; a
//! missing asset fails the test, it never skips).

mod audit;
mod catalog;
mod cluster;
mod consent;
mod crypto;
mod crypto_support;
mod dashboard;
mod doctor;
mod image;
mod inputs;
mod jobs;
mod k8s;
mod layout;
mod metrics;
mod models;
mod mutants;
mod openapi;
mod outbound;
mod parity;
mod renditions;
mod review;
mod scan;
mod segment;
mod serve;
mod storage;
mod store;
mod tokens;
mod util;
mod vault;
