//! The job machinery: workers take announced jobs from the [queue](crate::queue), claim
//! them in the catalog under a lease, run each attempt through the pipeline, and record
//! one outcome; the reaper finishes whatever crashed or vanished processes left.
//!
//! Read [`pipeline`] first: it is one job's trip, top-down. docs/jobs.md has the state
//! machine and the lease and fencing rules.

pub mod cleanup;
pub mod failure;
pub mod ingest;
pub mod lease;
pub mod pipeline;
pub mod reaper;
pub mod record;
pub mod worker;
