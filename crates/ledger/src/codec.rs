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
    /// Appends a u32 length or element count (saturating; decoders reject it if out of bounds).
    pub fn len(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    /// Appends length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
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
        let Some((head, tail)) = self.buf.split_at_checked(n) else {
            return Err(malformed("truncated"));
        };
        self.buf = tail;
        Ok(head)
    }
    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, TxError> {
        Ok(self.take(1)?[0])
    }
    /// Reads a u64.
    pub fn u64(&mut self) -> Result<u64, TxError> {
        Ok(u64::from_le_bytes(self.fixed::<8>()?))
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
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    /// Reads a u32 length or element count, rejecting anything above `max`.
    pub fn len(&mut self, max: usize) -> Result<usize, TxError> {
        let n = u32::from_le_bytes(self.fixed::<4>()?);
        match usize::try_from(n) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(malformed("length exceeds bound")),
        }
    }
    /// Reads length-prefixed bytes of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], TxError> {
        let len = self.len(max)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_round_trips_writer() {
        let mut w = Writer::default();
        w.u8(7);
        w.u64(u64::MAX - 1);
        w.bool(true);
        w.fixed(&[1, 2, 3]);
        w.str("héllo");
        let mut r = Reader::new(&w.0);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.fixed::<3>(), Ok([1, 2, 3]));
        assert_eq!(r.str(16).as_deref(), Ok("héllo"));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn reader_rejects_bad_input() {
        assert_eq!(
            Reader::new(&[2]).bool(),
            Err(TxError::Malformed {
                reason: "bool must be 0 or 1"
            })
        );
        assert_eq!(
            Reader::new(&[1, 2, 3]).u64(),
            Err(TxError::Malformed {
                reason: "truncated"
            })
        );
        // Length 5 with a bound of 4 fails before reading (or allocating) the body.
        assert_eq!(
            Reader::new(&[5, 0, 0, 0]).bytes(4),
            Err(TxError::Malformed {
                reason: "length exceeds bound"
            })
        );
        assert_eq!(
            Reader::new(&[u8::MAX; 4]).bytes(usize::MAX),
            Err(TxError::Malformed {
                reason: "truncated"
            })
        );
        assert_eq!(
            Reader::new(&[2, 0, 0, 0, 0xff, 0xfe]).str(8),
            Err(TxError::Malformed {
                reason: "invalid UTF-8"
            })
        );
        assert_eq!(
            Reader::new(&[0]).finish(),
            Err(TxError::Malformed {
                reason: "trailing bytes"
            })
        );
    }
}
