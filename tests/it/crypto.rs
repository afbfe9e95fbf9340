//! Integration tests for the vcw crypto core: the documented test vector,
//! cross-checks against the OpenSSL CLI, round trips, random-access reads and
//! tamper resistance.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::crypto_support::*;
use proptest::prelude::*;
use proptest::sample::Index;
use vcw::crypto::primitives::{cmac_sm4, hkdf_sm3, sm4_ctr_apply};
use vcw::crypto::{
    CryptoError, DataKey, HEADER_LEN, Header, TAG_LEN, authenticated_plaintext_len, open_range,
};

// ---------------------------------------------------------------------------
// The worked vector from sealed-format.md (independently recomputed there with
// the OpenSSL CLI).

const VECTOR_PLAINTEXT: &[u8] =
    b"vcw sealed v1 test vector: three chunks of 32, 32 and 4 bytes (fin).";
const VECTOR_K_ENC: &str = "83137eaf186e24a2ce96a98ae4e39b08";
const VECTOR_K_MAC: &str = "e28e64f8b783bf7368819978a63a6026";
const VECTOR_HEADER: &str = "5643575345414c31 0001 0001 00000020
    101112131415161718191a1b1c1d1e1f 202122232425262728292a2b2c2d2e2f
    303132333435363738393a3b3c3d3e3f 00000007 00000003
    a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 0000000000000000
    f3d16437dae668c46446c66438e969cb";
const VECTOR_CHUNKS: [(&str, &str); 3] = [
    (
        "c2f346709358f6f935b1459cc05d7ec0259d3b347622a1be1c4a5b2d851bfbcb",
        "33f3524e26f70a689b8177602696bb2b",
    ),
    (
        "85f59148f9b8a0fa0a9b9d27f0fdab03066fac8efae72d9b52a403ba6f5b5b87",
        "b48eccf8388f5480f81bf44a4eac5ccd",
    ),
    ("9e955a31", "fbee153c31ec11e80772f3df52b43d12"),
];

fn seq(start: u8) -> [u8; 16] {
    std::array::from_fn(|i| start + i as u8)
}

#[test]
fn documented_test_vector() {
    let key = DataKey::from_bytes(seq(0x00));
    let params = vcw::crypto::SealParams {
        object_id: seq(0x10),
        data_key_id: seq(0x20),
        subject_key_id: seq(0x30),
        subject_key_version: 7,
        kek_version: 3,
        chunk_size: 32,
    };
    let nonce = seq(0xa0);

    let mut okm = [0u8; 32];
    hkdf_sm3(
        key.expose(),
        &nonce,
        &[b"vcw-sealed-v1", &params.object_id],
        &mut okm,
    )
    .unwrap();
    assert_eq!(hex(&okm[..16]), VECTOR_K_ENC);
    assert_eq!(hex(&okm[16..]), VECTOR_K_MAC);

    let mut expected = unhex(VECTOR_HEADER);
    for (ct, tag) in VECTOR_CHUNKS {
        expected.extend(unhex(ct));
        expected.extend(unhex(tag));
    }
    let sealed = seal_vec(&key, &params, Some(nonce), VECTOR_PLAINTEXT);
    assert_eq!(hex(&sealed), hex(&expected));

    let (result, opened) = open_vec(&key, &expected);
    let summary = result.unwrap();
    assert_eq!(opened, VECTOR_PLAINTEXT);
    assert_eq!(summary.header, Header::parse(&expected).unwrap());
    assert_eq!(summary.header.sealed_len(68), 228);
}

// ---------------------------------------------------------------------------
// OpenSSL CLI cross-checks (byte-exact).

const CROSS_CHECK_LENGTHS: [usize; 13] =
    [0, 1, 15, 16, 17, 31, 32, 33, 64, 255, 1000, 4097, 65536 + 7];

