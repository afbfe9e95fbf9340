//! The states a job and an upload go through (docs/jobs.md has the diagram). Stored as
//! their `as_str` names; everything else handles them as enums.

/// Where a job stands. `Dead` means it failed transiently too many times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "dead" => JobState::Dead,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Dead | JobState::Cancelled
        )
    }
}

/// Where an upload stands. Only `Receiving` takes bytes; `Complete` has its video queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    Receiving,
    Complete,
    /// Ended by the client (tus termination).
    Terminated,
    /// Read by its job, which then discarded the staged parts.
    Consumed,
    Erased,
    /// Left `Receiving` for longer than `server.upload_expiry_seconds`: the reaper ended it.
    Expired,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Receiving => "receiving",
            UploadState::Complete => "complete",
            UploadState::Terminated => "terminated",
            UploadState::Consumed => "consumed",
            UploadState::Erased => "erased",
            UploadState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "receiving" => UploadState::Receiving,
            "complete" => UploadState::Complete,
            "terminated" => UploadState::Terminated,
            "consumed" => UploadState::Consumed,
            "erased" => UploadState::Erased,
            "expired" => UploadState::Expired,
            _ => return None,
        })
    }
}
