//! The 112-byte sealed header: encoding, structural parsing, the header tag,
//! and the length arithmetic that follows from the chunk size.

use subtle::ConstantTimeEq;

use super::super::CryptoError;
use super::super::keys::ObjectKeys;
use super::super::primitives::cmac_sm4;
use super::{MAX_CHUNK_SIZE, SealParams, TAG_LEN};

/// Encoded header length in bytes.
pub const HEADER_LEN: usize = 112;

const MAGIC: &[u8; 8] = b"VCWSEAL1";
const VERSION: u16 = 1;
/// SM4-CTR + CMAC-SM4, keys by HKDF-SM3.
const ALGORITHM: u16 = 1;
/// Bytes covered by the header tag: everything before it.
const AUTHENTICATED_LEN: usize = HEADER_LEN - TAG_LEN;
const RESERVED: std::ops::Range<usize> = 88..96;

/// A parsed sealed-object header.
///
/// Parsing checks structure only; authenticity needs the data key and is
/// checked when opening, before any chunk is touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub algorithm: u16,
    pub chunk_size: u32,
    pub object_id: [u8; 16],
    pub data_key_id: [u8; 16],
    pub subject_key_id: [u8; 16],
    pub subject_key_version: u32,
    pub kek_version: u32,
    pub nonce: [u8; 16],
    pub header_tag: [u8; 16],
}

impl Header {
    /// A v1 header for `params` with an all-zero tag; `sign` fills the tag
    /// once the object keys are derived.
    pub(crate) fn new(params: &SealParams, nonce: [u8; 16]) -> Result<Self, CryptoError> {
        validate_chunk_size(params.chunk_size)?;
        Ok(Self {
            version: VERSION,
            algorithm: ALGORITHM,
            chunk_size: params.chunk_size,
            object_id: params.object_id,
            data_key_id: params.data_key_id,
            subject_key_id: params.subject_key_id,
            subject_key_version: params.subject_key_version,
            kek_version: params.kek_version,
            nonce,
            header_tag: [0; 16],
        })
    }

    /// Parses the first `HEADER_LEN` bytes of `bytes`.
    ///
    /// Rejects anything v1 readers cannot interpret (magic, version,
    /// algorithm, chunk size, nonzero reserved bytes) so that later code can
    /// rely on those fields; it does not check the tag.
    pub fn parse(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(CryptoError::TruncatedHeader(bytes.len()))?;
        if &bytes[0..8] != MAGIC {
            return Err(CryptoError::BadMagic);
        }
        let version = u16::from_be_bytes(array(&bytes[8..10]));
        if version != VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let algorithm = u16::from_be_bytes(array(&bytes[10..12]));
        if algorithm != ALGORITHM {
            return Err(CryptoError::UnsupportedAlgorithm(algorithm));
        }
        let chunk_size = u32::from_be_bytes(array(&bytes[12..16]));
        validate_chunk_size(chunk_size)?;
        if bytes[RESERVED].iter().any(|&b| b != 0) {
            return Err(CryptoError::NonZeroReserved);
        }
        Ok(Self {
            version,
            algorithm,
            chunk_size,
            object_id: array(&bytes[16..32]),
            data_key_id: array(&bytes[32..48]),
            subject_key_id: array(&bytes[48..64]),
            subject_key_version: u32::from_be_bytes(array(&bytes[64..68])),
            kek_version: u32::from_be_bytes(array(&bytes[68..72])),
            nonce: array(&bytes[72..88]),
            header_tag: array(&bytes[96..112]),
        })
    }

    /// The exact on-disk bytes (big-endian integers, zero reserved bytes).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(MAGIC);
        out[8..10].copy_from_slice(&self.version.to_be_bytes());
        out[10..12].copy_from_slice(&self.algorithm.to_be_bytes());
        out[12..16].copy_from_slice(&self.chunk_size.to_be_bytes());
        out[16..32].copy_from_slice(&self.object_id);
        out[32..48].copy_from_slice(&self.data_key_id);
        out[48..64].copy_from_slice(&self.subject_key_id);
        out[64..68].copy_from_slice(&self.subject_key_version.to_be_bytes());
        out[68..72].copy_from_slice(&self.kek_version.to_be_bytes());
        out[72..88].copy_from_slice(&self.nonce);
        out[96..112].copy_from_slice(&self.header_tag);
        out
    }

    /// Number of chunks a plaintext of this length is sealed into: at least
    /// one, because even an empty object ends with an authenticated final chunk.
    pub fn chunk_count(&self, plaintext_len: u64) -> u64 {
        plaintext_len.div_ceil(u64::from(self.chunk_size)).max(1)
    }

    /// Byte offset of chunk `index` in the sealed object (saturating; only
    /// absurd indices saturate and those never match a real object).
    pub fn chunk_offset(&self, index: u64) -> u64 {
        index
            .saturating_mul(self.stride())
            .saturating_add(HEADER_LEN as u64)
    }

    /// Total sealed size for a plaintext length: header + plaintext + one tag
    /// per chunk. Saturates at `u64::MAX` for lengths no object can have.
    pub fn sealed_len(&self, plaintext_len: u64) -> u64 {
        (HEADER_LEN as u64)
            .saturating_add(plaintext_len)
            .saturating_add(
                self.chunk_count(plaintext_len)
                    .saturating_mul(TAG_LEN as u64),
            )
    }

    /// Inverse of `sealed_len`: fails for lengths `seal` can never produce
    /// (too short for one tag, a partial tag, or an empty final chunk after
    /// full chunks), so a truncated or padded object is caught up front.
    pub fn plaintext_len(&self, sealed_len: u64) -> Result<u64, CryptoError> {
        let invalid = CryptoError::InvalidSealedLength(sealed_len);
        let body = sealed_len
            .checked_sub(HEADER_LEN as u64)
            .ok_or(CryptoError::InvalidSealedLength(sealed_len))?;
        let tag = TAG_LEN as u64;
        let full_chunks = body / self.stride();
        let last = body % self.stride();
        let plaintext_len = match (full_chunks, last) {
            (0, last) if last >= tag => last - tag,
            (_, 0) if full_chunks > 0 => full_chunks * u64::from(self.chunk_size),
            (_, last) if last > tag => full_chunks * u64::from(self.chunk_size) + last - tag,
            _ => return Err(invalid),
        };
        Ok(plaintext_len)
    }

    /// Sealed bytes per full chunk: ciphertext plus tag.
    pub(crate) fn stride(&self) -> u64 {
        u64::from(self.chunk_size) + TAG_LEN as u64
    }

    fn compute_tag(&self, keys: &ObjectKeys) -> [u8; TAG_LEN] {
        cmac_sm4(&keys.mac, &[&self.encode()[..AUTHENTICATED_LEN]])
    }

    /// Sets `header_tag`; chunk tags chain to it, so it must be final before
    /// any chunk is sealed.
    pub(crate) fn sign(&mut self, keys: &ObjectKeys) {
        self.header_tag = self.compute_tag(keys);
    }

    /// Constant-time tag check. A wrong data key derives different MAC keys,
    /// so it fails here exactly like a modified header does.
    pub(crate) fn verify(&self, keys: &ObjectKeys) -> Result<(), CryptoError> {
        if bool::from(self.compute_tag(keys).ct_eq(&self.header_tag)) {
            Ok(())
        } else {
            Err(CryptoError::HeaderAuthFailed)
        }
    }
}

