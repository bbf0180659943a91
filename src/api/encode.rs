//! Response bodies as JSON text, or as JSON text already escaped for a JSON string.
//!
//! A function URL response carries the body as a JSON *string* inside the envelope
//! (`{"statusCode": .., "body": "{\"user_id\":..}"}`). Escaping a finished body means a
//! second pass over every byte, and bodies are dense in quotes (a 100-flag batch is
//! ~15 KB with a quote every ~7 bytes): that pass cost about a third of the whole
//! invocation (benches/handler.rs). [`InString`] makes serde_json write the escaped form
//! directly, at the cost of ordinary serialisation.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

use super::{ApiError, Response};

/// How a response body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyEncoding {
    /// JSON text.
    #[default]
    Json,
    /// JSON text escaped as the contents of a JSON string (no surrounding quotes), for a
    /// transport that embeds the body in a JSON envelope.
    JsonInString,
}

/// `value` as JSON text in the given encoding.
pub fn encode_body(value: &impl Serialize, encoding: BodyEncoding) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    match encoding {
        BodyEncoding::Json => serde_json::to_writer(&mut out, value)?,
        BodyEncoding::JsonInString => {
            value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, InString))?
        }
    }
    Ok(out)
}

/// Appends `text` (JSON text as serde_json writes it: no raw control characters) as the
/// contents of a JSON string: only `"` and `\` need a backslash. False, with `out` in an
/// unspecified state, if `text` has a control character (it is not such text).
pub fn escape_json_text(out: &mut Vec<u8>, text: &[u8]) -> bool {
    out.reserve(text.len() + text.len() / 4);
    let mut plain = true;
    for &byte in text {
        plain &= byte >= 0x20;
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    plain
}

/// Bytes a JSON string holds as they are (serde_json escapes exactly the others).
const PLAIN: [bool; 256] = {
    let mut plain = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        plain[b] = false;
        b += 1;
    }
    plain[b'"' as usize] = false;
    plain[b'\\' as usize] = false;
    plain
};

/// Whether `text` needs no escaping in a JSON string. Eight bytes at a time (most
/// strings here are ids and keys of 8–40 bytes): a word has a byte to escape iff it has a
/// `"` or `\\` byte (a zero byte after XOR) or one below 0x20 — the classic exact
/// "has zero byte" / "has byte less than" word tests.
fn is_plain(text: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        if control || has_zero(w ^ (ONES * u64::from(b'"'))) || has_zero(w ^ (ONES * u64::from(b'\\'))) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| PLAIN[usize::from(b)])
}

/// `field!(writer, "name")` writes `"name":`; `field!(writer, , "name")` writes `,"name":`
/// — in the writer's encoding, from text built at compile time.
macro_rules! field {
    ($w:expr, $name:literal) => {
        $w.field_text(concat!("\"", $name, "\":"), concat!("\\\"", $name, "\\\":"))
    };
    ($w:expr, , $name:literal) => {
        $w.field_text(concat!(",\"", $name, "\":"), concat!(",\\\"", $name, "\\\":"))
    };
}
pub(crate) use field;

/// A JSON writer for the hot response shapes (a 100-flag batch is 700 short strings):
/// serde_json spends most of such a body in per-string machinery, while here a string
/// that needs no escaping (nearly all of them: keys, ids, reasons) is one bounds check
/// per byte and one copy. Anything else — a string that needs escaping, a JSON value —
/// goes through serde_json with the same encoding, so the text is byte for byte what
/// [`encode_body`] would write.
pub(crate) struct Writer<'o> {
    out: &'o mut Vec<u8>,
    encoding: BodyEncoding,
}

