//! JSON ⇄ CBOR for the API: call arguments arrive as JSON and travel as
//! CBOR; results travel as CBOR and leave as JSON.
//!
//! CBOR can say things JSON cannot; this module decides how each shows:
//! byte strings become arrays of numbers (what `serde_json` does with
//! bytes), non-text map keys their JSON text, NaN and infinities `null`,
//! tags their content. It must never fail on a well-formed value.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value as Json};
use steward_protocol::Value;

/// The JSON form of a CBOR value (see the module docs for the mapping).
pub(crate) fn to_json(value: &Value) -> Result<Json, String> {
    value
        .decode::<AnyJson>()
        .map(|any| any.0)
        .map_err(|error| format!("the runtime's answer cannot be shown as JSON: {error}"))
}

/// The CBOR form of a JSON value.
pub(crate) fn from_json(json: &Json) -> Result<Value, String> {
    Value::encode(json).map_err(|error| format!("cannot encode the arguments: {error}"))
}

/// A `serde_json::Value` that accepts everything CBOR can carry.
struct AnyJson(Json);

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor).map(AnyJson)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any CBOR value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Json, E> {
        // Beyond 64 bits JSON numbers lose precision in most readers; a
        // string keeps every digit.
        Ok(Json::String(v.to_string()))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Json, E> {
        Ok(Json::Array(
            v.iter().map(|b| Json::Number((*b).into())).collect(),
        ))
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(AnyJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = Map::new();
        while let Some((AnyJson(key), AnyJson(value))) = map.next_entry()? {
            let key = match key {
                Json::String(text) => text,
                other => other.to_string(),
            };
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Json, A::Error> {
        Err(de::Error::custom("enums are not CBOR"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_cbor() {
        let original = json!({"a": [1, -2, 3.5, "x", null, true], "b": {"c": {}}});
        let cbor = from_json(&original).unwrap();
        assert_eq!(to_json(&cbor).unwrap(), original);
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
    }

    #[test]
    fn non_text_keys_show_as_their_json_text() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(7u32, "seven");
        let cbor = Value::encode(&map).unwrap();
        assert_eq!(to_json(&cbor).unwrap(), json!({"7": "seven"}));
    }

    #[test]
    fn non_finite_floats_show_as_null() {
        let cbor = Value::encode(&f64::NAN).unwrap();
        assert_eq!(to_json(&cbor).unwrap(), Json::Null);
    }
}
