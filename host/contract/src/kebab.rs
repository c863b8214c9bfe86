//! Kebab-case JSON for the WIT's types, as the WIT names them.
//!
//! The types `bindgen!` generates derive serde with Rust's names: fields in
//! `snake_case` (`tenant_id`), enum cases in `PascalCase` (`Critical`,
//! `WorkItem`). What a user reads or writes (`plugin run --json`, `plugin
//! inspect --json`, device fixtures, `fleet generate`) speaks the WIT's
//! names instead, in kebab-case like the API and the audit (`tenant-id`,
//! `critical`, `work-item`):
//!
//! - [`to_value`] serialises any `Serialize` type with every struct field
//!   and enum case renamed to kebab-case (map keys are data and are kept);
//! - [`from_value`] deserialises with struct fields and enum cases matched
//!   whatever their case (`tenant-id`, `tenant_id`; `failing`, `Failing`),
//!   so a fixture written for an earlier release still loads. Unknown
//!   fields stay errors that name the field as written.
//!
//! Internal wire formats (the agent protocol, stored state) keep serde's
//! derived names; only the user's side goes through here.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};
use serde::ser::{self, Serialize, Serializer};
use serde_json::{Error, Value};

/// `value` as JSON with kebab-case field and case names.
///
/// # Example
///
/// ```
/// #[derive(serde::Serialize)]
/// enum Severity { Critical }
/// #[derive(serde::Serialize)]
/// struct Finding { finding_id: String, severity: Severity }
///
/// let v = steward_contract::kebab::to_value(&Finding { finding_id: "x".into(), severity: Severity::Critical }).unwrap();
/// assert_eq!(v, serde_json::json!({ "finding-id": "x", "severity": "critical" }));
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, Error> {
    Kebab(value).serialize(serde_json::value::Serializer)
}

/// Deserialises `value`, matching struct fields and enum cases in any of
/// kebab-case, `snake_case` and `PascalCase`.
///
/// # Example
///
/// ```
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// enum Health { Ok, Failing }
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// #[serde(deny_unknown_fields)]
/// struct Disk { size_bytes: u64, health: Health }
///
/// let kebab = serde_json::json!({ "size-bytes": 1, "health": "failing" });
/// let rust = serde_json::json!({ "size_bytes": 1, "health": "Failing" });
/// let want = Disk { size_bytes: 1, health: Health::Failing };
/// assert_eq!(steward_contract::kebab::from_value::<Disk>(kebab).unwrap(), want);
/// assert_eq!(steward_contract::kebab::from_value::<Disk>(rust).unwrap(), want);
/// assert!(steward_contract::kebab::from_value::<Disk>(serde_json::json!({ "size": 1 })).is_err());
/// ```
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    T::deserialize(Guided(value))
}

/// `snake_case` or `PascalCase` to kebab-case, once per name.
fn kebab(name: &'static str) -> &'static str {
    if !name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        return name;
    }
    static NAMES: OnceLock<Mutex<HashMap<&'static str, &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // The names are the types' own (a fixed set), so interning them leaks
    // a bounded amount once.
    names.entry(name).or_insert_with(|| {
        let mut out = String::with_capacity(name.len() + 4);
        for c in name.chars() {
            if c == '_' {
                out.push('-');
            } else if c.is_ascii_uppercase() {
                if !out.is_empty() && !out.ends_with('-') {
                    out.push('-');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        Box::leak(out.into_boxed_str())
    })
}

/// A name with case and separators dropped: what two spellings of one
/// name share.
fn folded(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The expected name `written` spells, or `written` itself.
fn pick(expected: &'static [&'static str], written: String) -> String {
    if expected.contains(&written.as_str()) {
        return written;
    }
    let key = folded(&written);
    expected
        .iter()
        .find(|e| folded(e) == key)
        .map_or(written, |e| (*e).to_owned())
}

// ---- serialising ----

struct Kebab<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Kebab<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(KebabSer(s))
    }
}

struct KebabSer<S>(S);

/// A compound serialiser whose elements go through [`Kebab`].
struct Each<C>(C);

macro_rules! forward_ser {
    ($($method:ident($t:ty)),* $(,)?) => {
        $(fn $method(self, v: $t) -> Result<S::Ok, S::Error> { self.0.$method(v) })*
    };
}

impl<S: Serializer> Serializer for KebabSer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Each<S::SerializeSeq>;
    type SerializeTuple = Each<S::SerializeTuple>;
    type SerializeTupleStruct = Each<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Each<S::SerializeTupleVariant>;
    type SerializeMap = Each<S::SerializeMap>;
    type SerializeStruct = Each<S::SerializeStruct>;
    type SerializeStructVariant = Each<S::SerializeStructVariant>;

    forward_ser!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Kebab(v))
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, kebab(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Kebab(v))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, kebab(variant), &Kebab(v))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Each)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Each)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Each)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, kebab(variant), len)
            .map(Each)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Each)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Each)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, kebab(variant), len)
            .map(Each)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

