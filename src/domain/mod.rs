//! Plain domain types, without I/O: ids and the store's key layout, the states of jobs
//! and uploads, where a job's video comes from and what was stored for it, the events a
//! state change causes, and the audit chain's records and their verification. Every other module may use these; they use none of them.

pub mod audit;
pub mod clock;
pub mod events;
pub mod ids;
pub mod manifest;
pub mod state;

pub use events::{EventKind, OutboxEvent, video_ended, video_reviewed};
pub use ids::{attempt_of, attempt_prefix, id_hex, parse_id, video_prefix};
pub use manifest::{JobSource, Manifest, StoredObject, StoredSegment, check_s3_source};
pub use state::{JobState, UploadState};
