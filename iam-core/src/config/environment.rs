//! The process environment as envy reads it, without envy's panic on a variable that is not
//! UTF-8 (`envy::from_env` reads `std::env::vars`, which panics on one).

use std::ffi::OsString;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// The variables whose name and value are UTF-8, and the names of those whose value is
/// not. A name that is not UTF-8 cannot be one envy reads, so it is left out of both.
pub fn read_environment(
    variables: impl IntoIterator<Item = (OsString, OsString)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut readable = Vec::new();
    let mut unreadable = Vec::new();
    for (name, value) in variables {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => readable.push((name, value)),
            Err(_) => unreadable.push(name),
        }
    }
    (readable, unreadable)
}

/// The one-line error for the unreadable variables that `T` reads (envy matches names to
/// `T`'s fields case-insensitively), or `None` when none of them is: a variable a process
/// does not read never stops it.
pub fn unreadable_variables_read<T: DeserializeOwned>(unreadable: &[String]) -> Option<String> {
    let fields = field_names::<T>();
    let problems: Vec<String> = unreadable
        .iter()
        .filter(|name| fields.contains(&name.to_ascii_lowercase().as_str()))
        .map(|name| format!("{name} is invalid: not valid UTF-8"))
        .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The field names of a struct that derives `Deserialize`: serde's derive hands them to
/// `deserialize_struct`, where this deserializer takes them and stops.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The error is the point: nothing is deserialised.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only a struct's field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("only a struct's field names are read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt as _;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)] // only its field names are used
    struct Own {
        upstream_url: String,
        port: u16,
    }

    fn os(text: &str) -> OsString {
        OsString::from(text)
    }

    #[test]
    fn splits_readable_variables_from_values_that_are_not_utf8() {
        let (readable, unreadable) = read_environment([
            (os("PORT"), os("8080")),
            (
                os("UPSTREAM_URL"),
                OsString::from_vec(b"http://a\xff".to_vec()),
            ),
            (OsString::from_vec(b"N\xffME".to_vec()), os("value")),
        ]);
        assert_eq!(readable, [("PORT".to_owned(), "8080".to_owned())]);
        assert_eq!(unreadable, ["UPSTREAM_URL"]);
    }

    #[test]
    fn names_only_the_unreadable_variables_the_struct_reads() {
        assert_eq!(field_names::<Own>(), ["upstream_url", "port"]);
        assert_eq!(
            unreadable_variables_read::<Own>(&["UPSTREAM_URL".into(), "HOME_DIR".into()]),
            Some("UPSTREAM_URL is invalid: not valid UTF-8".to_owned())
        );
        // envy matches names case-insensitively, so `Port` is read as PORT is.
        assert_eq!(
            unreadable_variables_read::<Own>(&["UPSTREAM_URL".into(), "Port".into()]),
            Some(
                "UPSTREAM_URL is invalid: not valid UTF-8; Port is invalid: not valid UTF-8"
                    .to_owned()
            )
        );
        assert_eq!(unreadable_variables_read::<Own>(&["LANG".into()]), None);
        assert_eq!(unreadable_variables_read::<Own>(&[]), None);
    }
}
