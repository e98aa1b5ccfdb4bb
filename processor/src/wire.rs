//! Protobuf wire-format reading: varints, tags and field ranges, with every
//! failure reported as a [`Malformed`] carrying the byte offset.
//!
//! The engine never materialises messages; it walks fields as byte ranges of
//! the original batch so that untouched bytes can be copied out as they were.

use crate::error::Malformed;

/// Protobuf wire types used by OTLP. Groups (3, 4) are a proto2 feature that
/// no OTLP message uses, so meeting one means the bytes are not OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::Len => "length-delimited",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// One field of a message, as positions in the batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub number: u32,
    pub wire: WireType,
    /// Offset of the tag's first byte.
    pub start: usize,
    /// For `Len`: offset of the length prefix. Otherwise equal to `body`.
    pub len_at: usize,
    /// Offset of the value (for `Len`: of the payload).
    pub body: usize,
    /// One past the field's last byte.
    pub end: usize,
    /// The decoded varint, for `Varint` fields.
    pub varint: u64,
}

impl Field {
    /// The payload of a length-delimited field, or the raw value bytes.
    pub fn bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.body..self.end]
    }
}

/// A reading failure: where, and what. Small and `Copy` with no message
/// inside, so the hot path carries it cheaply (in wasm a `String` error made
/// every varint read return through memory and kept it from inlining); the
/// text is built only when a batch is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireError {
    pub offset: usize,
    pub problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    VarintPastEnd,
    VarintOverflow,
    VarintTooLong,
    FieldNumber(u64),
    LenPastEnd {
        number: u32,
        len: u64,
        avail: u64,
    },
    Group(u32),
    BadWireType {
        number: u32,
        wire: u8,
    },
    FixedPastEnd(u8),
    /// A known field with the wrong wire type.
    Expected {
        what: &'static str,
        number: u32,
        expected: WireType,
        found: WireType,
    },
    /// Arrays and kvlists nested deeper than the engine's bound.
    TooDeep(usize),
    /// Memory for this record ran out (the host's cap was reached).
    OutOfMemory(&'static str),
    /// A trace or span id of a length OTLP does not allow.
    IdLength {
        what: &'static str,
        len: usize,
        allowed: &'static str,
    },
}

impl WireError {
    #[cold]
    pub fn new(offset: usize, problem: Problem) -> WireError {
        WireError { offset, problem }
    }
}

impl From<WireError> for Malformed {
    fn from(e: WireError) -> Malformed {
        let reason = match e.problem {
            Problem::VarintPastEnd => "varint runs past the end of its message".to_owned(),
            Problem::VarintOverflow => "varint overflows 64 bits".to_owned(),
            Problem::VarintTooLong => "varint longer than 10 bytes".to_owned(),
            Problem::FieldNumber(n) => format!("invalid field number {n}"),
            Problem::LenPastEnd { number, len, avail } => {
                format!("field {number} claims {len} bytes but only {avail} remain in its message")
            }
            Problem::Group(n) => {
                format!("field {n} uses the group wire type, which OTLP never uses")
            }
            Problem::BadWireType { number, wire } => {
                format!("field {number} has invalid wire type {wire}")
            }
            Problem::FixedPastEnd(n) => {
                format!("{n}-byte fixed value runs past the end of its message")
            }
            Problem::Expected { what, number, expected, found } => {
                format!(
                    "{what} (field {number}) must be {}, found {}",
                    expected.name(),
                    found.name()
                )
            }
            Problem::TooDeep(max) => format!("attribute value nested deeper than {max} levels"),
            Problem::OutOfMemory(what) => format!("out of memory for {what}"),
            Problem::IdLength { what, len, allowed } => format!(
                "{what} is {len} bytes, OTLP allows {allowed}; a batch with broken ids is refused \
                 whole (a metrics or logs request sent as traces fails here too)"
            ),
        };
        Malformed { offset: e.offset as u64, reason }
    }
}

/// Decodes a varint at `pos`, returning the value and the position after it.
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: usize, end: usize) -> Result<(u64, usize), WireError> {
    // Fast paths: most varints in OTLP (tags, short lengths) are one byte,
    // and most of the rest (span and attribute lengths) two.
    if pos < end && buf[pos] < 0x80 {
        return Ok((u64::from(buf[pos]), pos + 1));
    }
    if pos + 1 < end && buf[pos + 1] < 0x80 {
        return Ok((u64::from(buf[pos] & 0x7f) | (u64::from(buf[pos + 1]) << 7), pos + 2));
    }
    read_varint_slow(buf, pos, end)
}

#[inline(never)]
fn read_varint_slow(buf: &[u8], pos: usize, end: usize) -> Result<(u64, usize), WireError> {
    let mut value: u64 = 0;
    let mut i = pos;
    for shift in (0..70).step_by(7) {
        if i >= end {
            return Err(WireError::new(pos, Problem::VarintPastEnd));
        }
        let b = buf[i];
        i += 1;
        if shift == 63 && b > 1 {
            return Err(WireError::new(pos, Problem::VarintOverflow));
        }
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok((value, i));
        }
    }
    Err(WireError::new(pos, Problem::VarintTooLong))
}

