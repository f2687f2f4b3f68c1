//! Decoding record keys and values for people to read (the console's
//! message browser): Confluent's wire format (`0x00` + 4-byte schema id +
//! payload) is decoded through the registry into JSON (Avro with
//! `apache-avro`, JSON Schema as the JSON it is, Protobuf with
//! `prost-reflect`); other bytes are shown as JSON when they parse as JSON,
//! else as UTF-8 text, else as base64.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::registry::Registry;
use crate::schema::Parsed;

/// A key or value as the browser shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decoded {
    /// `avro`, `json_schema`, `protobuf` (decoded through the registry),
    /// `json`, `text`, `base64` or `null`.
    pub format: &'static str,
    /// The registry id of a wire-format payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u32>,
    /// The decoded value (a string for `text` and `base64`).
    pub value: Value,
    /// Why a wire-format payload could not be decoded (the value is then
    /// shown as base64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Size of the raw bytes.
    pub bytes: usize,
}

impl Decoded {
    fn null() -> Decoded {
        Decoded {
            format: "null",
            schema_id: None,
            value: Value::Null,
            error: None,
            bytes: 0,
        }
    }
}

/// The schema id of a Confluent wire-format payload.
pub fn wire_schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Bytes without a schema: JSON, text or base64.
pub fn decode_plain(bytes: &[u8]) -> Decoded {
    let (format, value) = if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        ("json", v)
    } else if let Some(s) = std::str::from_utf8(bytes).ok().filter(|s| {
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    }) {
        // Text without control characters (binary that happens to be
        // UTF-8 is shown as base64).
        ("text", Value::String(s.to_string()))
    } else {
        ("base64", Value::String(B64.encode(bytes)))
    };
    Decoded {
        format,
        schema_id: None,
        value,
        error: None,
        bytes: bytes.len(),
    }
}

/// Decodes a key or value; `None` is a null key or value.
pub fn decode(registry: &Registry, bytes: Option<&[u8]>) -> Decoded {
    let Some(bytes) = bytes else {
        return Decoded::null();
    };
    let Some(id) = wire_schema_id(bytes) else {
        return decode_plain(bytes);
    };
    let decoded = registry
        .parsed(id)
        .map_err(|e| e.to_string())
        .and_then(|p| payload_to_json(&p, &bytes[5..]));
    match decoded {
        Ok((format, value)) => Decoded {
            format,
            schema_id: Some(id),
            value,
            error: None,
            bytes: bytes.len(),
        },
        Err(e) => {
            // A leading zero byte may just be binary data.
            let mut d = decode_plain(bytes);
            d.error = Some(format!("schema id {id}: {e}"));
            d
        }
    }
}

/// A wire-format payload (after the 5-byte header) as JSON.
pub fn payload_to_json(p: &Parsed, payload: &[u8]) -> Result<(&'static str, Value), String> {
    match p {
        Parsed::Avro(s) => {
            // The allocation-free validator first: a bad length prefix must
            // not make the decoder reserve memory for it.
            s.plan
                .validate(payload)
                .map_err(|e| format!("not Avro of its schema: {e}"))?;
            let mut reader = payload;
            let v = apache_avro::reader::datum::GenericDatumReader::builder(&s.full)
                .build()
                .and_then(|r| r.read_value(&mut reader))
                .map_err(|e| format!("not Avro of its schema: {e}"))?;
            let json = Value::try_from(v).map_err(|e| e.to_string())?;
            Ok(("avro", json))
        }
        Parsed::Json(_) => serde_json::from_slice(payload)
            .map(|v| ("json_schema", v))
            .map_err(|e| format!("not JSON: {e}")),
        Parsed::Protobuf(s) => s.to_json(payload).map(|v| ("protobuf", v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SchemaType;
    use crate::registry::SchemaRequest;

    fn wire(id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn plain_bytes() {
        let r = Registry::in_memory().expect("registry");
        assert_eq!(decode(&r, None).format, "null");
        let j = decode(&r, Some(br#"{"a":1}"#));
        assert_eq!((j.format, j.value), ("json", serde_json::json!({"a": 1})));
        assert_eq!(decode(&r, Some(b"hello\n")).format, "text");
        assert_eq!(decode(&r, Some(&[b'a', 0, 1])).format, "base64");
        let b = decode(&r, Some(&[0xff, 0xfe]));
        assert_eq!(
            (b.format, b.value),
            ("base64", Value::String("//4=".into()))
        );
    }

    #[test]
    fn avro_and_json_schema_through_the_registry() {
        let r = Registry::in_memory().expect("registry");
        let avro = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"},{"name":"s","type":"string"}]}"#;
        let id = r
            .register(
                "t-value",
                &SchemaRequest::new(SchemaType::Avro, avro),
                false,
            )
            .expect("register")
            .id;
        // n = 3 (zigzag 6), s = "hi"
        let d = decode(&r, Some(&wire(id, &[6, 4, b'h', b'i'])));
        assert_eq!(d.format, "avro");
        assert_eq!(d.schema_id, Some(id));
        assert_eq!(d.value, serde_json::json!({"n": 3, "s": "hi"}));
        // Truncated Avro: shown raw, with the reason.
        let bad = decode(&r, Some(&wire(id, &[6])));
        assert!(bad.error.is_some());
        assert_eq!(bad.format, "base64");

        let js = r#"{"type":"object","properties":{"a":{"type":"integer"}}}"#;
        let jid = r
            .register("j-value", &SchemaRequest::new(SchemaType::Json, js), false)
            .expect("register")
            .id;
        let d = decode(&r, Some(&wire(jid, br#"{"a":5}"#)));
        assert_eq!(
            (d.format, d.value),
            ("json_schema", serde_json::json!({"a": 5}))
        );
        // Unknown id.
        assert!(decode(&r, Some(&wire(9999, b"x"))).error.is_some());
    }

    #[test]
    fn protobuf_through_the_registry() {
        let r = Registry::in_memory().expect("registry");
        let proto = "syntax = \"proto3\"; message M { string name = 1; int64 n = 2; repeated string tags = 3; }";
        let id = r
            .register(
                "p-value",
                &SchemaRequest::new(SchemaType::Protobuf, proto),
                false,
            )
            .expect("register")
            .id;
        // message index count 0 (first message), name="ab", n=7, tags=["x"]
        let payload = [0u8, 0x0a, 2, b'a', b'b', 0x10, 7, 0x1a, 1, b'x'];
        let d = decode(&r, Some(&wire(id, &payload)));
        assert_eq!(d.format, "protobuf", "{d:?}");
        assert_eq!(
            d.value,
            serde_json::json!({"name": "ab", "n": "7", "tags": ["x"]})
        );
    }
}
