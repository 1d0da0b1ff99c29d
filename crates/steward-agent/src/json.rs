//! JSON ⇄ CBOR for the API: call arguments arrive as JSON and travel as
//! CBOR; results travel as CBOR and leave as JSON. Numbers keep every
//! digit both ways.
//!
//! `serde_json::Value` cannot hold an integer beyond 64 bits (it becomes a
//! float: `2^70` arrived as `1.1805916207174113e21`), so the API never
//! parses arguments into one: they stay JSON text ([`RawValue`]) and are
//! walked here, each integer literal becoming the integer it spells — up
//! to 128 bits, which CBOR carries as a bignum (tag 2 or 3) beyond 64.
//! Results are walked the other way, straight from the CBOR bytes to JSON
//! text, so bignums come back as JSON integers. An integer outside
//! -2^127 ..= 2^128-1 is refused with a message that says so, never
//! rounded.
//!
//! (serde_json's `arbitrary_precision` feature would keep the digits in
//! `serde_json::Value` instead, but it is one switch for the whole binary:
//! every `serde_json::Value` then serializes its numbers as a private
//! one-key map to any other format, so the example runtimes and every
//! `Value::encode(&json)` in the workspace would silently send
//! `{"$serde_json::private::Number": "7"}` for `7`.)
//!
//! CBOR can say things JSON cannot; this module decides how each shows:
//! byte strings become arrays of numbers (what `serde_json` does with
//! bytes), non-text map keys their JSON text, NaN and infinities `null`,
//! tags other than bignums their content. It must never fail on a
//! well-formed value whose integers fit 128 bits and whose simple values
//! are booleans, null or undefined.

use std::cell::RefCell;
use std::collections::BTreeMap;

use minicbor::data::{IanaTag, Type};
use minicbor::decode::Decoder;
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value as Json;
use serde_json::value::RawValue;
use steward_protocol::{MAX_NESTING, Value};

/// The CBOR form of call arguments given as JSON text (`None`: `null`).
pub(crate) fn to_cbor(args: Option<&RawValue>) -> Result<Value, String> {
    let Some(args) = args else {
        return Ok(Value::null());
    };
    Value::encode(&ExactJson(args)).map_err(|error| match error {
        steward_protocol::Error::Encode { reason } => format!("invalid call arguments: {reason}"),
        other => format!("invalid call arguments: {other}"),
    })
}

/// The CBOR form of a JSON value (what a hook tool passes on; its numbers
/// are what `serde_json` made of them).
pub(crate) fn from_json(json: &Json) -> Result<Value, String> {
    Value::encode(json).map_err(|error| format!("cannot encode the arguments: {error}"))
}

/// The JSON text of a runtime's answer, every integer exact.
pub(crate) fn to_raw_json(value: &Value) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(&CborJson(value))
        .map_err(|error| format!("the runtime's answer cannot be shown as JSON: {error}"))
}

/// The JSON value of a runtime's answer, for the hook tools (a
/// `serde_json::Value`, so an integer beyond 64 bits is an error here).
pub(crate) fn to_json(value: &Value) -> Result<Json, String> {
    serde_json::to_value(CborJson(value))
        .map_err(|error| format!("the runtime's answer cannot be shown as JSON: {error}"))
}

/// JSON text that serializes (to CBOR, or to JSON again) with each
/// integer literal as that integer, exactly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExactJson<'a>(pub(crate) &'a RawValue);

impl Serialize for ExactJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        json_item(self.0.get(), 0, serializer)
    }
}

/// A value inside [`ExactJson`], `depth` containers down.
struct JsonItem<'a> {
    text: &'a str,
    depth: usize,
}

impl Serialize for JsonItem<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        json_item(self.text, self.depth, serializer)
    }
}

/// One container deeper, refused past what a [`Value`] may hold (so deep
/// input fails early, before it is walked).
fn deeper<E: serde::ser::Error>(depth: usize) -> Result<usize, E> {
    if depth >= MAX_NESTING {
        return Err(E::custom(format!(
            "nested deeper than {MAX_NESTING} levels"
        )));
    }
    Ok(depth + 1)
}