/// Number of bytes the canonical varint encoding of `v` takes.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started 7 bits; 0 still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends the canonical varint encoding of `v`.
#[inline]
pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Iterates the fields of the message occupying `buf[pos..end]`.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8], pos: usize, end: usize) -> Fields<'a> {
        Fields { buf, pos, end }
    }

    /// The next field, `None` at the end of the message.
    #[inline(always)]
    pub fn next_field(&mut self) -> Result<Option<Field>, WireError> {
        let start = self.pos;
        if start >= self.end {
            return Ok(None);
        }
        // Fast path, inline: a one-byte tag (fields 1 to 15) and a one-byte
        // length or value, which is nearly every field of a span, attribute
        // or value. Everything else, errors included, takes the general
        // reader, out of line: inlined at every walker's loop, it made the
        // loops too big for the wasm compiler to keep their state in
        // registers. Pinned by the `fast_fields_match_the_general_reader`
        // property test.
        if let Some(&[tag, next]) = self.buf.get(start..start + 2)
            && (8..0x80).contains(&tag)
            && start + 2 <= self.end
        {
            let (number, rest) = (u32::from(tag >> 3), self.end - start - 2);
            let field = match tag & 7 {
                2 if next < 0x80 && usize::from(next) <= rest => {
                    let body = start + 2;
                    Some(Field {
                        number,
                        wire: WireType::Len,
                        start,
                        len_at: start + 1,
                        body,
                        end: body + usize::from(next),
                        varint: 0,
                    })
                }
                // A two-byte length: spans and long values.
                2 if next >= 0x80
                    && let Some(&hi) = self.buf.get(start + 2)
                    && hi < 0x80
                    && usize::from(next & 0x7f) | usize::from(hi) << 7 < rest =>
                {
                    let body = start + 3;
                    let len = usize::from(next & 0x7f) | usize::from(hi) << 7;
                    Some(Field {
                        number,
                        wire: WireType::Len,
                        start,
                        len_at: start + 1,
                        body,
                        end: body + len,
                        varint: 0,
                    })
                }
                0 if next < 0x80 => Some(Field {
                    number,
                    wire: WireType::Varint,
                    start,
                    len_at: start + 1,
                    body: start + 1,
                    end: start + 2,
                    varint: u64::from(next),
                }),
                1 if rest >= 7 => Some(Field {
                    number,
                    wire: WireType::Fixed64,
                    start,
                    len_at: start + 1,
                    body: start + 1,
                    end: start + 9,
                    varint: 0,
                }),
                _ => None,
            };
            if let Some(field) = field {
                self.pos = field.end;
                return Ok(Some(field));
            }
        }
        // Through a copy: the general reader takes its iterator by address,
        // and were that `self`, the walkers' iterators would live in memory
        // (in the guest, linear memory) rather than in registers.
        let mut copy = Fields { buf: self.buf, pos: self.pos, end: self.end };
        let next = copy.next_field_general();
        self.pos = copy.pos;
        next
    }

    /// [`Fields::next_field`] for any field, at `self.pos < self.end`.
    #[inline(never)]
    fn next_field_general(&mut self) -> Result<Option<Field>, WireError> {
        let start = self.pos;
        let (tag, after_tag) = read_varint(self.buf, start, self.end)?;
        let number = tag >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(WireError::new(start, Problem::FieldNumber(number)));
        }
        let number = number as u32;
        let (wire, len_at, body, end, varint) = match tag & 7 {
            0 => {
                let (v, e) = read_varint(self.buf, after_tag, self.end)?;
                (WireType::Varint, after_tag, after_tag, e, v)
            }
            1 => (WireType::Fixed64, after_tag, after_tag, self.fixed(after_tag, 8)?, 0),
            2 => {
                let (len, body) = read_varint(self.buf, after_tag, self.end)?;
                let avail = (self.end - body) as u64;
                if len > avail {
                    return Err(WireError::new(
                        after_tag,
                        Problem::LenPastEnd { number, len, avail },
                    ));
                }
                (WireType::Len, after_tag, body, body + len as usize, 0)
            }
            5 => (WireType::Fixed32, after_tag, after_tag, self.fixed(after_tag, 4)?, 0),
            3 | 4 => return Err(WireError::new(start, Problem::Group(number))),
            w => return Err(WireError::new(start, Problem::BadWireType { number, wire: w as u8 })),
        };
        self.pos = end;
        Ok(Some(Field { number, wire, start, len_at, body, end, varint }))
    }

    #[inline]
    fn fixed(&self, at: usize, n: usize) -> Result<usize, WireError> {
        if self.end - at < n {
            Err(WireError::new(at, Problem::FixedPastEnd(n as u8)))
        } else {
            Ok(at + n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_and_lengths() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "len of {v}");
            assert_eq!(read_varint(&buf, 0, buf.len()).unwrap(), (v, buf.len()));
        }
    }

    #[test]
    fn malformed_inputs_name_their_offset() {
        let cases: &[(&[u8], u64, &str)] = &[
            (&[0x0a, 0x05, 1, 2], 1, "claims 5 bytes"),
            (&[0x08], 1, "varint runs past"),
            (&[0x00, 0x00], 0, "invalid field number 0"),
            (&[0x0b], 0, "group wire type"),
            (&[0x0e], 0, "invalid wire type 6"),
            (&[0x09, 1, 2], 1, "8-byte fixed"),
            (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 1, "overflows"),
            (
                &[0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
                1,
                "overflows",
            ),
        ];
        for (bytes, offset, needle) in cases {
            let err: Malformed =
                Fields::new(bytes, 0, bytes.len()).next_field().unwrap_err().into();
            assert_eq!(err.offset, *offset, "{bytes:?}: {err}");
            assert!(err.reason.contains(needle), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn fields_report_positions() {
        // field 1 varint 150, field 2 "hi", field 3 fixed32.
        let bytes = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1d, 1, 2, 3, 4];
        let mut f = Fields::new(&bytes, 0, bytes.len());
        let a = f.next_field().unwrap().unwrap();
        assert_eq!((a.number, a.wire, a.varint, a.end), (1, WireType::Varint, 150, 3));
        let b = f.next_field().unwrap().unwrap();
        assert_eq!((b.number, b.start, b.len_at, b.body, b.end), (2, 3, 4, 5, 7));
        assert_eq!(b.bytes(&bytes), b"hi");
        let c = f.next_field().unwrap().unwrap();
        assert_eq!((c.number, c.wire, c.end), (3, WireType::Fixed32, 12));
        assert!(f.next_field().unwrap().is_none());
    }

    proptest::proptest! {
        /// Scenario: well-formed fields of every wire type (one- and
        /// two-byte tags, lengths and values, some not minimal, the odd
        /// group or bad wire type), in a message that ends at a random point
        /// inside the buffer, with more bytes after it.
        /// Guarantees: the inline fast paths of `next_field` read the same
        /// fields as the general reader, and fail with the same error,
        /// never reading past the message's end.
        #[test]
        fn fast_fields_match_the_general_reader(
            fields in proptest::collection::vec((1u32..20, 0u8..6, 0usize..200, proptest::num::u8::ANY), 0..8),
            cut in proptest::num::usize::ANY,
            after in proptest::collection::vec(proptest::num::u8::ANY, 0..4),
        ) {
            let mut bytes = Vec::new();
            for (number, kind, n, fill) in fields {
                let wire = [0u64, 1, 2, 5, 2, 3][usize::from(kind)];
                write_varint(&mut bytes, u64::from(number) << 3 | wire);
                match kind {
                    0 => write_varint(&mut bytes, n as u64),
                    1 => bytes.extend_from_slice(&[fill; 8]),
                    2 => { write_varint(&mut bytes, n as u64); bytes.extend(std::iter::repeat_n(fill, n)); }
                    3 => bytes.extend_from_slice(&[fill; 4]),
                    // A length of one byte written in two.
                    4 => { bytes.extend_from_slice(&[0x80 | (n as u8 & 0x7f), 0]); bytes.extend(std::iter::repeat_n(fill, n & 0x7f)); }
                    _ => {}
                }
            }
            // Half the messages end within two bytes of the last field's
            // end: the boundaries a length check can get wrong by one.
            let end = if cut % 2 == 0 { cut / 2 % (bytes.len() + 1) } else { bytes.len().saturating_sub(cut / 2 % 3) };
            bytes.extend_from_slice(&after);
            let read = |general: bool| {
                let mut fields = Fields::new(&bytes, 0, end);
                let mut out = Vec::new();
                loop {
                    let next = if general {
                        if fields.pos >= fields.end { Ok(None) } else { fields.next_field_general() }
                    } else {
                        fields.next_field()
                    };
                    match next {
                        Ok(Some(f)) => out.push(Ok((f.number, f.wire as u8, f.start, f.len_at, f.body, f.end, f.varint))),
                        Ok(None) => break,
                        Err(e) => { out.push(Err(e)); break; }
                    }
                }
                out
            };
            proptest::prop_assert_eq!(read(false), read(true));
        }

        /// Scenario: any bytes, any start and end within them.
        /// Guarantees: the one- and two-byte fast paths of `read_varint`
        /// give exactly what the plain loop gives, errors included.
        #[test]
        fn fast_varint_paths_match_the_plain_loop(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..12), a in 0..12usize, b in 0..12usize) {
            let (pos, end) = (a.min(bytes.len()), b.min(bytes.len()));
            proptest::prop_assert_eq!(read_varint(&bytes, pos, end), read_varint_slow(&bytes, pos, end));
        }
    }
}
