//! Canonical binary encoding: little-endian fixed-width integers, u32 length prefixes, one tag
//! byte for enums and bools. Every length is bounded before anything is allocated.

use crate::TxError;

/// Appends canonical encodings to a buffer.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    /// Appends a u64.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends a bool as 0/1.
    pub fn bool(&mut self, v: bool) {
        self.0.push(v as u8);
    }
    /// Appends fixed bytes.
    pub fn fixed(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// Appends length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.0.extend_from_slice(v);
    }
    /// Appends a length-prefixed string.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads canonical encodings from a slice; every method fails cleanly on short input.
pub struct Reader<'a> {
    buf: &'a [u8],
}

fn malformed(reason: &'static str) -> TxError {
    TxError::Malformed { reason }
}

impl<'a> Reader<'a> {
    /// Wraps a slice.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], TxError> {
        if self.buf.len() < n {
            return Err(malformed("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, TxError> {
        Ok(self.take(1)?[0])
    }
    /// Reads a u64.
    pub fn u64(&mut self) -> Result<u64, TxError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// Reads a bool (only 0 or 1).
    pub fn bool(&mut self) -> Result<bool, TxError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed("bool must be 0 or 1")),
        }
    }
    /// Reads N fixed bytes.
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], TxError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    /// Reads length-prefixed bytes of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], TxError> {
        let len = u32::from_le_bytes(self.fixed::<4>()?) as usize;
        if len > max {
            return Err(malformed("length exceeds bound"));
        }
        self.take(len)
    }
    /// Reads a UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, max: usize) -> Result<String, TxError> {
        let b = self.bytes(max)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| malformed("invalid UTF-8"))
    }
    /// Fails unless all input was consumed.
    pub fn finish(self) -> Result<(), TxError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes"))
        }
    }
}
