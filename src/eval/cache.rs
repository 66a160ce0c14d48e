//! Append-only record logs: `key → bytes`. Each record is framed as
//! `u32 len | u16 key len | key | payload` (little endian); a torn record at
//! the end (an interrupted run) is cut off on open, so a rerun resumes.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{io_err, EvalError};

pub struct RecordLog {
    path: PathBuf,
    pub records: HashMap<String, Vec<u8>>,
    out: BufWriter<std::fs::File>,
}

impl RecordLog {
    pub fn open(path: &Path) -> Result<RecordLog, EvalError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut records = HashMap::new();
        let mut at = 0usize;
        while at + 6 <= bytes.len() {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            if len < 2 || at + 4 + len > bytes.len() {
                break;
            }
            let rec = &bytes[at + 4..at + 4 + len];
            let kl = u16::from_le_bytes([rec[0], rec[1]]) as usize;
            if 2 + kl > rec.len() {
                break;
            }
            let Ok(key) = std::str::from_utf8(&rec[2..2 + kl]) else {
                break;
            };
            records.insert(key.to_string(), rec[2 + kl..].to_vec());
            at += 4 + len;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        if at < bytes.len() {
            log::warn!(
                "{}: dropping a torn record at byte {at} (interrupted run)",
                path.display()
            );
            file.set_len(at as u64).map_err(io_err(path))?;
        }
        Ok(RecordLog {
            path: path.to_path_buf(),
            records,
            out: BufWriter::new(file),
        })
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.records.get(key).map(Vec::as_slice)
    }

    pub fn insert(&mut self, key: &str, payload: Vec<u8>) -> Result<(), EvalError> {
        let kl = key.len().min(u16::MAX as usize);
        let len = (2 + kl + payload.len()) as u32;
        let mut buf = Vec::with_capacity(4 + len as usize);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&(kl as u16).to_le_bytes());
        buf.extend_from_slice(&key.as_bytes()[..kl]);
        buf.extend_from_slice(&payload);
        self.out.write_all(&buf).map_err(io_err(&self.path))?;
        self.records.insert(key[..kl].to_string(), payload);
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), EvalError> {
        self.out.flush().map_err(io_err(&self.path))
    }
}

impl Drop for RecordLog {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Little-endian f32 helpers for payloads.
pub fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

pub fn get_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.log");
        {
            let mut l = RecordLog::open(&p).unwrap();
            l.insert("a", vec![1, 2, 3]).unwrap();
            l.insert("b", vec![4]).unwrap();
        }
        // Tear the last record.
        let n = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(n - 1).unwrap();
        {
            let mut l = RecordLog::open(&p).unwrap();
            assert_eq!(l.get("a"), Some(&[1u8, 2, 3][..]));
            assert_eq!(l.get("b"), None);
            l.insert("c", vec![5, 6]).unwrap();
        }
        let l = RecordLog::open(&p).unwrap();
        assert_eq!(l.records.len(), 2);
        assert_eq!(l.get("c"), Some(&[5u8, 6][..]));
    }
}
