//! [`Value`]: an arbitrary CBOR item carried through the protocol verbatim
//! (call arguments and results, stored values).
//!
//! The host never needs to understand a runtime's arguments, so they stay
//! encoded: a `Value` is the bytes of exactly one well-formed CBOR item,
//! checked once when it enters (bounded nesting, valid UTF-8 text, no
//! truncation). The check is iterative: hostile input can make it fail,
//! never recurse deeply or allocate by a declared length. This module must
//! never hand out a `Value` that was not checked.

use std::fmt;

use bytes::Bytes;
use minicbor::decode::Decoder;
use minicbor::encode::{Encoder, Write};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// The deepest nesting of arrays and maps accepted in a [`Value`] (and so
/// in any frame). Deep enough for any real document; shallow enough that a
/// serde deserializer walking a checked value cannot exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// One well-formed CBOR item, kept encoded.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Value(Bytes);

impl Value {
    /// CBOR `null`.
    pub fn null() -> Self {
        Value(Bytes::from_static(&[0xf6]))
    }

    /// Checks `cbor` (exactly one item, nothing after it) and wraps it.
    pub fn from_cbor(cbor: impl Into<Bytes>) -> Result<Self, Error> {
        let cbor = cbor.into();
        let end = scan_item(&cbor, 0)?;
        if end != cbor.len() {
            return Err(Error::Malformed {
                reason: format!("{} trailing bytes after the value", cbor.len() - end),
            });
        }
        Ok(Value(cbor))
    }

    /// Encodes any serde value (for example a `serde_json::Value` or a
    /// `#[derive(Serialize)]` struct) as CBOR.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        // `()` and JSON `null` must be CBOR null, not minicbor-serde's
        // default of an empty array, or peers in other languages (and the
        // JSON API) would see `[]`.
        let mut serializer = minicbor_serde::Serializer::new(Vec::new());
        serializer.serialize_unit_as_null(true);
        value
            .serialize(&mut serializer)
            .map_err(|e| Error::Encode {
                reason: e.to_string(),
            })?;
        let cbor = serializer.into_encoder().into_writer();
        // Serialisers can nest without bound; the receiver would refuse it.
        Value::from_cbor(cbor)
    }

    /// Decodes the value into any serde type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        minicbor_serde::from_slice(&self.0).map_err(|e| Error::Malformed {
            reason: format!("value does not have the expected shape: {e}"),
        })
    }

    /// For a map: the value under the text key `key`, still encoded (no
    /// decoding and re-encoding). `None` when the key is absent; an error
    /// when this is not a map.
    pub fn field(&self, key: &str) -> Result<Option<Value>, Error> {
        let not_a_map = |e: minicbor::decode::Error| Error::Malformed {
            reason: format!("expected a map with a {key:?} key: {e}"),
        };
        let mut decoder = Decoder::new(&self.0);
        let entries = decoder.map().map_err(not_a_map)?;
        let mut seen = 0u64;
        loop {
            match entries {
                Some(len) if seen == len => return Ok(None),
                None if decoder.datatype().map_err(not_a_map)? == minicbor::data::Type::Break => {
                    return Ok(None);
                }
                _ => {}
            }
            seen += 1;
            let matches = match decoder.datatype().map_err(not_a_map)? {
                minicbor::data::Type::String => decoder.str().map_err(not_a_map)? == key,
                _ => {
                    decoder.skip().map_err(not_a_map)?;
                    false
                }
            };
            // Checked at construction, so this walk cannot fail or go deep.
            let start = decoder.position();
            let end = scan_item(&self.0, start)?;
            if matches {
                return Ok(Some(Value(self.0.slice(start..end))));
            }
            decoder.set_position(end);
        }
    }

    /// The encoded item.
    pub fn as_cbor(&self) -> &[u8] {
        &self.0
    }

    /// True for CBOR `null` (and `undefined`).
    pub fn is_null(&self) -> bool {
        matches!(&*self.0, [0xf6] | [0xf7])
    }
}

impl Default for Value {
    fn default() -> Self {
        Value::null()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        write!(f, "Value({} bytes: ", self.0.len())?;
        for byte in self.0.iter().take(SHOWN) {
            write!(f, "{byte:02x}")?;
        }
        if self.0.len() > SHOWN {
            f.write_str("…")?;
        }
        f.write_str(")")
    }
}

impl<C> minicbor::Encode<C> for Value {
    fn encode<W: Write>(
        &self,
        e: &mut Encoder<W>,
        _: &mut C,
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        e.writer_mut()
            .write_all(&self.0)
            .map_err(minicbor::encode::Error::write)
    }
}

