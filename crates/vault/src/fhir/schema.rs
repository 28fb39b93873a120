//! FHIR R4's types as the validator reads them: `r4.json`, made from HL7's R4 (4.0.1)
//! JSON schema and StructureDefinitions by `crates/vault/fhir/generate.py`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

/// The R4 table, parsed once.
pub static R4: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse(include_str!("r4.json")).expect("the embedded FHIR R4 table parses")
});

/// How a primitive is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Json {
    String,
    Number,
    Boolean,
}

#[derive(Debug)]
pub struct Primitive {
    pub json: Json,
    pub pattern: Option<Regex>,
}

/// What an element holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Primitive(String),
    Complex(String),
    /// Any resource (`contained`, `Bundle.entry.resource`).
    Resource,
    /// A code from a required binding.
    Codes(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Element {
    pub kind: Kind,
    pub repeats: bool,
}

#[derive(Debug)]
pub struct TypeDef {
    pub elements: HashMap<String, Element>,
    /// Required element names; `value[x]` for a choice.
    pub required: Vec<String>,
    /// Choice groups: `value` -> `valueQuantity`, `valueString`, ...
    pub choices: HashMap<String, Vec<String>>,
    pub resource: bool,
}

#[derive(Debug)]
pub struct Schema {
    pub primitives: HashMap<String, Primitive>,
    pub types: HashMap<String, TypeDef>,
}

#[derive(Deserialize)]
struct RawPrimitive {
    json: String,
    pattern: Option<String>,
}

#[derive(Deserialize)]
struct RawType {
    elements: HashMap<String, String>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    choices: HashMap<String, Vec<String>>,
    #[serde(default)]
    resource: bool,
}

#[derive(Deserialize)]
struct Raw {
    primitives: HashMap<String, RawPrimitive>,
    types: HashMap<String, RawType>,
}

impl Schema {
    fn parse(text: &str) -> Result<Schema, String> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut primitives = HashMap::new();
        for (name, p) in raw.primitives {
            let json = match p.json.as_str() {
                "number" => Json::Number,
                "boolean" => Json::Boolean,
                _ => Json::String,
            };
            let pattern = match p.pattern {
                // Booleans and numbers are checked as JSON values; their patterns are
                // for their text in XML.
                Some(p) if json == Json::String => {
                    Some(Regex::new(&p).map_err(|e| format!("{name}: {e}"))?)
                }
                _ => None,
            };
            primitives.insert(name, Primitive { json, pattern });
        }
        let mut types = HashMap::new();
        for (name, t) in raw.types {
            let mut elements = HashMap::new();
            for (el, spec) in t.elements {
                let (spec, repeats) = match spec.strip_suffix("[]") {
                    Some(s) => (s, true),
                    None => (spec.as_str(), false),
                };
                let kind = if let Some(codes) = spec.strip_prefix('=') {
                    Kind::Codes(codes.split('|').map(str::to_string).collect())
                } else if spec == "Resource" {
                    Kind::Resource
                } else if primitives.contains_key(spec) {
                    Kind::Primitive(spec.to_string())
                } else {
                    Kind::Complex(spec.to_string())
                };
                elements.insert(el, Element { kind, repeats });
            }
            types.insert(
                name,
                TypeDef {
                    elements,
                    required: t.required,
                    choices: t.choices,
                    resource: t.resource,
                },
            );
        }
        Ok(Schema { primitives, types })
    }

    /// The definition of a resource type, if `name` is one.
    pub fn resource(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name).filter(|t| t.resource)
    }

    /// Every resource type's name.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.types
            .iter()
            .filter(|(_, t)| t.resource)
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_r4() {
        let s = &*R4;
        assert_eq!(s.resource_types().count(), 146);
        let obs = s.resource("Observation").unwrap();
        assert_eq!(obs.required, vec!["status", "code"]);
        assert!(obs.choices["value"].contains(&"valueQuantity".to_string()));
        assert!(
            matches!(obs.elements["status"].kind, Kind::Codes(ref c) if c.contains(&"final".to_string()))
        );
        assert!(obs.elements["category"].repeats);
        assert!(s.resource("Observation_Component").is_none());
        assert!(
            s.primitives["dateTime"]
                .pattern
                .as_ref()
                .unwrap()
                .is_match("2024-01-02")
        );
        assert!(
            !s.primitives["dateTime"]
                .pattern
                .as_ref()
                .unwrap()
                .is_match("2024-13-02")
        );
    }
}
