//! A cursor over one frame body, shared by the codec and the message families' body code.

use super::message::DecodeError;

/// A cursor over one frame body that reports what was cut short.
pub(super) struct Body<'a> {
    pub(super) b: &'a [u8],
    pub(super) what: &'static str,
}

impl<'a> Body<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated { what: self.what });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub(super) fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(DecodeError::FieldTooLong { what, len, max });
        }
        self.take(len)
    }
    pub(super) fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let b = self.bytes(what, max)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotUtf8 { what })
    }
    pub(super) fn end(self) -> Result<(), DecodeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { what: self.what, trailing: self.b.len() })
        }
    }
}