impl<'b, C> minicbor::Decode<'b, C> for Value {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, minicbor::decode::Error> {
        let start = d.position();
        let end = scan_item(d.input(), start)
            .map_err(|e| minicbor::decode::Error::message(e.to_string()).at(start))?;
        d.set_position(end);
        Ok(Value(Bytes::copy_from_slice(&d.input()[start..end])))
    }
}

/// Walks one CBOR item starting at `pos` and returns where it ends,
/// refusing anything malformed or nested deeper than [`MAX_NESTING`].
pub(crate) fn scan_item(input: &[u8], mut pos: usize) -> Result<usize, Error> {
    struct Open {
        /// Items still expected; `None` for an indefinite-length container.
        remaining: Option<u64>,
        /// For indefinite maps: whether an odd number of items was seen.
        is_map: bool,
        odd: bool,
    }
    let malformed = |reason: String| Error::Malformed { reason };
    let mut open: Vec<Open> = Vec::new();
    loop {
        let head = read_head(input, pos)?;
        pos = head.end;
        let mut completed = true;
        match head.major {
            0 | 1 => {}
            2 | 3 => match head.argument {
                Argument::Indefinite => loop {
                    // Chunks of the same type, then a break.
                    if input.get(pos) == Some(&0xff) {
                        pos += 1;
                        break;
                    }
                    let chunk = read_head(input, pos)?;
                    let Argument::Value(len) = chunk.argument else {
                        return Err(malformed("nested indefinite string chunk".into()));
                    };
                    if chunk.major != head.major {
                        return Err(malformed("string chunk of another type".into()));
                    }
                    pos = take_string(input, chunk.end, len, head.major == 3)?;
                },
                Argument::Value(len) => pos = take_string(input, pos, len, head.major == 3)?,
            },
            4 | 5 => {
                if open.len() >= MAX_NESTING {
                    return Err(Error::NestingTooDeep { max: MAX_NESTING });
                }
                let is_map = head.major == 5;
                let remaining = match head.argument {
                    Argument::Indefinite => None,
                    Argument::Value(n) if is_map => Some(
                        n.checked_mul(2)
                            .ok_or_else(|| malformed("map too large".into()))?,
                    ),
                    Argument::Value(n) => Some(n),
                };
                if remaining != Some(0) {
                    open.push(Open {
                        remaining,
                        is_map,
                        odd: false,
                    });
                    completed = false;
                }
            }
            // A tag applies to the item that follows: not complete yet.
            6 => {
                if input.get(pos) == Some(&0xff) {
                    return Err(malformed("tag without a tagged item".into()));
                }
                completed = false;
            }
            _ => match head.argument {
                Argument::Indefinite => {
                    // A break: closes the innermost indefinite container.
                    match open.pop() {
                        Some(Open {
                            remaining: None,
                            is_map,
                            odd,
                        }) => {
                            if is_map && odd {
                                return Err(malformed("map with a key but no value".into()));
                            }
                        }
                        _ => return Err(malformed("unexpected break".into())),
                    }
                }
                Argument::Value(_) => {}
            },
        }
        if !completed {
            continue;
        }
        // One item finished: count it against its containers.
        loop {
            let Some(top) = open.last_mut() else {
                return Ok(pos);
            };
            match &mut top.remaining {
                Some(remaining) => {
                    *remaining -= 1;
                    if *remaining > 0 {
                        break;
                    }
                    open.pop();
                }
                None => {
                    top.odd = !top.odd;
                    break;
                }
            }
        }
    }
}

enum Argument {
    Value(u64),
    Indefinite,
}

struct Head {
    major: u8,
    argument: Argument,
    end: usize,
}