/// Serializes the JSON value `text` (valid JSON: it comes from a
/// [`RawValue`]). `serde_json` parses every level; this only chooses what
/// each number becomes.
fn json_item<S: Serializer>(text: &str, depth: usize, serializer: S) -> Result<S::Ok, S::Error> {
    let text = text.trim_matches([' ', '\t', '\n', '\r']);
    match text.as_bytes().first() {
        Some(b'{') => {
            let depth = deeper(depth)?;
            // A later duplicate key wins, as in `serde_json::Value`.
            let entries: BTreeMap<String, &RawValue> =
                serde_json::from_str(text).map_err(S::Error::custom)?;
            let mut map = serializer.serialize_map(Some(entries.len()))?;
            for (key, value) in &entries {
                map.serialize_entry(
                    key,
                    &JsonItem {
                        text: value.get(),
                        depth,
                    },
                )?;
            }
            map.end()
        }
        Some(b'[') => {
            let depth = deeper(depth)?;
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(S::Error::custom)?;
            let mut seq = serializer.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(&JsonItem {
                    text: item.get(),
                    depth,
                })?;
            }
            seq.end()
        }
        Some(b'"') => {
            let text: String = serde_json::from_str(text).map_err(S::Error::custom)?;
            serializer.serialize_str(&text)
        }
        Some(b't' | b'f') => {
            serializer.serialize_bool(serde_json::from_str(text).map_err(S::Error::custom)?)
        }
        Some(b'n') => serializer.serialize_unit(),
        _ => json_number(text, serializer),
    }
}

/// A JSON number literal: an integer as the integer it spells, anything
/// with a fraction or an exponent as `serde_json` reads it (an `f64`).
fn json_number<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    // `-0` is a float to serde_json too: an integer has no negative zero.
    if text.contains(['.', 'e', 'E']) || text == "-0" {
        let float: f64 = serde_json::from_str(text).map_err(S::Error::custom)?;
        return serializer.serialize_f64(float);
    }
    if text.starts_with('-') {
        if let Ok(small) = text.parse::<i64>() {
            return serializer.serialize_i64(small);
        }
        if let Ok(big) = text.parse::<i128>() {
            return serializer.serialize_i128(big);
        }
    } else {
        if let Ok(small) = text.parse::<u64>() {
            return serializer.serialize_u64(small);
        }
        if let Ok(big) = text.parse::<u128>() {
            return serializer.serialize_u128(big);
        }
    }
    Err(S::Error::custom(format!(
        "the integer {} is beyond what the API carries exactly (integers from -2^127 to 2^128-1); send it as a string",
        shortened(text)
    )))
}

/// A long number's first digits and its length, for a message.
fn shortened(digits: &str) -> String {
    // Every integer of up to 128 bits shows whole.
    const SHOWN: usize = 40;
    if digits.len() <= SHOWN {
        return digits.to_owned();
    }
    format!("{}… ({} digits)", &digits[..SHOWN], digits.len())
}

/// A CBOR value that serializes as JSON (see the module docs for how).
struct CborJson<'a>(&'a Value);

impl Serialize for CborJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let decoder = RefCell::new(Decoder::new(self.0.as_cbor()));
        cbor_item(&decoder, serializer)
    }
}

/// The next item of a decoder shared by nested serializations (each
/// borrows it only while it decodes one head).
struct CborItem<'a, 'b>(&'a RefCell<Decoder<'b>>);

impl Serialize for CborItem<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        cbor_item(self.0, serializer)
    }
}

fn decode_error<E: serde::ser::Error>(error: minicbor::decode::Error) -> E {
    E::custom(format!("malformed CBOR: {error}"))
}