fn validate_chunk_size(chunk_size: u32) -> Result<(), CryptoError> {
    if chunk_size == 0 || !chunk_size.is_multiple_of(16) || chunk_size > MAX_CHUNK_SIZE {
        return Err(CryptoError::InvalidChunkSize(chunk_size));
    }
    Ok(())
}

/// Copies a fixed-size field out of the header. Callers pass constant ranges
/// of the right width, so the fallback is unreachable; it exists only to avoid
/// a panic path.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        let params = SealParams {
            object_id: [1; 16],
            data_key_id: [2; 16],
            subject_key_id: [3; 16],
            subject_key_version: 0x0405_0607,
            kek_version: 0x0809_0a0b,
            chunk_size: 32,
        };
        let mut header = Header::new(&params, [4; 16]).unwrap();
        header.header_tag = [5; 16];
        header
    }

    #[test]
    fn encode_parse_round_trip_and_layout() {
        let header = sample();
        let bytes = header.encode();
        assert_eq!(&bytes[0..8], b"VCWSEAL1");
        assert_eq!(&bytes[8..16], &[0, 1, 0, 1, 0, 0, 0, 32]);
        assert_eq!(&bytes[64..72], &[4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(&bytes[72..88], &[4; 16]);
        assert_eq!(&bytes[88..96], &[0; 8]);
        assert_eq!(&bytes[96..112], &[5; 16]);
        assert_eq!(Header::parse(&bytes).unwrap(), header);
    }

    #[test]
    fn parse_rejects_bad_structure() {
        let good = sample().encode();
        let with = |at: usize, value: u8| {
            let mut b = good;
            b[at] = value;
            Header::parse(&b)
        };
        assert!(matches!(with(0, b'X'), Err(CryptoError::BadMagic)));
        assert!(matches!(
            with(9, 2),
            Err(CryptoError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            with(11, 9),
            Err(CryptoError::UnsupportedAlgorithm(9))
        ));
        assert!(matches!(
            with(15, 33),
            Err(CryptoError::InvalidChunkSize(33))
        ));
        assert!(matches!(with(15, 0), Err(CryptoError::InvalidChunkSize(0))));
        assert!(matches!(with(12, 2), Err(CryptoError::InvalidChunkSize(_))));
        assert!(matches!(with(95, 1), Err(CryptoError::NonZeroReserved)));
        assert!(matches!(
            Header::parse(&good[..111]),
            Err(CryptoError::TruncatedHeader(111))
        ));
    }

    #[test]
    fn chunk_size_bounds() {
        let params = |chunk_size| SealParams {
            chunk_size,
            ..SealParams::default()
        };
        assert!(Header::new(&params(16), [0; 16]).is_ok());
        assert!(Header::new(&params(MAX_CHUNK_SIZE), [0; 16]).is_ok());
        assert!(Header::new(&params(MAX_CHUNK_SIZE + 16), [0; 16]).is_err());
        assert!(Header::new(&params(24), [0; 16]).is_err());
    }

    #[test]
    fn lengths_invert() {
        let header = sample(); // chunk_size 32, stride 48
        for len in 0..200u64 {
            let sealed = header.sealed_len(len);
            assert_eq!(header.plaintext_len(sealed).unwrap(), len, "len {len}");
        }
        assert_eq!(header.sealed_len(0), 112 + 16);
        assert_eq!(header.sealed_len(32), 112 + 48);
        assert_eq!(header.sealed_len(33), 112 + 48 + 17);
        for bad in [0, 111, 112, 112 + 15, 112 + 48 + 16, 112 + 48 + 5] {
            assert!(header.plaintext_len(bad).is_err(), "sealed {bad}");
        }
    }
}