fn read_head(input: &[u8], pos: usize) -> Result<Head, Error> {
    let truncated = || Error::Malformed {
        reason: "truncated CBOR item".into(),
    };
    let initial = *input.get(pos).ok_or_else(truncated)?;
    let (major, info) = (initial >> 5, initial & 0x1f);
    let width = match info {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        31 if matches!(major, 2..=5 | 7) => {
            return Ok(Head {
                major,
                argument: Argument::Indefinite,
                end: pos + 1,
            });
        }
        _ => {
            return Err(Error::Malformed {
                reason: format!("reserved CBOR header byte 0x{initial:02x}"),
            });
        }
    };
    let bytes = input.get(pos + 1..pos + 1 + width).ok_or_else(truncated)?;
    let argument = if width == 0 {
        u64::from(info)
    } else {
        bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    if major == 7 && info == 24 && argument < 32 {
        return Err(Error::Malformed {
            reason: "badly encoded simple value".into(),
        });
    }
    Ok(Head {
        major,
        argument: Argument::Value(argument),
        end: pos + 1 + width,
    })
}

fn take_string(input: &[u8], pos: usize, len: u64, text: bool) -> Result<usize, Error> {
    let available = input.len() - pos;
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= available)
        .ok_or_else(|| Error::Malformed {
            reason: format!("string of {len} bytes with only {available} left"),
        })?;
    if text && std::str::from_utf8(&input[pos..pos + len]).is_err() {
        return Err(Error::Malformed {
            reason: "text string is not valid UTF-8".into(),
        });
    }
    Ok(pos + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_arrays(depth: usize) -> Vec<u8> {
        let mut cbor = vec![0x81; depth];
        cbor.push(0x00);
        cbor
    }

    #[test]
    fn serde_round_trip() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Sleep {
            ms: u64,
        }
        let value = Value::encode(&Sleep { ms: 250 }).unwrap();
        assert_eq!(value.decode::<Sleep>().unwrap(), Sleep { ms: 250 });
        let json: serde_json::Value = value.decode().unwrap();
        assert_eq!(json, serde_json::json!({"ms": 250}));
        assert!(Value::null().is_null());
        assert!(Value::encode(&serde_json::Value::Null).unwrap().is_null());
        assert!(Value::encode(&()).unwrap().is_null());
        assert!(value.decode::<String>().is_err());
    }

    #[test]
    fn field_slices_a_map_value_without_re_encoding() {
        let value =
            Value::encode(&serde_json::json!({"key": "k", "value": {"n": [1, 2]}})).unwrap();
        let field = value.field("value").unwrap().unwrap();
        assert_eq!(
            field.decode::<serde_json::Value>().unwrap(),
            serde_json::json!({"n": [1, 2]})
        );
        assert_eq!(value.field("missing").unwrap(), None);
        assert!(Value::encode(&[1, 2]).unwrap().field("key").is_err());
        // Indefinite-length maps and non-text keys work too.
        let indefinite = Value::from_cbor(vec![0xbf, 0x01, 0x02, 0x61, b'k', 0x03, 0xff]).unwrap();
        assert_eq!(indefinite.field("k").unwrap().unwrap().as_cbor(), [0x03]);
        assert_eq!(indefinite.field("z").unwrap(), None);
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(Value::from_cbor(nested_arrays(MAX_NESTING)).is_ok());
        assert!(matches!(
            Value::from_cbor(nested_arrays(MAX_NESTING + 1)),
            Err(Error::NestingTooDeep { max: MAX_NESTING })
        ));
        // A hostile depth fails fast and without recursion.
        assert!(Value::from_cbor(nested_arrays(1_000_000)).is_err());
    }

    #[test]
    fn malformed_items_are_refused_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "truncated"),
            (
                &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00],
                "string of",
            ),
            (&[0x62, 0xff, 0xfe], "UTF-8"),
            (&[0x82, 0x01], "truncated"),
            (&[0xff], "unexpected break"),
            (&[0xbf, 0x01, 0xff], "key but no value"),
            (&[0x1c], "reserved"),
            (&[0x01, 0x02], "trailing"),
            (&[0xf8, 0x10], "simple value"),
            (&[0x9f, 0xc1, 0xff], "tag without"),
        ];
        for (cbor, expected) in cases {
            let error = Value::from_cbor(cbor.to_vec()).unwrap_err().to_string();
            assert!(error.contains(expected), "{cbor:02x?}: {error}");
        }
    }

    #[test]
    fn well_formed_items_are_accepted() {
        let cases: &[&[u8]] = &[
            &[0x00],
            &[0x3b, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0x5f, 0x41, 0x00, 0x42, 0x01, 0x02, 0xff],
            &[0x9f, 0x01, 0x82, 0x02, 0x03, 0xff],
            &[0xbf, 0x61, 0x61, 0x01, 0xff],
            &[0xa1, 0x61, 0x6b, 0xc1, 0x1a, 0, 0, 0, 1],
            &[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
            &[0x80],
            &[0xa0],
        ];
        for cbor in cases {
            assert!(Value::from_cbor(cbor.to_vec()).is_ok(), "{cbor:02x?}");
        }
    }
}
