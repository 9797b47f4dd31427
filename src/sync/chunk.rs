//! Envelopes larger than one MQTT packet travel in chunks. Each chunk is one message:
//!
//! ```text
//! GHCHUNK/1 <sha256 of the whole envelope, hex> <index> <count>\n<bytes>
//! ```
//!
//! The device assembles up to [`MAX_TRANSFERS`] transfers at once, each bounded by the envelope size
//! limit. A chunk of a transfer it does not hold starts a new one; when all slots are taken, the transfer
//! that has gone longest without a new chunk gives way. A stray or foreign chunk therefore never restarts a
//! transfer that is still arriving (it used to, so stray chunks could stall an update for ever). The
//! envelope is handed on only when every chunk is there and the whole matches its sha256; it is then
//! verified like any other: chunking adds no trust.

use sha2::{Digest, Sha256};

use super::SyncError;

const MAGIC: &str = "GHCHUNK/1";
/// Most chunks in one transfer.
pub const MAX_CHUNKS: usize = 4096;
/// Transfers assembled at once (memory: at most this many times the envelope limit).
pub const MAX_TRANSFERS: usize = 2;

/// Splits `envelope` into chunk messages of at most `max_payload` bytes each (header included).
pub fn split(envelope: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
    let sha = hex::encode(Sha256::digest(envelope));
    let room = max_payload.saturating_sub(MAGIC.len() + sha.len() + 24).max(1);
    let count = envelope.len().div_ceil(room).max(1);
    (0..count)
        .map(|i| {
            let part = &envelope[(i * room).min(envelope.len())..((i + 1) * room).min(envelope.len())];
            let mut m = format!("{MAGIC} {sha} {i} {count}\n").into_bytes();
            m.extend_from_slice(part);
            m
        })
        .collect()
}

#[derive(Debug)]
struct Transfer {
    sha: String,
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
    bytes: usize,
    /// When it last took a new chunk (a counter of chunks pushed): the stalest gives way.
    touched: u64,
}

/// Reassembles chunked envelopes.
#[derive(Debug)]
pub struct Assembler {
    limit: usize,
    transfers: Vec<Transfer>,
    pushed: u64,
}