impl<'o> Writer<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>, encoding: BodyEncoding) -> Self {
        Writer { out, encoding }
    }

    /// A string delimiter: `"`, or `\"` inside a JSON string. (Fixed-size copies, so no
    /// call into memcpy for a byte or two.)
    #[inline]
    fn quote(&mut self) {
        match self.encoding {
            BodyEncoding::Json => self.out.push(b'"'),
            BodyEncoding::JsonInString => self.out.extend_from_slice(b"\\\""),
        }
    }

    /// JSON punctuation or a literal (`{`, `,`, `null`, `true`...): no quotes, no backslashes.
    #[inline]
    pub(crate) fn raw(&mut self, text: &str) {
        debug_assert!(!text.contains(['"', '\\']), "raw JSON text with a quote: {text}");
        self.out.extend_from_slice(text.as_bytes());
    }

    /// A field name with its colon (and comma), given in both encodings by [`field!`]
    /// as constants: a few fixed-size stores each.
    #[inline]
    pub(crate) fn field_text(&mut self, json: &'static str, in_string: &'static str) {
        let text = match self.encoding {
            BodyEncoding::Json => json,
            BodyEncoding::JsonInString => in_string,
        };
        self.out.extend_from_slice(text.as_bytes());
    }

    /// A JSON string.
    pub(crate) fn string(&mut self, text: &str) {
        if is_plain(text.as_bytes()) {
            self.out.reserve(text.len() + 4);
            self.quote();
            self.out.extend_from_slice(text.as_bytes());
            self.quote();
        } else {
            // Writing a str into a Vec cannot fail.
            let _ = self.serde(text);
        }
    }

    /// A string, or `null`.
    pub(crate) fn optional_string(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.string(text),
            None => self.raw("null"),
        }
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&mut self, value: bool) {
        self.raw(if value { "true" } else { "false" });
    }

    /// An unsigned integer, or `null`.
    pub(crate) fn optional_number(&mut self, value: Option<u64>) {
        let Some(mut n) = value else {
            return self.raw("null");
        };
        // Digits right to left into a stack buffer (u64::MAX has 20).
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[at..]);
    }

    /// Any value, through serde_json.
    pub(crate) fn serde(&mut self, value: &(impl Serialize + ?Sized)) -> serde_json::Result<()> {
        match self.encoding {
            BodyEncoding::Json => value.serialize(&mut serde_json::Serializer::new(&mut *self.out)),
            BodyEncoding::JsonInString => {
                value.serialize(&mut serde_json::Serializer::with_formatter(&mut *self.out, InString))
            }
        }
    }
}

/// A compact formatter whose output is the compact JSON text escaped once more. In JSON
/// text outside strings there is nothing to escape (punctuation, numbers, literals);
/// string delimiters become `\"`; serde_json's escapes inside strings (`\"`, `\\`, `\n`,
/// `\u0001`, ...) get their backslash (and quote) escaped; string fragments between
/// escapes contain neither `"` nor `\` nor control characters and pass through.
struct InString;

impl Formatter for InString {
    fn begin_string<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"\\\"")
    }

    fn end_string<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"\\\"")
    }

    fn write_char_escape<W: ?Sized + Write>(&mut self, writer: &mut W, char_escape: CharEscape) -> io::Result<()> {
        // serde_json's own escape (at most 6 bytes: `\u001f`), then escaped again.
        let mut plain = [0u8; 8];
        let mut cursor = io::Cursor::new(&mut plain[..]);
        CompactFormatter.write_char_escape(&mut cursor, char_escape)?;
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        let mut escaped = Vec::with_capacity(2 * len);
        escape_json_text(&mut escaped, &plain[..len]);
        writer.write_all(&escaped)
    }

    fn write_raw_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut escaped = Vec::with_capacity(fragment.len() + 16);
        if !escape_json_text(&mut escaped, fragment.as_bytes()) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "raw JSON fragment with a control character"));
        }
        writer.write_all(&escaped)
    }
}