/// Serializes the item at the decoder's position, leaving it after it.
/// The value was checked when it arrived (well-formed, at most
/// [`MAX_NESTING`] deep), so the recursion is bounded.
fn cbor_item<S: Serializer>(cell: &RefCell<Decoder<'_>>, serializer: S) -> Result<S::Ok, S::Error> {
    loop {
        let datatype = cell.borrow().datatype().map_err(decode_error)?;
        let mut d = cell.borrow_mut();
        return match datatype {
            Type::Bool => serializer.serialize_bool(d.bool().map_err(decode_error)?),
            Type::Null | Type::Undefined => {
                d.skip().map_err(decode_error)?;
                serializer.serialize_unit()
            }
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                serializer.serialize_u64(d.u64().map_err(decode_error)?)
            }
            Type::I8 | Type::I16 | Type::I32 | Type::I64 => {
                serializer.serialize_i64(d.i64().map_err(decode_error)?)
            }
            Type::Int => serializer.serialize_i128(i128::from(d.int().map_err(decode_error)?)),
            Type::F16 => {
                let at = d.position();
                let bits = d
                    .input()
                    .get(at + 1..at + 3)
                    .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
                    .ok_or_else(|| S::Error::custom("malformed CBOR: truncated half float"))?;
                d.set_position(at + 3);
                float(serializer, half_to_f64(bits))
            }
            Type::F32 => float(serializer, f64::from(d.f32().map_err(decode_error)?)),
            Type::F64 => float(serializer, d.f64().map_err(decode_error)?),
            Type::Bytes | Type::BytesIndef => {
                let bytes = bytes(&mut d).map_err(decode_error)?;
                serializer.collect_seq(bytes)
            }
            Type::String | Type::StringIndef => {
                let text = text(&mut d).map_err(decode_error)?;
                serializer.serialize_str(&text)
            }
            Type::Array | Type::ArrayIndef => {
                let len = d.array().map_err(decode_error)?;
                drop(d);
                let mut seq =
                    serializer.serialize_seq(len.and_then(|n| usize::try_from(n).ok()))?;
                let mut left = len;
                while more(cell, &mut left).map_err(decode_error)? {
                    seq.serialize_element(&CborItem(cell))?;
                }
                seq.end()
            }
            Type::Map | Type::MapIndef => {
                let len = d.map().map_err(decode_error)?;
                drop(d);
                let mut map =
                    serializer.serialize_map(len.and_then(|n| usize::try_from(n).ok()))?;
                let mut left = len;
                while more(cell, &mut left).map_err(decode_error)? {
                    let key_type = cell.borrow().datatype().map_err(decode_error)?;
                    let key = match key_type {
                        Type::String | Type::StringIndef => {
                            text(&mut cell.borrow_mut()).map_err(decode_error)?
                        }
                        // JSON keys are text: any other key shows as its
                        // JSON text (`7` → `"7"`).
                        _ => serde_json::to_string(&CborItem(cell)).map_err(S::Error::custom)?,
                    };
                    map.serialize_entry(&key, &CborItem(cell))?;
                }
                map.end()
            }
            Type::Tag => {
                let tag = d.tag().map_err(decode_error)?;
                match IanaTag::try_from(tag) {
                    Ok(IanaTag::PosBignum) => bignum(&mut d, false, serializer),
                    Ok(IanaTag::NegBignum) => bignum(&mut d, true, serializer),
                    // Any other tag shows as the item it tags.
                    _ => continue,
                }
            }
            Type::Simple => {
                let simple = d.simple().map_err(decode_error)?;
                Err(S::Error::custom(format!(
                    "the CBOR simple value {simple} has no JSON form"
                )))
            }
            Type::Break | Type::Unknown(_) => Err(S::Error::custom(format!(
                "malformed CBOR: unexpected {datatype}"
            ))),
        };
    }
}

/// Whether a container has another item: `left` counts down a definite
/// length; an indefinite one (`None`) ends at a break, which this consumes.
fn more(
    cell: &RefCell<Decoder<'_>>,
    left: &mut Option<u64>,
) -> Result<bool, minicbor::decode::Error> {
    match left {
        Some(0) => Ok(false),
        Some(n) => {
            *n -= 1;
            Ok(true)
        }
        None => {
            let mut d = cell.borrow_mut();
            if d.datatype()? == Type::Break {
                let at = d.position();
                d.set_position(at + 1);
                return Ok(false);
            }
            Ok(true)
        }
    }
}

/// A byte string, definite or in chunks.
fn bytes(d: &mut Decoder<'_>) -> Result<Vec<u8>, minicbor::decode::Error> {
    let mut bytes = Vec::new();
    for chunk in d.bytes_iter()? {
        bytes.extend_from_slice(chunk?);
    }
    Ok(bytes)
}

/// A text string, definite or in chunks.
fn text(d: &mut Decoder<'_>) -> Result<String, minicbor::decode::Error> {
    let mut text = String::new();
    for chunk in d.str_iter()? {
        text.push_str(chunk?);
    }
    Ok(text)
}

/// A bignum's byte string as the integer it is (tag 3: `-1 - n`), if it
/// fits the integers JSON answers carry exactly.
fn bignum<S: Serializer>(
    d: &mut Decoder<'_>,
    negative: bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let kind = d.datatype().map_err(decode_error)?;
    if !matches!(kind, Type::Bytes | Type::BytesIndef) {
        return Err(S::Error::custom(format!(
            "malformed CBOR: a bignum tags a {kind}, not a byte string"
        )));
    }
    let bytes = bytes(d).map_err(decode_error)?;
    let significant = bytes
        .iter()
        .position(|&byte| byte != 0)
        .map_or(&[][..], |first| &bytes[first..]);
    let too_big = || {
        S::Error::custom(format!(
            "the runtime answered an integer of {} bits; JSON answers carry integers from -2^127 to 2^128-1 exactly",
            significant.len() * 8
                - significant
                    .first()
                    .map_or(0, |b| b.leading_zeros() as usize)
        ))
    };
    if significant.len() > 16 {
        return Err(too_big());
    }
    let mut be = [0u8; 16];
    be[16 - significant.len()..].copy_from_slice(significant);
    let n = u128::from_be_bytes(be);
    if !negative {
        return serializer.serialize_u128(n);
    }
    // -1 - n, when it fits an i128.
    match i128::try_from(n) {
        Ok(n) => serializer.serialize_i128(-1 - n),
        Err(_) => Err(too_big()),
    }
}

