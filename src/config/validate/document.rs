//! The TOML document -> [`RawConfig`], collecting every key serde refuses (unknown,
//! of the wrong type, missing) instead of stopping at the first: each refused entry is
//! reported, set aside, and the rest is read again. The file is still refused, but one
//! misspelled key no longer hides the other problems, and the semantic checks still run
//! on what is left.

use std::collections::BTreeMap;

use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::Ctx;
use crate::config::raw::RawConfig;

/// Far more than any real file has; bounds the work on a pathological one.
const MAX_REFUSED_ENTRIES: usize = 200;

/// Keys whose value is a duration string (`"30s"`); a number there gets a message that
/// says so instead of serde's "expected a string".
const DURATION_KEYS: &[&str] = &[
    "upstream_timeout",
    "shutdown_timeout",
    "header_read_timeout",
    "idle_timeout",
    "leeway",
    "refresh_interval",
    "refresh_cooldown",
    "fetch_timeout",
    "max_stale",
    "max_age",
];

/// Serde's names for the inside of `toml::Spanned`; never shown to an operator.
const PRIVATE_PREFIX: &str = "$__";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Elements set aside from top-level arrays (`routes`, `providers`), by array name, in
/// their original numbering: later problems are renumbered to match the file.
#[derive(Debug, Default)]
pub(super) struct Removed(BTreeMap<String, Vec<usize>>);

impl Removed {
    /// The file's index of what is now element `index` of `array`.
    fn original(&self, array: &str, index: usize) -> usize {
        let Some(gone) = self.0.get(array) else {
            return index;
        };
        (0..)
            .filter(|i| !gone.contains(i))
            .nth(index)
            .unwrap_or(index)
    }

    fn record(&mut self, array: &str, current: usize) {
        let original = self.original(array, current);
        let gone = self.0.entry(array.to_owned()).or_default();
        gone.push(original);
        gone.sort_unstable();
    }

    /// Rewrites a key such as `routes[1].prefix` to the file's numbering.
    pub(super) fn renumber(&self, key: &str) -> String {
        let Some((array, rest)) = key.split_once('[') else {
            return key.to_owned();
        };
        let Some((index, tail)) = rest.split_once(']') else {
            return key.to_owned();
        };
        match index.parse() {
            Ok(i) if self.0.contains_key(array) => {
                format!("{array}[{}]{tail}", self.original(array, i))
            }
            _ => key.to_owned(),
        }
    }
}

/// Reads the document, recording a problem for every refused entry. `None` only when
/// the text is not TOML at all.
pub(super) fn deserialize(ctx: &mut Ctx<'_>, removed: &mut Removed) -> Option<RawConfig> {
    let text = ctx.text;
    let mut doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            ctx.problem(e.span(), "", e.message().trim().to_owned());
            return None;
        }
    };
    let mut set_aside: Vec<String> = Vec::new();
    for _ in 0..MAX_REFUSED_ENTRIES {
        let de = toml::de::Deserializer::from(doc.clone());
        let e = match serde_path_to_error::deserialize::<_, RawConfig>(de) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let steps: Vec<Step> = e
            .path()
            .iter()
            .filter_map(|segment| match segment {
                Segment::Seq { index } => Some(Step::Index(*index)),
                Segment::Map { key } if !key.starts_with(PRIVATE_PREFIX) => {
                    Some(Step::Key(key.clone()))
                }
                Segment::Enum { variant } => Some(Step::Key(variant.clone())),
                _ => None,
            })
            .collect();
        let inner = e.into_inner();
        let key = removed.renumber(&display(&steps));
        // A key set aside for its type comes back as "missing field": said once is enough.
        let echo = inner
            .message()
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
            .is_some_and(|field| set_aside.contains(&format!("{key}.{field}")));
        if !echo {
            ctx.problem(inner.span(), key.clone(), message(&steps, inner.message()));
        }
        set_aside.push(key);
        if let [Step::Key(array), Step::Index(i)] = steps.as_slice() {
            removed.record(array, *i);
        }
        if steps.is_empty() || !remove(doc.get_mut(), &steps) {
            // Nothing left to set aside: report what was found.
            return None;
        }
    }
    None
}