/// A 200 response whose body (of about `size` bytes) `write` writes in `encoding`.
pub(super) fn written(
    encoding: BodyEncoding,
    size: usize,
    write: impl FnOnce(&mut Writer<'_>) -> serde_json::Result<()>,
) -> Response {
    let mut body = Vec::with_capacity(size);
    match write(&mut Writer::new(&mut body, encoding)) {
        Ok(()) => Response { encoding, ..Response::json(200, body) },
        Err(error) => ApiError::Unavailable(format!("response could not be encoded: {error}")).native(),
    }
}

/// A response of `status` whose body is `body` serialized in `encoding`.
pub(super) fn json(encoding: BodyEncoding, status: u16, body: &impl Serialize) -> Response {
    match encode_body(body, encoding) {
        Ok(bytes) => Response { encoding, ..Response::json(status, bytes) },
        Err(error) => ApiError::Unavailable(format!("response could not be encoded: {error}")).native(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    /// What the envelope needs: the value's JSON text, as a JSON string, without quotes.
    fn expected(value: &Value) -> String {
        let text = serde_json::to_string(value).expect("JSON text");
        let quoted = serde_json::to_string(&text).expect("JSON string");
        quoted[1..quoted.len() - 1].to_owned()
    }

    fn in_string(value: &Value) -> String {
        String::from_utf8(encode_body(value, BodyEncoding::JsonInString).expect("encodes")).expect("UTF-8")
    }

    #[test]
    fn every_escape_is_escaped_once_more() {
        let value = json!({
            "quote \" key": "a \"quoted\" value",
            "backslash": "C:\\path\\",
            "controls": "\n\r\t\u{8}\u{c}\u{1}\u{1f}/",
            "unicode": "é✓ 😀",
            "nested": [1, -2.5, 1e300, true, false, null, {"k": ["\"", "\\"]}],
            "": ""
        });
        assert_eq!(in_string(&value), expected(&value));
    }

    #[test]
    fn raw_fragments_are_escaped_too() {
        #[derive(Serialize)]
        struct Holder {
            raw: Box<serde_json::value::RawValue>,
        }
        let raw = serde_json::value::RawValue::from_string(r#"{"a": "b\"c"}"#.to_owned()).expect("raw JSON");
        let out = encode_body(&Holder { raw }, BodyEncoding::JsonInString).expect("encodes");
        assert_eq!(String::from_utf8(out).expect("UTF-8"), r#"{\"raw\":{\"a\": \"b\\\"c\"}}"#);
    }

    #[test]
    fn escaping_text_matches_serde_and_rejects_control_characters() {
        for text in [r#"{"a":"b \"q\" c\\d","n":1,"u":"é✓"}"#, "", r#"""#, r#"\"#, "plain"] {
            let mut out = Vec::new();
            assert!(escape_json_text(&mut out, text.as_bytes()));
            let quoted = serde_json::to_string(text).expect("JSON string");
            assert_eq!(String::from_utf8(out).expect("UTF-8"), quoted[1..quoted.len() - 1], "{text}");
        }
        assert!(!escape_json_text(&mut Vec::new(), b"{\x01}"));
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The writer's output for a string, a number and a value, in `encoding`.
    fn written(encoding: BodyEncoding, text: &str, value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, encoding);
        w.raw("[");
        w.string(text);
        w.raw(",");
        w.optional_string(None);
        w.raw(",");
        w.optional_number(Some(u64::MAX));
        w.raw(",");
        w.boolean(true);
        w.raw(",");
        w.serde(value).expect("writes");
        w.raw(",{");
        field!(w, "k");
        w.optional_number(None);
        field!(w, , "l");
        w.boolean(false);
        w.raw("}]");
        out
    }

    proptest! {
        #[test]
        fn any_document_encodes_as_its_json_string(value in arbitrary_json()) {
            prop_assert_eq!(in_string(&value), expected(&value));
        }

        #[test]
        fn the_writer_writes_what_serde_would(text in any::<String>(), value in arbitrary_json()) {
            let same = json!([text, null, u64::MAX, true, value, {"k": null, "l": false}]);
            prop_assert_eq!(written(BodyEncoding::Json, &text, &value), serde_json::to_vec(&same).expect("JSON"));
            let escaped = String::from_utf8(written(BodyEncoding::JsonInString, &text, &value)).expect("UTF-8");
            prop_assert_eq!(escaped, expected(&same));
        }
    }

    proptest! {
        #[test]
        fn is_plain_agrees_with_the_byte_table(text in prop::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(is_plain(&text), text.iter().all(|&b| PLAIN[usize::from(b)]));
        }
    }

    #[test]
    fn is_plain_finds_a_special_byte_at_every_position() {
        for len in 1..=24 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut text = vec![b'a'; len];
                    text[at] = special;
                    assert!(!is_plain(&text), "{len} {at} {special}");
                }
                let mut text = vec![b'a'; len];
                text[at] = 0xc3; // non-ASCII bytes need no escaping
                assert!(is_plain(&text));
            }
        }
    }

    #[test]
    fn the_writer_escapes_strings_that_need_it() {
        for text in ["plain", "", "q\"uote", "back\\slash", "new\nline", "\u{1}", "é✓"] {
            let value = json!([text, null, u64::MAX, true, 1, {"k": null, "l": false}]);
            assert_eq!(written(BodyEncoding::Json, text, &json!(1)), serde_json::to_vec(&value).expect("JSON"));
            let escaped = String::from_utf8(written(BodyEncoding::JsonInString, text, &json!(1))).expect("UTF-8");
            assert_eq!(escaped, expected(&value), "{text:?}");
        }
    }
}