/// Runs `openssl` with `stdin` fed from a thread (so large outputs cannot
/// deadlock on the pipe) and returns stdout.
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI (OpenSSL 3.x) must be installed for cross-checks");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Writes `data` to a fresh temporary file (for CLIs that want `-in FILE`).
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(tag: &str, data: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("vcw-crypto-{}-{tag}.bin", std::process::id()));
        std::fs::write(&path, data).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn sm4_ctr_matches_openssl() {
    let mut rng = Rng(1);
    for (n, &len) in CROSS_CHECK_LENGTHS.iter().enumerate() {
        let key = rng.array16();
        let mut iv = rng.array16();
        if n % 3 == 1 {
            // Counter wraps from 2^128 - 1 to 0 inside the message.
            iv = [0xff; 16];
            iv[15] = 0xfd;
        }
        if n % 3 == 0 {
            // Counter close to the 64-bit boundary: exercises the carry into
            // the upper half (128-bit increment).
            iv[8..].copy_from_slice(&(u64::MAX - 2).to_be_bytes());
        }
        let plaintext = rng.bytes(len);
        let expected = openssl(
            &[
                "enc",
                "-sm4-ctr",
                "-K",
                &hex(&key),
                "-iv",
                &hex(&iv),
                "-nosalt",
            ],
            &plaintext,
        );
        let mut ours = plaintext.clone();
        sm4_ctr_apply(&key, &iv, &mut ours);
        assert_eq!(hex(&ours), hex(&expected), "length {len}");
    }
}

#[test]
fn cmac_sm4_matches_openssl() {
    let mut rng = Rng(2);
    for &len in &CROSS_CHECK_LENGTHS {
        let key = rng.array16();
        let message = rng.bytes(len);
        let file = TempFile::new(&format!("cmac-{len}"), &message);
        let path = file.0.to_str().unwrap();
        let expected = openssl(
            &[
                "mac",
                "-cipher",
                "SM4-CBC",
                "-macopt",
                &format!("hexkey:{}", hex(&key)),
                "-in",
                path,
                "CMAC",
            ],
            &[],
        );
        let expected = String::from_utf8(expected)
            .unwrap()
            .trim()
            .to_ascii_lowercase();
        assert_eq!(hex(&cmac_sm4(&key, &[&message])), expected, "length {len}");
    }
}

