//! A stored sealed object as a [`RangeSource`]: the decryptor reads the header and only
//! the chunks a byte range touches, each as one ranged read (an S3 Range GET).

use std::io;

use super::{BlobStore, StorageError};
use crate::crypto::RangeSource;

pub struct StoredSource<'a> {
    store: &'a dyn BlobStore,
    key: String,
    len: u64,
}

impl<'a> StoredSource<'a> {
    pub async fn new(store: &'a dyn BlobStore, key: &str) -> Result<Self, StorageError> {
        let len = store.len(key).await?;
        Ok(Self {
            store,
            key: key.to_string(),
            len,
        })
    }
}

impl RangeSource for StoredSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = io::Result<Vec<u8>>> + Send {
        let read = self.store.get_range(&self.key, offset, len as u64);
        async move { read.await.map_err(io::Error::other) }
    }
}