/// A float; JSON has no NaN or infinities, so those are `null`.
fn float<S: Serializer>(serializer: S, value: f64) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f64(value)
    } else {
        serializer.serialize_unit()
    }
}

/// An IEEE 754 half-precision float (RFC 8949, appendix D).
fn half_to_f64(bits: u16) -> f64 {
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mantissa + 1024.0) * 2f64.powi(exponent - 25),
    };
    if bits & 0x8000 == 0 {
        magnitude
    } else {
        -magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    /// JSON text → CBOR → JSON text.
    fn round_trip(text: &str) -> String {
        let cbor = to_cbor(Some(&raw(text))).unwrap();
        to_raw_json(&cbor).unwrap().get().to_owned()
    }

    #[test]
    fn json_round_trips_through_cbor() {
        let original = json!({"a": [1, -2, 3.5, "x", null, true], "b": {"c": {}}, "d": "é\n\"q\""});
        let cbor = to_cbor(Some(&raw(&original.to_string()))).unwrap();
        assert_eq!(to_json(&cbor).unwrap(), original);
        let text = to_raw_json(&cbor).unwrap();
        assert_eq!(serde_json::from_str::<Json>(text.get()).unwrap(), original);
        assert!(to_cbor(None).unwrap().is_null());
        assert!(to_cbor(Some(&raw("null"))).unwrap().is_null());
    }

    #[test]
    fn integers_beyond_64_bits_keep_every_digit_both_ways() {
        let two_to_the_70 = "1180591620717411303424";
        let cases = [
            two_to_the_70.to_owned(),
            format!("-{two_to_the_70}"),
            u128::MAX.to_string(),
            i128::MIN.to_string(),
            // The edges of CBOR's own integers and of 64 bits.
            u64::MAX.to_string(),
            (u128::from(u64::MAX) + 1).to_string(),
            i64::MIN.to_string(),
            (i128::from(i64::MIN) - 1).to_string(),
            format!("-{}", u128::from(u64::MAX) + 1),
            format!("-{}", u128::from(u64::MAX) + 2),
        ];
        for number in &cases {
            let text = format!("{{\"list\":[{number}],\"n\":{number}}}");
            assert_eq!(round_trip(&text), text, "{number}");
        }
    }

    #[test]
    fn big_integers_travel_as_cbor_bignums() {
        // 2^70: tag 2 (0xc2) over the bytes 0x40 00 .. 00 (9 bytes).
        let cbor = to_cbor(Some(&raw("1180591620717411303424"))).unwrap();
        assert_eq!(cbor.as_cbor(), [0xc2, 0x49, 0x40, 0, 0, 0, 0, 0, 0, 0, 0]);
        // -2^70: tag 3 over 2^70 - 1.
        let cbor = to_cbor(Some(&raw("-1180591620717411303424"))).unwrap();
        assert_eq!(
            cbor.as_cbor(),
            [
                0xc3, 0x49, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]
        );
        // What a Rust runtime decodes it into.
        assert_eq!(cbor.decode::<i128>().unwrap(), -(1i128 << 70));
    }

    #[test]
    fn integers_beyond_128_bits_are_refused_not_rounded() {
        for number in [
            "340282366920938463463374607431768211456",  // 2^128
            "-170141183460469231731687303715884105729", // -2^127 - 1
            "123456789012345678901234567890123456789012345678901234567890",
        ] {
            let error = to_cbor(Some(&raw(&format!("[{number}]")))).unwrap_err();
            assert!(
                error.contains("integer") && error.contains("send it as a string"),
                "{error}"
            );
        }
        let long = to_cbor(Some(&raw(&"9".repeat(100)))).unwrap_err();
        assert!(long.contains("(100 digits)"), "{long}");
    }

    #[test]
    fn floats_stay_floats() {
        assert_eq!(
            round_trip("[1.5,1e3,-0,2.5e-7]"),
            "[1.5,1000.0,-0.0,2.5e-7]"
        );
        assert!(
            to_cbor(Some(&raw("1e400")))
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn nesting_is_refused_before_the_value_would_be() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(to_cbor(Some(&raw(&deep(MAX_NESTING)))).is_ok());
        let error = to_cbor(Some(&raw(&deep(MAX_NESTING + 1)))).unwrap_err();
        assert!(error.contains("nested deeper than 64"), "{error}");
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(round_trip(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn bytes_show_as_arrays_of_numbers() {
        struct Bytes;
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&[1, 2, 255])
            }
        }
        let cbor = Value::encode(&Bytes).unwrap();
        assert_eq!(to_json(&cbor).unwrap(), json!([1, 2, 255]));
        // In chunks too.
        let chunked = Value::from_cbor(vec![0x5f, 0x41, 0x01, 0x42, 0x02, 0xff, 0xff]).unwrap();
        assert_eq!(to_raw_json(&chunked).unwrap().get(), "[1,2,255]");
    }

    #[test]
    fn non_text_keys_show_as_their_json_text() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(7u32, "seven");
        let cbor = Value::encode(&map).unwrap();
        assert_eq!(to_json(&cbor).unwrap(), json!({"7": "seven"}));
        // An array key, in an indefinite map.
        let cbor = Value::from_cbor(vec![0xbf, 0x82, 0x01, 0x02, 0x61, b'x', 0xff]).unwrap();
        assert_eq!(to_raw_json(&cbor).unwrap().get(), r#"{"[1,2]":"x"}"#);
    }

    #[test]
    fn non_finite_floats_show_as_null() {
        let cbor = Value::encode(&f64::NAN).unwrap();
        assert_eq!(to_json(&cbor).unwrap(), Json::Null);
        let infinity = Value::from_cbor(vec![0xf9, 0x7c, 0x00]).unwrap();
        assert_eq!(to_raw_json(&infinity).unwrap().get(), "null");
    }

    #[test]
    fn half_floats_are_decoded() {
        // RFC 8949 appendix A: f9 3c00 = 1.0, f9 c400 = -4.0, f9 0001 =
        // 5.960464477539063e-8, f9 7bff = 65504.0.
        for (bits, expected) in [
            (0x3c00u16, 1.0),
            (0xc400, -4.0),
            (0x0001, 5.960_464_477_539_063e-8),
            (0x7bff, 65504.0),
        ] {
            let [high, low] = bits.to_be_bytes();
            let cbor = Value::from_cbor(vec![0xf9, high, low]).unwrap();
            assert_eq!(to_json(&cbor).unwrap(), json!(expected), "{bits:04x}");
        }
    }

    #[test]
    fn other_tags_show_their_content_and_bignums_their_value() {
        // tag 1 (epoch time) over 1363896240.
        let epoch = Value::from_cbor(vec![0xc1, 0x1a, 0x51, 0x4b, 0x67, 0xb0]).unwrap();
        assert_eq!(to_raw_json(&epoch).unwrap().get(), "1363896240");
        // RFC 8949 appendix A: c2 49 01 00.. = 18446744073709551616 (2^64),
        // c3 49 01 00.. = -18446744073709551617.
        let mut pos = vec![0xc2, 0x49, 0x01];
        pos.extend([0; 8]);
        assert_eq!(
            to_raw_json(&Value::from_cbor(pos.clone()).unwrap())
                .unwrap()
                .get(),
            "18446744073709551616"
        );
        pos[0] = 0xc3;
        assert_eq!(
            to_raw_json(&Value::from_cbor(pos).unwrap()).unwrap().get(),
            "-18446744073709551617"
        );
        // A bignum of 17 significant bytes is more than JSON answers carry.
        let mut huge = vec![0xc2, 0x51, 0x01];
        huge.extend([0; 16]);
        let error = to_raw_json(&Value::from_cbor(huge).unwrap()).unwrap_err();
        assert!(error.contains("129 bits"), "{error}");
        // The hook tools' JSON values stop at 64 bits, loudly.
        let beyond = to_cbor(Some(&raw("1180591620717411303424"))).unwrap();
        assert!(to_json(&beyond).is_err());
    }

    #[test]
    fn exact_json_pretty_prints_big_integers() {
        let text =
            serde_json::to_string_pretty(&ExactJson(&raw(r#"{"n": 1180591620717411303424}"#)))
                .unwrap();
        assert_eq!(text, "{\n  \"n\": 1180591620717411303424\n}");
    }
}