impl<C: ser::SerializeSeq> ser::SerializeSeq for Each<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_element(&Kebab(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeTuple> ser::SerializeTuple for Each<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_element(&Kebab(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeTupleStruct> ser::SerializeTupleStruct for Each<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_field(&Kebab(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeTupleVariant> ser::SerializeTupleVariant for Each<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_field(&Kebab(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeMap> ser::SerializeMap for Each<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), C::Error> {
        self.0.serialize_key(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Kebab(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeStruct> ser::SerializeStruct for Each<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(kebab(key), &Kebab(v))
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.0.skip_field(kebab(key))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: ser::SerializeStructVariant> ser::SerializeStructVariant for Each<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(kebab(key), &Kebab(v))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

// ---- deserialising ----

/// A JSON value deserialised with field and case names matched loosely.
struct Guided(Value);

macro_rules! forward_de {
    ($($method:ident),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> { self.0.$method(v) })*
    };
}

impl<'de> Deserializer<'de> for Guided {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => v.visit_seq(Seq(items.into_iter())),
            Value::Object(map) => v.visit_map(Map {
                entries: map.into_iter(),
                value: None,
                fields: None,
            }),
            other => other.deserialize_any(v),
        }
    }

    forward_de!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => v.visit_none(),
            other => v.visit_some(Guided(other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_unit_struct(name, v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_any(v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => v.visit_map(Map {
                entries: map.into_iter(),
                value: None,
                fields: Some(fields),
            }),
            other => other.deserialize_struct(name, fields, v),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(case) => v.visit_enum(Enum {
                case: pick(variants, case),
                payload: None,
            }),
            Value::Object(map) if map.len() == 1 => {
                let (case, payload) = map.into_iter().next().expect("one entry");
                v.visit_enum(Enum {
                    case: pick(variants, case),
                    payload: Some(payload),
                })
            }
            other => other.deserialize_enum(name, variants, v),
        }
    }
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Guided(v)))
            .transpose()
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
    /// A struct's field names; `None` for a map, whose keys are data.
    fields: Option<&'static [&'static str]>,
}

impl<'de> MapAccess<'de> for Map {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        let key = match self.fields {
            Some(fields) => pick(fields, key),
            None => key,
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(Guided(value))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Enum {
    case: String,
    payload: Option<Value>,
}

impl<'de> EnumAccess<'de> for Enum {
    type Error = Error;
    type Variant = Payload;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Payload), Error> {
        let case = seed.deserialize(self.case.into_deserializer())?;
        Ok((case, Payload(self.payload)))
    }
}

struct Payload(Option<Value>);

impl<'de> VariantAccess<'de> for Payload {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            None | Some(Value::Null) => Ok(()),
            Some(_) => Err(de::Error::custom("this case carries no value")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(Guided(self.0.unwrap_or(Value::Null)))
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        Guided(self.0.unwrap_or(Value::Null)).deserialize_any(v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        Guided(self.0.unwrap_or(Value::Null)).deserialize_struct("", fields, v)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        WorkItem,
        Incident,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Problem {
        InvalidArgument(String),
        Other { at_line: u32 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ticket {
        kind: Kind,
        device_id: Option<String>,
        problems: Vec<Problem>,
        counts: std::collections::BTreeMap<String, u32>,
    }

    fn ticket() -> Ticket {
        Ticket {
            kind: Kind::WorkItem,
            device_id: Some("ws-1".into()),
            problems: vec![
                Problem::InvalidArgument("x".into()),
                Problem::Other { at_line: 3 },
            ],
            counts: [("snake_key".to_owned(), 1)].into(),
        }
    }

    #[test]
    fn every_field_and_case_is_kebab_and_map_keys_are_kept() {
        let v = to_value(&ticket()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "kind": "work-item",
                "device-id": "ws-1",
                "problems": [{ "invalid-argument": "x" }, { "other": { "at-line": 3 } }],
                "counts": { "snake_key": 1 },
            })
        );
        assert_eq!(from_value::<Ticket>(v).unwrap(), ticket());
    }

    #[test]
    fn serde_s_own_names_still_load_and_unknown_fields_are_named() {
        let rust = serde_json::to_value(ticket()).unwrap();
        assert_eq!(from_value::<Ticket>(rust).unwrap(), ticket());
        let err = from_value::<Ticket>(serde_json::json!({
            "kind": "incident", "device-id": null, "problems": [], "counts": {}, "colour": 1
        }))
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = from_value::<Kind>(serde_json::json!("weekly")).unwrap_err();
        assert!(err.to_string().contains("weekly"), "{err}");
    }
}
