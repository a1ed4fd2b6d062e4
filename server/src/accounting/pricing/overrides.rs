//! One entry of a LiteLLM-format table (the fields this relay reads), and the overrides file:
//! a small table in the same format merged field by field over whichever table is in force
//! (bundled, watched or downloaded), for prices LiteLLM lacks or has wrong.

use std::{collections::HashMap, path::Path};

use serde::{Deserialize, Deserializer};

/// The fields of an entry the relay reads. The newer ones are read leniently: a value of an
/// unexpected type in someone else's table leaves that field unset instead of dropping the
/// model.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Entry {
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub cache_creation_input_token_cost: Option<f64>,
    pub cache_creation_input_token_cost_above_1hr: Option<f64>,
    pub cache_read_input_token_cost: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub input_cost_per_token_above_200k_tokens: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub output_cost_per_token_above_200k_tokens: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub cache_creation_input_token_cost_above_200k_tokens: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub cache_creation_input_token_cost_above_1hr_above_200k_tokens: Option<f64>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub cache_read_input_token_cost_above_200k_tokens: Option<f64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub max_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub litellm_provider: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub mode: Option<String>,
    /// LiteLLM's family aliases (`claude-opus-latest` → `claude-opus-…`): priced as the target.
    #[serde(default, deserialize_with = "lenient_string")]
    pub alias_of: Option<String>,
}

/// The numeric fields, by their LiteLLM names (the overrides file is checked against these).
const NUMBERS: [&str; 13] = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_creation_input_token_cost",
    "cache_creation_input_token_cost_above_1hr",
    "cache_read_input_token_cost",
    "input_cost_per_token_above_200k_tokens",
    "output_cost_per_token_above_200k_tokens",
    "cache_creation_input_token_cost_above_200k_tokens",
    "cache_creation_input_token_cost_above_1hr_above_200k_tokens",
    "cache_read_input_token_cost_above_200k_tokens",
    "max_input_tokens",
    "max_output_tokens",
    "max_tokens",
];

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.as_f64())
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    }))
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

impl Entry {
    /// `over`'s fields replace this entry's, one by one; the others stay.
    pub fn merge(&mut self, over: &Entry) {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f.clone(); } )* };
        }
        take!(
            input_cost_per_token,
            output_cost_per_token,
            cache_creation_input_token_cost,
            cache_creation_input_token_cost_above_1hr,
            cache_read_input_token_cost,
            input_cost_per_token_above_200k_tokens,
            output_cost_per_token_above_200k_tokens,
            cache_creation_input_token_cost_above_200k_tokens,
            cache_creation_input_token_cost_above_1hr_above_200k_tokens,
            cache_read_input_token_cost_above_200k_tokens,
            max_input_tokens,
            max_output_tokens,
            max_tokens,
            litellm_provider,
            mode,
            alias_of
        );
    }

    pub fn is_priced(&self) -> bool {
        self.input_cost_per_token.is_some() && self.output_cost_per_token.is_some()
    }
}

/// The overrides in force, by model name.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub entries: HashMap<String, Entry>,
    /// The file they were read from, for the admin's pricing status.
    pub origin: Option<String>,
}

impl Overrides {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads `path`. `required`: a missing file is an error (it was named explicitly);
    /// otherwise a missing file means no overrides.
    pub fn load(path: &Path, required: bool) -> Result<Self, String> {
        let raw = match std::fs::read(path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Overrides::default())
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut o = Self::parse(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
        o.origin = Some(path.display().to_string());
        Ok(o)
    }

    /// Parses strictly: unlike a downloaded table, this file is the operator's own, so a typo
    /// must stop the start rather than leave a price silently unchanged.
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let table: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(raw).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut entries = HashMap::with_capacity(table.len());
        for (name, value) in table {
            let Some(fields) = value.as_object() else {
                return Err(format!("{name:?} is not an object"));
            };
            for (field, v) in fields {
                if NUMBERS.contains(&field.as_str()) {
                    if !v.as_f64().is_some_and(|f| f.is_finite() && f >= 0.0) {
                        return Err(format!("{name:?}: {field} must be a number of at least 0"));
                    }
                } else if field.contains("cost") {
                    return Err(format!(
                        "{name:?}: {field} is not a price this relay reads (see README, Prices)"
                    ));
                } else if matches!(field.as_str(), "alias_of" | "litellm_provider" | "mode")
                    && !v.is_string()
                {
                    return Err(format!("{name:?}: {field} must be a string"));
                }
            }
            let sets_a_number = fields.keys().any(|f| NUMBERS.contains(&f.as_str()));
            let entry: Entry =
                serde_json::from_value(value).map_err(|e| format!("{name:?}: {e}"))?;
            if !sets_a_number && entry.alias_of.is_none() {
                return Err(format!("{name:?} sets no price"));
            }
            entries.insert(name, entry);
        }
        Ok(Overrides {
            entries,
            origin: None,
        })
    }
}
