//! Identifiers and the store's key layout. Ids are 16 random bytes shown as 32 hex
//! digits; store keys of a video carry its attempt number, the attempt's fencing token
//! (docs/jobs.md), so attempts never overwrite or delete each other's objects.

/// Identifiers are shown as hex (never secret).
pub fn id_hex(id: &[u8]) -> String {
    crate::hex::encode(id)
}

/// An id from 32 hex digits (dashes allowed, as in a UUID).
pub fn parse_id(s: &str) -> Option<[u8; 16]> {
    crate::hex::decode(&s.replace('-', ""))?.try_into().ok()
}

/// Store keys of one video all start with this.
pub fn video_prefix(video_id: &str) -> String {
    format!("videos/{video_id}/")
}

/// Store keys of one attempt at a video all start with this.
pub fn attempt_prefix(video_id: &str, attempt: i64) -> String {
    format!("videos/{video_id}/a{attempt}/")
}

/// The attempt a store key under `videos/{id}/` belongs to, if it is one of ours.
pub fn attempt_of(key: &str) -> Option<(&str, i64)> {
    let rest = key.strip_prefix("videos/")?;
    let (id, rest) = rest.split_once('/')?;
    let (attempt, _) = rest.strip_prefix('a')?.split_once('/')?;
    Some((id, attempt.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_name_their_attempt() {
        let key = format!("{}seg-00001.m4s.sealed", attempt_prefix("ab", 3));
        assert_eq!(key, "videos/ab/a3/seg-00001.m4s.sealed");
        assert_eq!(attempt_of(&key), Some(("ab", 3)));
        assert!(key.starts_with(&video_prefix("ab")));
        assert_eq!(attempt_of("videos/ab/seg-1.ts"), None);
        assert_eq!(attempt_of("staging/ab/a1/x"), None);
        assert_eq!(attempt_of("videos/ab/ax/x"), None);
    }
}