impl Assembler {
    /// `limit`: the largest envelope accepted.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            transfers: Vec::new(),
            pushed: 0,
        }
    }

    /// Takes one chunk message; returns the envelope once it is complete.
    pub fn push(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, SyncError> {
        let bad = |m: &str| SyncError::Malformed(format!("chunk: {m}"));
        let nl = msg
            .iter()
            .take(200)
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no header line"))?;
        let header = std::str::from_utf8(&msg[..nl]).map_err(|_| bad("header is not UTF-8"))?;
        let data = &msg[nl + 1..];
        let f: Vec<&str> = header.split(' ').collect();
        let [magic, sha, index, count] = f[..] else {
            return Err(bad("header needs 4 fields"));
        };
        if magic != MAGIC {
            return Err(bad("not a GHCHUNK/1 message"));
        }
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(bad("sha256 must be 64 lowercase hex digits"));
        }
        let index: usize = index.parse().map_err(|_| bad("index is not a number"))?;
        let count: usize = count.parse().map_err(|_| bad("count is not a number"))?;
        if count == 0 || count > MAX_CHUNKS || index >= count {
            return Err(bad("index/count out of range"));
        }
        self.pushed += 1;
        let at = match self
            .transfers
            .iter()
            .position(|t| t.sha == sha && t.parts.len() == count)
        {
            Some(i) => i,
            None => {
                if self.transfers.len() >= MAX_TRANSFERS {
                    let stalest = (0..self.transfers.len())
                        .min_by_key(|&i| self.transfers[i].touched)
                        .unwrap_or(0);
                    let old = self.transfers.remove(stalest);
                    tracing::warn!(
                        dropped = %old.sha, chunks = old.have, of = old.parts.len(),
                        "chunks of another allowlist transfer arrived; dropping the one that waited longest"
                    );
                }
                self.transfers.push(Transfer {
                    sha: sha.to_string(),
                    parts: vec![None; count],
                    have: 0,
                    bytes: 0,
                    touched: self.pushed,
                });
                self.transfers.len() - 1
            }
        };
        let t = &mut self.transfers[at];
        if t.parts[index].is_none() {
            let size = t.bytes + data.len();
            if size > self.limit {
                self.transfers.remove(at);
                return Err(SyncError::Oversized {
                    size,
                    limit: self.limit,
                });
            }
            t.bytes += data.len();
            t.have += 1;
            t.parts[index] = Some(data.to_vec());
            t.touched = self.pushed;
        }
        if t.have < t.parts.len() {
            return Ok(None);
        }
        let t = self.transfers.remove(at);
        let mut whole = Vec::with_capacity(t.bytes);
        for p in t.parts.into_iter().flatten() {
            whole.extend_from_slice(&p);
        }
        if hex::encode(Sha256::digest(&whole)) != t.sha {
            return Err(bad("reassembled envelope does not match its sha256"));
        }
        Ok(Some(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reassemble_in_any_order_with_duplicates() {
        let env: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut chunks = split(&env, 4096);
        assert!(chunks.len() > 20);
        assert!(chunks.iter().all(|c| c.len() <= 4096));
        chunks.reverse();
        chunks.insert(3, chunks[0].clone());
        let mut a = Assembler::new(1 << 20);
        let mut out = None;
        for c in &chunks {
            if let Some(e) = a.push(c).expect("chunk") {
                out = Some(e);
            }
        }
        assert_eq!(out.as_deref(), Some(&env[..]));
        let one = split(b"{}", 4096);
        assert_eq!(one.len(), 1);
        assert_eq!(Assembler::new(100).push(&one[0]).expect("one"), Some(b"{}".to_vec()));
    }

    #[test]
    fn stray_chunks_of_other_transfers_do_not_restart_one_in_progress() {
        let env: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8).collect();
        let chunks = split(&env, 1024);
        assert!(chunks.len() > 10);
        // A stale transfer's chunks keep arriving between the new one's (a retained message, a
        // misbehaving publisher): each used to start the assembly over.
        let stray_a = split(&vec![b'a'; 5000], 1024);
        let stray_b = split(&vec![b'b'; 5000], 1024);
        let mut a = Assembler::new(1 << 20);
        let mut out = None;
        for (i, c) in chunks.iter().enumerate() {
            let stray = if i % 2 == 0 { &stray_a } else { &stray_b };
            assert_eq!(a.push(&stray[i % 2]).expect("stray"), None);
            if let Some(e) = a.push(c).expect("chunk") {
                out = Some(e);
            }
        }
        assert_eq!(out.as_deref(), Some(&env[..]), "the transfer in progress completed");
    }

    #[test]
    fn the_transfer_waiting_longest_gives_way() {
        let mut a = Assembler::new(1 << 20);
        let three: Vec<Vec<Vec<u8>>> = [b'x', b'y', b'z']
            .iter()
            .map(|b| split(&vec![*b; 3000], 1024))
            .collect();
        for t in &three {
            assert_eq!(a.push(&t[0]).expect("first"), None);
        }
        assert_eq!(a.transfers.len(), MAX_TRANSFERS, "memory stays bounded");
        // x waited longest and was dropped; y and z complete.
        for t in &three[1..] {
            let done: Vec<_> = t[1..].iter().filter_map(|c| a.push(c).expect("chunk")).collect();
            assert_eq!(done.len(), 1);
        }
        assert!(a.transfers.is_empty());
    }

    #[test]
    fn rejects_bad_headers_oversize_and_corruption() {
        let mut a = Assembler::new(1000);
        for bad in [
            &b"no newline"[..],
            b"GHCHUNK/2 aa 0 1\nx",
            b"GHCHUNK/1 zz 0 1\nx",
            b"\xff\xfe\n",
            b"GHCHUNK/1 0000000000000000000000000000000000000000000000000000000000000000 5 2\nx",
            b"GHCHUNK/1 0000000000000000000000000000000000000000000000000000000000000000 0 99999\nx",
        ] {
            assert!(a.push(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let big = vec![b'x'; 3000];
        let chunks = split(&big, 600);
        let r: Vec<_> = chunks.iter().map(|c| a.push(c)).collect();
        assert!(r.iter().any(|x| matches!(x, Err(SyncError::Oversized { .. }))));
        let mut chunks = split(b"hello world, hello world", 90);
        let last = chunks.len() - 1;
        if let Some(b) = chunks[last].last_mut() {
            *b ^= 1;
        }
        let mut a = Assembler::new(1000);
        let results: Vec<_> = chunks.iter().map(|c| a.push(c)).collect();
        assert!(matches!(results.last(), Some(Err(SyncError::Malformed(_)))));
    }
}
