//! Checks a resource (JSON) against FHIR R4: its type, every element's name and type,
//! the codes of required bindings, required elements, at most one form of a choice,
//! primitives' formats. Stops at the first bad element and names its path
//! (`Bundle.entry[3].resource.status`). Finds the references it holds on the way.
//!
//! Not checked: invariants (FHIRPath constraints), profiles, terminology beyond required
//! bindings.

use serde_json::{Map, Value};

use super::schema::{Element, Json, Kind, R4, TypeDef};

/// Deepest nesting of objects and arrays taken.
pub const MAX_DEPTH: usize = 64;

/// Where a resource breaks R4, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct Invalid {
    /// FHIRPath-like: `Observation.code.coding[0].system`.
    pub path: String,
    pub problem: String,
}

/// A `Reference.reference` found while checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The `Bundle.entry` it is in, when checking a bundle.
    pub entry: Option<usize>,
    pub path: String,
    /// JSON pointer to the string, for rewriting it.
    pub pointer: String,
    pub reference: String,
}

struct Walk {
    path: String,
    pointer: String,
    depth: usize,
    entry: Option<usize>,
    found: Vec<Found>,
}

impl Walk {
    fn invalid(&self, problem: impl Into<String>) -> Invalid {
        Invalid {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    fn enter(&mut self, name: &str) -> (usize, usize) {
        let mark = (self.path.len(), self.pointer.len());
        self.path.push('.');
        self.path.push_str(name);
        self.pointer.push('/');
        // Element names never hold `~` or `/`: no escaping needed.
        self.pointer.push_str(name);
        mark
    }

    fn index(&mut self, i: usize) -> (usize, usize) {
        let mark = (self.path.len(), self.pointer.len());
        use std::fmt::Write;
        let _ = write!(self.path, "[{i}]");
        let _ = write!(self.pointer, "/{i}");
        mark
    }

    fn leave(&mut self, (p, q): (usize, usize)) {
        self.path.truncate(p);
        self.pointer.truncate(q);
    }
}

/// Checks one resource; `root` names it in paths (`Observation`,
/// `Bundle.entry[2].resource`). The references it holds, in document order.
pub fn resource(v: &Value, root: &str) -> Result<Vec<Found>, Invalid> {
    let mut w = Walk {
        path: root.to_string(),
        pointer: String::new(),
        depth: 0,
        entry: None,
        found: Vec::new(),
    };
    check_resource(v, &mut w)?;
    Ok(w.found)
}

fn check_resource(v: &Value, w: &mut Walk) -> Result<(), Invalid> {
    let Some(obj) = v.as_object() else {
        return Err(w.invalid("a resource must be a JSON object"));
    };
    let name = match obj.get("resourceType") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(w.invalid("resourceType must be a string")),
        None => return Err(w.invalid("has no resourceType")),
    };
    let Some(def) = R4.resource(name) else {
        return Err(w.invalid(format!("{name:?} is not a FHIR R4 resource type")));
    };
    check_object(obj, name, def, w)
}

fn check_object(
    obj: &Map<String, Value>,
    type_name: &str,
    def: &TypeDef,
    w: &mut Walk,
) -> Result<(), Invalid> {
    w.depth += 1;
    if w.depth > MAX_DEPTH {
        return Err(w.invalid(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    if obj.is_empty() {
        return Err(w.invalid("an element must not be an empty object"));
    }
    for (key, value) in obj {
        if key == "resourceType" && def.resource {
            continue;
        }
        let Some(el) = def.elements.get(key) else {
            let mark = w.enter(key);
            let e = w.invalid(format!("{type_name} has no element {key:?}"));
            w.leave(mark);
            return Err(e);
        };
        let mark = w.enter(key);
        let in_entries = type_name == "Bundle" && key == "entry";
        check_element(value, el, key.starts_with('_'), in_entries, w)?;
        w.leave(mark);
    }
    for req in &def.required {
        let present = match req.strip_suffix("[x]") {
            Some(base) => def
                .choices
                .get(base)
                .is_some_and(|forms| forms.iter().any(|f| obj.contains_key(f))),
            None => obj.contains_key(req) || obj.contains_key(&format!("_{req}")),
        };
        if !present {
            let mark = w.enter(req);
            let e = w.invalid(format!("is required in {type_name}"));
            w.leave(mark);
            return Err(e);
        }
    }
    for (base, forms) in &def.choices {
        let mut given = forms.iter().filter(|f| obj.contains_key(f.as_str()));
        if let (Some(a), Some(b)) = (given.next(), given.next()) {
            let mark = w.enter(b);
            let e = w.invalid(format!("{base}[x] is given twice ({a} and {b})"));
            w.leave(mark);
            return Err(e);
        }
    }
    w.depth -= 1;
    Ok(())
}

fn check_element(
    v: &Value,
    el: &Element,
    underscore: bool,
    entries: bool,
    w: &mut Walk,
) -> Result<(), Invalid> {
    if !el.repeats {
        if v.is_array() {
            return Err(w.invalid("must be a single value, not an array"));
        }
        return check_value(v, &el.kind, false, w);
    }
    let Some(items) = v.as_array() else {
        return Err(w.invalid("must be an array"));
    };
    if items.is_empty() {
        return Err(w.invalid("an array must not be empty"));
    }
    // In arrays of primitives (and their `_` extensions), null keeps positions aligned.
    let nulls = underscore || matches!(el.kind, Kind::Primitive(_));
    for (i, item) in items.iter().enumerate() {
        let mark = w.index(i);
        let outer = w.entry;
        if entries {
            w.entry = Some(i);
        }
        check_value(item, &el.kind, nulls, w)?;
        w.entry = outer;
        w.leave(mark);
    }
    Ok(())
}

fn check_value(v: &Value, kind: &Kind, null_ok: bool, w: &mut Walk) -> Result<(), Invalid> {
    if v.is_null() {
        return if null_ok {
            Ok(())
        } else {
            Err(w.invalid("must not be null"))
        };
    }
    match kind {
        Kind::Primitive(name) => check_primitive(v, name, w),
        Kind::Codes(codes) => match v.as_str() {
            Some(s) if codes.iter().any(|c| c == s) => Ok(()),
            Some(s) => Err(w.invalid(format!(
                "{s:?} is not one of the allowed codes ({})",
                codes.join(", ")
            ))),
            None => Err(w.invalid("a code must be a string")),
        },
        Kind::Resource => check_resource(v, w),
        Kind::Complex(name) => {
            let Some(obj) = v.as_object() else {
                return Err(w.invalid(format!("a {name} must be a JSON object")));
            };
            let Some(def) = R4.types.get(name) else {
                return Err(w.invalid(format!("unknown type {name}")));
            };
            if name == "Reference"
                && let Some(Value::String(r)) = obj.get("reference")
            {
                w.found.push(Found {
                    entry: w.entry,
                    path: format!("{}.reference", w.path),
                    pointer: format!("{}/reference", w.pointer),
                    reference: r.clone(),
                });
            }
            check_object(obj, name, def, w)
        }
    }
}

fn check_primitive(v: &Value, name: &str, w: &mut Walk) -> Result<(), Invalid> {
    let Some(p) = R4.primitives.get(name) else {
        return Err(w.invalid(format!("unknown type {name}")));
    };
    match p.json {
        Json::Boolean => v
            .is_boolean()
            .then_some(())
            .ok_or_else(|| w.invalid("must be true or false")),
        Json::Number => {
            let ok = match name {
                "decimal" => v.is_number(),
                "integer" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                "positiveInt" => v
                    .as_u64()
                    .is_some_and(|n| (1..=i32::MAX as u64).contains(&n)),
                "unsignedInt" => v.as_u64().is_some_and(|n| n <= i32::MAX as u64),
                _ => v.is_number(),
            };
            ok.then_some(())
                .ok_or_else(|| w.invalid(format!("must be a JSON number of type {name}")))
        }
        Json::String => {
            let Some(s) = v.as_str() else {
                return Err(w.invalid(format!("a {name} must be a JSON string")));
            };
            if name == "xhtml" {
                return if s.trim_start().starts_with("<div") {
                    Ok(())
                } else {
                    Err(w.invalid("narrative must be an XHTML <div>"))
                };
            }
            match &p.pattern {
                Some(re) if !re.is_match(s) => {
                    Err(w.invalid(format!("{:?} is not a valid {name}", shorten(s))))
                }
                _ => Ok(()),
            }
        }
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obs() -> Value {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-01-02",
            "valueQuantity": {"value": 142, "unit": "mm[Hg]"}
        })
    }

    fn err(v: &Value) -> Invalid {
        resource(v, "Observation").unwrap_err()
    }

    #[test]
    fn a_good_observation_passes_and_its_references_are_found() {
        let found = resource(&obs(), "Observation").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "Observation.subject.reference");
        assert_eq!(found[0].pointer, "/subject/reference");
        assert_eq!(found[0].reference, "Patient/p1");
    }

    #[test]
    fn each_kind_of_mistake_names_its_path() {
        let mut v = obs();
        v.as_object_mut().unwrap().remove("status");
        assert_eq!(err(&v).path, "Observation.status");
        assert!(err(&v).problem.contains("required"), "{}", err(&v));

        let mut v = obs();
        v["status"] = json!("done");
        assert_eq!(err(&v).path, "Observation.status");

        let mut v = obs();
        v["code"]["coding"][0]["sytem"] = json!("x");
        assert_eq!(err(&v).path, "Observation.code.coding[0].sytem");

        let mut v = obs();
        v["effectiveDateTime"] = json!("2024-13-40");
        assert_eq!(err(&v).path, "Observation.effectiveDateTime");

        let mut v = obs();
        v["valueString"] = json!("high");
        assert!(
            err(&v).problem.contains("value[x] is given twice"),
            "{}",
            err(&v)
        );

        let mut v = obs();
        v["category"] = json!([]);
        assert_eq!(err(&v).path, "Observation.category");

        let mut v = obs();
        v["resourceType"] = json!("Observatio");
        assert_eq!(err(&v).path, "Observation");

        let mut v = obs();
        v["valueQuantity"]["value"] = json!("142");
        assert_eq!(err(&v).path, "Observation.valueQuantity.value");
    }

    #[test]
    fn a_primitive_given_only_by_its_extension_counts_as_present() {
        let mut v = obs();
        v.as_object_mut().unwrap().remove("status");
        v["_status"] = json!({"extension": [{"url": "http://example.org/x", "valueString": "?"}]});
        resource(&v, "Observation").unwrap();
    }

    #[test]
    fn nesting_is_bounded() {
        let mut v = json!({"url": "http://e.org/x", "valueString": "x"});
        for _ in 0..100 {
            v = json!({"url": "http://e.org/x", "extension": [v]});
        }
        let r = json!({"resourceType": "Basic", "code": {"text": "x"}, "extension": [v]});
        assert!(
            resource(&r, "Basic")
                .unwrap_err()
                .problem
                .contains("nested")
        );
    }
}