/// `routes[0].prefix`, as the other problems name keys.
fn display(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Serde's message, with a duration given as a number explained and no internal names.
fn message(steps: &[Step], raw: &str) -> String {
    let raw = raw.trim();
    let is_duration =
        matches!(steps.last(), Some(Step::Key(k)) if DURATION_KEYS.contains(&k.as_str()));
    if is_duration
        && let Some((found, _)) = raw
            .strip_prefix("invalid type: ")
            .and_then(|rest| rest.split_once(", expected"))
    {
        return format!("expected a duration string such as \"30s\" or \"500ms\", found {found}");
    }
    let raw = toml_words(raw);
    if raw.contains(PRIVATE_PREFIX) {
        // Never expected with the shapes above, but never show the name either.
        return raw
            .split('`')
            .filter(|part| !part.starts_with(PRIVATE_PREFIX))
            .collect::<Vec<_>>()
            .join("`");
    }
    raw
}

/// Serde's names for what was expected, in the words of a TOML file: `struct RawServer`
/// is a table, a sequence an array, `usize` a whole number.
fn toml_words(raw: &str) -> String {
    let Some((head, expected)) = raw.split_once(", expected ") else {
        return raw.to_owned();
    };
    let plain = if expected.starts_with("struct ") || expected == "a map" {
        "a table"
    } else if expected == "a sequence" {
        "an array"
    } else if matches!(expected, "usize" | "u64" | "u32" | "u16" | "u8") {
        "a whole number"
    } else {
        expected
    };
    format!("{head}, expected {plain}")
}

/// Sets aside the entry at `steps`; false when the path does not lead anywhere.
fn remove(table: &mut DeTable<'_>, steps: &[Step]) -> bool {
    let Some((Step::Key(first), rest)) = steps.split_first() else {
        return false;
    };
    if rest.is_empty() {
        let key = table
            .keys()
            .find(|k| *k.get_ref() == first.as_str())
            .cloned();
        return key.is_some_and(|key| table.remove(&key).is_some());
    }
    let Some(value) = table
        .iter_mut()
        .find(|(k, _)| *k.get_ref() == first.as_str())
        .map(|(_, v)| v)
    else {
        return false;
    };
    remove_in(value, rest)
}

fn remove_in(value: &mut Spanned<DeValue<'_>>, steps: &[Step]) -> bool {
    match (value.get_mut(), steps) {
        (DeValue::Table(table), _) => remove(table, steps),
        (DeValue::Array(array), [Step::Index(i)]) if *i < array.len() => {
            let mut kept = DeArray::new();
            for (j, item) in array.iter().enumerate() {
                if j != *i {
                    kept.push(item.clone());
                }
            }
            *array = kept;
            true
        }
        (DeValue::Array(array), [Step::Index(i), rest @ ..]) => match array.get_mut(*i) {
            Some(item) => remove_in(item, rest),
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    fn problems(text: &str) -> Vec<(Option<usize>, String, String)> {
        match Config::from_toml(text, "f.toml", std::path::Path::new(".")) {
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| (p.line, p.key, p.message))
                .collect(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_required_key_of_the_wrong_type_is_reported_once() {
        let found = problems(
            "server = 3\n\n[[routes]]\nname = \"r\"\nprefix = 5\nupstream = \"http://127.0.0.1:1\"\n",
        );
        assert_eq!(
            found,
            vec![
                (
                    Some(1),
                    "server".to_owned(),
                    "invalid type: integer `3`, expected a table".to_owned()
                ),
                (
                    Some(5),
                    "routes[0].prefix".to_owned(),
                    "invalid type: integer `5`, expected a string".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn renumbering_follows_the_elements_set_aside() {
        let mut removed = Removed::default();
        removed.record("routes", 1); // file's routes[1]
        assert_eq!(removed.renumber("routes[0].name"), "routes[0].name");
        assert_eq!(removed.renumber("routes[1].prefix"), "routes[2].prefix");
        removed.record("routes", 1); // now the file's routes[2]
        assert_eq!(removed.renumber("routes[1].prefix"), "routes[3].prefix");
        assert_eq!(removed.renumber("providers[1].name"), "providers[1].name");
        assert_eq!(removed.renumber("server.listen"), "server.listen");
    }

    #[test]
    fn a_duration_given_as_a_number_asks_for_a_string() {
        let steps = [
            Step::Key("server".into()),
            Step::Key("upstream_timeout".into()),
        ];
        assert_eq!(
            message(&steps, "invalid type: integer `30`, expected a string"),
            "expected a duration string such as \"30s\" or \"500ms\", found integer `30`"
        );
        assert_eq!(display(&steps), "server.upstream_timeout");
    }

    #[test]
    fn expected_types_are_named_as_toml_names_them() {
        let steps = [Step::Key("server".into())];
        assert_eq!(
            message(
                &steps,
                "invalid type: integer `3`, expected struct RawServer"
            ),
            "invalid type: integer `3`, expected a table"
        );
        assert_eq!(
            message(&steps, "invalid type: string \"GET\", expected a sequence"),
            "invalid type: string \"GET\", expected an array"
        );
        assert_eq!(
            message(&steps, "invalid type: string \"x\", expected usize"),
            "invalid type: string \"x\", expected a whole number"
        );
    }
}