#[test]
fn hkdf_sm3_matches_openssl() {
    let mut rng = Rng(3);
    for (ikm_len, salt_len, info_len, out_len) in [
        (16, 16, 29, 32),
        (1, 0, 0, 1),
        (40, 70, 3, 100),
        (16, 16, 16, 255),
    ] {
        let (ikm, salt, info) = (rng.bytes(ikm_len), rng.bytes(salt_len), rng.bytes(info_len));
        let mut args = vec![
            "kdf".to_string(),
            "-keylen".into(),
            out_len.to_string(),
            "-kdfopt".into(),
            "digest:SM3".into(),
            "-kdfopt".into(),
            format!("hexkey:{}", hex(&ikm)),
        ];
        // OpenSSL treats an absent salt as HashLen zeros, as RFC 5869 does,
        // and our API always passes a salt; only pass non-empty values.
        for (name, value) in [("hexsalt", &salt), ("hexinfo", &info)] {
            if !value.is_empty() {
                args.extend(["-kdfopt".into(), format!("{name}:{}", hex(value))]);
            }
        }
        args.push("HKDF".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let expected = String::from_utf8(openssl(&args, &[]))
            .unwrap()
            .to_ascii_lowercase();
        let mut ours = vec![0u8; out_len];
        hkdf_sm3(&ikm, &salt, &[&info], &mut ours).unwrap();
        assert_eq!(
            hex(&ours),
            hex(&unhex(&expected)),
            "lengths {ikm_len}/{salt_len}/{info_len}/{out_len}"
        );
    }
}

// ---------------------------------------------------------------------------
// Round trips and random access.

#[test]
fn round_trips_across_chunk_boundaries() {
    let mut rng = Rng(4);
    let key = DataKey::generate().unwrap();
    for chunk_size in [16u32, 32, 48, 4096, 65536] {
        let cs = chunk_size as usize;
        let random = rng.below(5 * cs as u64) as usize;
        for len in [0, 1, cs - 1, cs, cs + 1, 2 * cs, 3 * cs, 3 * cs + 5, random] {
            let plaintext = rng.bytes(len);
            let params = params(chunk_size, rng.array16());
            let sealed = seal_vec(&key, &params, None, &plaintext);
            let header = Header::parse(&sealed).unwrap();
            assert_eq!(sealed.len() as u64, header.sealed_len(len as u64));
            assert_eq!(
                header.plaintext_len(sealed.len() as u64).unwrap(),
                len as u64
            );
            let (result, opened) = open_vec(&key, &sealed);
            let summary = result.unwrap_or_else(|e| panic!("chunk {chunk_size} len {len}: {e}"));
            assert_eq!(summary.plaintext_len, len as u64);
            assert_eq!(summary.header.object_id, params.object_id);
            assert!(opened == plaintext, "chunk {chunk_size} len {len}");
        }
    }
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let key = DataKey::from_bytes([1; 16]);
    let params = params(32, [2; 16]);
    let a = seal_vec(&key, &params, None, b"same plaintext");
    let b = seal_vec(&key, &params, None, b"same plaintext");
    assert_ne!(&a[72..88], &b[72..88]);
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
}

#[test]
fn wrong_key_fails_header_authentication() {
    let sealed = seal_vec(
        &DataKey::from_bytes([1; 16]),
        &params(32, [2; 16]),
        None,
        b"secret",
    );
    let (result, released) = open_vec(&DataKey::from_bytes([3; 16]), &sealed);
    let err = result.unwrap_err();
    assert!(matches!(err, CryptoError::HeaderAuthFailed));
    assert_eq!(
        err.to_string(),
        "header authentication failed: wrong key or tampered header"
    );
    assert!(released.is_empty());
}

/// Sealed bytes that reading plaintext chunks `first..=last` must fetch.
fn expected_range_cost(header: &Header, plaintext_len: u64, first: u64, last: u64) -> u64 {
    let cs = u64::from(header.chunk_size);
    let chunks: u64 = (first..=last)
        .map(|i| (plaintext_len - i * cs).min(cs) + TAG_LEN as u64)
        .sum();
    HEADER_LEN as u64 + chunks
}

#[test]
fn open_range_returns_slices_and_reads_only_touched_chunks() {
    let mut rng = Rng(5);
    let key = DataKey::generate().unwrap();
    for (chunk_size, len) in [
        (16u32, 1usize),
        (16, 100),
        (48, 48 * 5),
        (4096, 50_000),
        (65536, 200_000),
        // 1,221 chunks: ranges over 1,020 of them take two reads.
        (4096, 5_000_000),
    ] {
        let plaintext = rng.bytes(len);
        let sealed = seal_vec(&key, &params(chunk_size, rng.array16()), None, &plaintext);
        let header = Header::parse(&sealed).unwrap();
        let source = CountingSource::new(sealed);
        for _ in 0..60 {
            let start = rng.below(len as u64);
            let end = start + rng.below(len as u64 - start);
            let mut out = Vec::new();
            let written = block_on(open_range(&key, &source, start, end, &mut out)).unwrap();
            assert_eq!(written, end - start + 1);
            assert!(
                out == plaintext[start as usize..=end as usize],
                "{start}..={end}"
            );
            let cs = u64::from(chunk_size);
            let (bytes, reads) = source.take_counts();
            assert_eq!(
                bytes,
                expected_range_cost(&header, len as u64, start / cs, end / cs)
            );
            // The header, then the touched chunks in reads of up to 4 MiB.
            let per_read = ((4 << 20) / (cs + 16)).max(1);
            let touched = end / cs - start / cs + 1;
            assert_eq!(reads, 1 + touched.div_ceil(per_read));
        }
        let len = len as u64;
        assert_eq!(
            block_on(authenticated_plaintext_len(&key, &source)).unwrap(),
            len
        );
        let last = header.chunk_count(len) - 1;
        assert_eq!(
            source.take_counts().0,
            expected_range_cost(&header, len, last, last)
        );
    }
}

#[test]
fn open_range_rejects_out_of_bounds_ranges() {
    let key = DataKey::from_bytes([4; 16]);
    let source = CountingSource::new(seal_vec(&key, &params(32, [1; 16]), None, &[7u8; 100]));
    let mut sink = Vec::new();
    for (start, end) in [(0, 100), (100, 100), (50, 49), (0, u64::MAX)] {
        let err = block_on(open_range(&key, &source, start, end, &mut sink)).unwrap_err();
        assert!(
            matches!(
                err,
                CryptoError::RangeOutOfBounds {
                    plaintext_len: 100,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(sink.is_empty());
    let empty = CountingSource::new(seal_vec(&key, &params(32, [1; 16]), None, b""));
    let err = block_on(open_range(&key, &empty, 0, 0, &mut sink)).unwrap_err();
    assert!(matches!(
        err,
        CryptoError::RangeOutOfBounds {
            plaintext_len: 0,
            ..
        }
    ));
}

// ---------------------------------------------------------------------------
// Tampering. `released` must always be exactly the plaintext of the chunks
// before the first bad one.

const TAMPER_CHUNK: u32 = 32;
const STRIDE: usize = TAMPER_CHUNK as usize + TAG_LEN;

fn tamper_fixture(seed: u64, len: usize) -> (DataKey, Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed);
    let key = DataKey::from_bytes(rng.array16());
    let plaintext = rng.bytes(len);
    let sealed = seal_vec(&key, &params(TAMPER_CHUNK, rng.array16()), None, &plaintext);
    (key, plaintext, sealed)
}

/// Plaintext released before chunk `index` failed.
fn prefix(plaintext: &[u8], index: usize) -> &[u8] {
    &plaintext[..(index * TAMPER_CHUNK as usize).min(plaintext.len())]
}

fn chunk_range(index: usize, sealed_len: usize) -> std::ops::Range<usize> {
    let start = HEADER_LEN + index * STRIDE;
    start..(start + STRIDE).min(sealed_len)
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Inputs are derived from the printed seed; no regression files.
        failure_persistence: None,
        ..ProptestConfig::with_cases(96)
    })]

    #[test]
    fn any_bit_flip_is_detected(seed in any::<u64>(), len in 0usize..200, at in any::<Index>(), bit in 0u8..8) {
        let (key, plaintext, mut sealed) = tamper_fixture(seed, len);
        let pos = at.index(sealed.len());
        sealed[pos] ^= 1 << bit;
        let (result, released) = open_vec(&key, &sealed);
        let err = result.unwrap_err();
        if pos < HEADER_LEN {
            prop_assert!(released.is_empty());
            prop_assert!(matches!(
                err,
                CryptoError::BadMagic | CryptoError::UnsupportedVersion(_) | CryptoError::UnsupportedAlgorithm(_)
                    | CryptoError::InvalidChunkSize(_) | CryptoError::NonZeroReserved | CryptoError::HeaderAuthFailed
            ), "{}", err);
        } else {
            let index = (pos - HEADER_LEN) / STRIDE;
            prop_assert!(matches!(err, CryptoError::ChunkAuthFailed { index: i } if i == index as u64), "{}", err);
            prop_assert_eq!(&released[..], prefix(&plaintext, index));
        }
        // Random access: any range that touches the damaged chunk fails, and
        // writes nothing from it.
        if len > 0 {
            let first = if pos < HEADER_LEN { 0 } else { ((pos - HEADER_LEN) / STRIDE) as u64 * u64::from(TAMPER_CHUNK) };
            let source = CountingSource::new(sealed);
            let mut out = Vec::new();
            let result = block_on(open_range(&key, &source, first, first, &mut out));
            prop_assert!(result.is_err() && out.is_empty());
        }
    }

    #[test]
    fn truncation_is_detected(seed in any::<u64>(), len in 0usize..200, cut in any::<Index>()) {
        let (key, plaintext, sealed) = tamper_fixture(seed, len);
        let cut = cut.index(sealed.len());
        let (result, released) = open_vec(&key, &sealed[..cut]);
        let err = result.unwrap_err();
        if cut < HEADER_LEN {
            prop_assert!(matches!(err, CryptoError::TruncatedHeader(n) if n == cut), "{}", err);
            prop_assert!(released.is_empty());
        } else {
            // A chunk is released only once a byte after it proves it is not last.
            let body = cut - HEADER_LEN;
            let released_chunks = body.saturating_sub(1) / STRIDE;
            prop_assert_eq!(&released[..], prefix(&plaintext, released_chunks));
            let boundary = body.is_multiple_of(STRIDE) && body > 0;
            match err {
                CryptoError::Truncated { verified_chunks } => {
                    prop_assert!(boundary || body % STRIDE < TAG_LEN);
                    let expected = if boundary { body / STRIDE } else { released_chunks };
                    prop_assert_eq!(verified_chunks, expected as u64);
                }
                CryptoError::ChunkAuthFailed { index } => {
                    prop_assert!(!boundary);
                    prop_assert_eq!(index, released_chunks as u64);
                }
                other => prop_assert!(false, "unexpected error {}", other),
            }
        }
    }

    #[test]
    fn appended_bytes_are_detected(seed in any::<u64>(), len in 0usize..200, extra in prop::collection::vec(any::<u8>(), 1..60)) {
        let (key, plaintext, mut sealed) = tamper_fixture(seed, len);
        let chunks = Header::parse(&sealed).unwrap().chunk_count(len as u64) as usize;
        sealed.extend_from_slice(&extra);
        let (result, released) = open_vec(&key, &sealed);
        let err = result.unwrap_err();
        prop_assert!(matches!(err, CryptoError::TrailingData { .. } | CryptoError::ChunkAuthFailed { .. }), "{}", err);
        prop_assert_eq!(&released[..], prefix(&plaintext, chunks - 1));
        // Random access serves authentic chunks by position, so only a check
        // of the final chunk notices the extension.
        let source = CountingSource::new(sealed);
        prop_assert!(block_on(authenticated_plaintext_len(&key, &source)).is_err());
    }

    #[test]
    fn swapped_chunks_are_detected(seed in any::<u64>(), full in 2usize..6, tail in 0usize..32, a in any::<Index>(), b in any::<Index>()) {
        let len = full * TAMPER_CHUNK as usize + tail;
        let (key, plaintext, sealed) = tamper_fixture(seed, len);
        // Only full-size chunks can trade places without changing the layout.
        let (a, b) = (a.index(full), b.index(full));
        prop_assume!(a != b);
        let (first, second) = (a.min(b), a.max(b));
        let mut swapped = sealed.clone();
        let (ra, rb) = (chunk_range(first, sealed.len()), chunk_range(second, sealed.len()));
        swapped[ra.clone()].copy_from_slice(&sealed[rb.clone()]);
        swapped[rb].copy_from_slice(&sealed[ra]);
        let (result, released) = open_vec(&key, &swapped);
        let err = result.unwrap_err();
        prop_assert!(matches!(err, CryptoError::ChunkAuthFailed { index } if index == first as u64), "{}", err);
        prop_assert_eq!(&released[..], prefix(&plaintext, first));
    }

    #[test]
    fn chunks_cannot_move_between_objects(seed in any::<u64>(), len in 1usize..200, pick in any::<Index>()) {
        // Same data key and plaintext, different object id and nonce.
        let (key, plaintext, a) = tamper_fixture(seed, len);
        let b = seal_vec(&key, &params(TAMPER_CHUNK, [0xee; 16]), None, &plaintext);
        let index = pick.index(Header::parse(&a).unwrap().chunk_count(len as u64) as usize);
        let range = chunk_range(index, a.len());
        let mut mixed = a.clone();
        mixed[range.clone()].copy_from_slice(&b[range]);
        let (result, released) = open_vec(&key, &mixed);
        prop_assert!(matches!(result, Err(CryptoError::ChunkAuthFailed { index: i }) if i == index as u64), "{:?}", result);
        prop_assert_eq!(&released[..], prefix(&plaintext, index));
    }

    #[test]
    fn replayed_headers_are_rejected(seed in any::<u64>(), len in 0usize..200) {
        // The object is re-sealed (same params and key, new nonce); splicing
        // the old header onto the new body, or the reverse, must fail before
        // any plaintext is released.
        let (key, plaintext, old) = tamper_fixture(seed, len);
        let params = params(TAMPER_CHUNK, Header::parse(&old).unwrap().object_id);
        let new = seal_vec(&key, &params, None, &plaintext);
        for (head, body) in [(&old, &new), (&new, &old)] {
            let mut spliced = head[..HEADER_LEN].to_vec();
            spliced.extend_from_slice(&body[HEADER_LEN..]);
            let (result, released) = open_vec(&key, &spliced);
            prop_assert!(matches!(result, Err(CryptoError::ChunkAuthFailed { index: 0 })), "{:?}", result);
            prop_assert!(released.is_empty());
            if len > 0 {
                let source = CountingSource::new(spliced);
                prop_assert!(block_on(open_range(&key, &source, 0, len as u64 - 1, Vec::new())).is_err());
            }
        }
    }
}

#[test]
fn cut_after_a_non_final_chunk_is_reported_as_truncation() {
    let (key, plaintext, sealed) = tamper_fixture(6, 3 * TAMPER_CHUNK as usize + 3);
    for kept in 1..=3 {
        let (result, released) = open_vec(&key, &sealed[..HEADER_LEN + kept * STRIDE]);
        let err = result.unwrap_err();
        assert!(
            matches!(err, CryptoError::Truncated { verified_chunks } if verified_chunks == kept as u64),
            "{err}"
        );
        assert_eq!(released, prefix(&plaintext, kept - 1));
    }
    let (result, _) = open_vec(&key, &sealed[..HEADER_LEN]);
    assert!(matches!(
        result,
        Err(CryptoError::Truncated { verified_chunks: 0 })
    ));
}

#[test]
fn bytes_after_a_full_final_chunk_are_reported_as_trailing_data() {
    let (key, plaintext, mut sealed) = tamper_fixture(7, 2 * TAMPER_CHUNK as usize);
    sealed.extend_from_slice(&[0u8; STRIDE]);
    let (result, released) = open_vec(&key, &sealed);
    assert!(matches!(
        result,
        Err(CryptoError::TrailingData { final_index: 1 })
    ));
    assert_eq!(released, prefix(&plaintext, 1));
}

/// A key holder could append an empty final chunk after full chunks; `seal`
/// never does, and readers reject it so every plaintext has one encoding.
#[test]
fn empty_final_chunk_after_full_chunks_is_rejected() {
    let (key, plaintext, sealed) = tamper_fixture(8, 2 * TAMPER_CHUNK as usize);
    let header = Header::parse(&sealed).unwrap();
    let mut okm = [0u8; 32];
    hkdf_sm3(
        key.expose(),
        &header.nonce,
        &[b"vcw-sealed-v1", &header.object_id],
        &mut okm,
    )
    .unwrap();
    let k_mac: [u8; 16] = okm[16..].try_into().unwrap();
    let tag = |index: u64, is_final: u8, ct: &[u8]| {
        cmac_sm4(
            &k_mac,
            &[&header.header_tag, &index.to_be_bytes(), &[is_final], ct],
        )
    };
    let mut forged = sealed.clone();
    let ct1 = forged[chunk_range(1, sealed.len())][..32].to_vec();
    let end = forged.len();
    forged[end - TAG_LEN..].copy_from_slice(&tag(1, 0, &ct1));
    forged.extend_from_slice(&tag(2, 1, &[]));
    let (result, released) = open_vec(&key, &forged);
    assert!(
        matches!(result, Err(CryptoError::EmptyFinalChunk { index: 2 })),
        "{result:?}"
    );
    assert_eq!(
        released, plaintext,
        "both full chunks verified before the bad final one"
    );
    assert!(matches!(
        header.plaintext_len(forged.len() as u64),
        Err(CryptoError::InvalidSealedLength(_))
    ));
}

#[test]
fn error_messages_name_the_failure() {
    let cases = [
        (
            CryptoError::ChunkAuthFailed { index: 4 },
            "chunk 4 authentication failed",
        ),
        (
            CryptoError::Truncated { verified_chunks: 2 },
            "truncated: input ended after 2 verified chunk(s)",
        ),
        (
            CryptoError::TrailingData { final_index: 1 },
            "trailing data after the final chunk",
        ),
        (
            CryptoError::NonZeroReserved,
            "reserved header bytes are not zero",
        ),
        (CryptoError::BadMagic, "bad magic"),
    ];
    for (err, needle) in cases {
        assert!(err.to_string().contains(needle), "{err}");
    }
}

/// Seal and open work in batches of 4 MiB split across cores; a failure in any
/// chunk of any batch must still release exactly the chunks before it, and a
/// cut at a batch boundary must still read as truncation.
#[test]
fn failures_across_batches_release_exactly_the_chunks_before_them() {
    const CHUNK: usize = 64 * 1024;
    const SLOT: usize = CHUNK + TAG_LEN;
    let mut rng = Rng(11);
    let key = DataKey::from_bytes(rng.array16());
    let plaintext = rng.bytes(150 * CHUNK + 1000);
    let sealed = seal_vec(&key, &params(CHUNK as u32, rng.array16()), None, &plaintext);
    let (result, released) = open_vec(&key, &sealed);
    result.unwrap();
    assert!(released == plaintext, "clean round trip");

    let before = |index: usize| &plaintext[..index * CHUNK];
    // 63 chunks fill a batch: these are the first, last and middle chunks of
    // the first three batches.
    for index in [0, 31, 62, 63, 64, 100, 125, 126, 150] {
        let mut damaged = sealed.clone();
        damaged[HEADER_LEN + index * SLOT + 5] ^= 0x40;
        let (result, released) = open_vec(&key, &damaged);
        let err = result.unwrap_err();
        assert!(
            matches!(err, CryptoError::ChunkAuthFailed { index: i } if i == index as u64),
            "chunk {index}: {err}"
        );
        assert!(
            released == before(index),
            "chunk {index}: released {} bytes",
            released.len()
        );
    }
    for kept in [62, 63, 64, 126, 127] {
        let (result, released) = open_vec(&key, &sealed[..HEADER_LEN + kept * SLOT]);
        let err = result.unwrap_err();
        assert!(
            matches!(err, CryptoError::Truncated { verified_chunks } if verified_chunks == kept as u64),
            "cut after {kept}: {err}"
        );
        assert!(released == before(kept - 1), "cut after {kept}");
    }
}
