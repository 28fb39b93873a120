//! Bundles in and out: a Bundle taken apart into records (ids given, references inside
//! the bundle made `Type/id`), and records put together as a Bundle again.
//!
//! Import keeps each resource as written, except that it gets an `id` (its own, else the
//! uuid of its `urn:uuid:` fullUrl, else the id at the end of a RESTful fullUrl, else
//! one made from its content) and that references to other entries become `Type/id`,
//! as a FHIR server does with a transaction. Export writes a transaction Bundle of `PUT
//! Type/id` entries, which a FHIR server (and the vault itself) takes back with the
//! same ids. Serialization is deterministic, so export is byte-for-byte stable.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::schema::R4;
use super::validate::{self, Invalid};

/// A resource out of a bundle, ready to be a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub rtype: String,
    pub id: String,
    pub resource: Value,
}

fn invalid(path: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        path: path.into(),
        problem: problem.into(),
    }
}

/// Takes a Bundle (JSON bytes) apart. `exists(type, id)` says whether the vault already
/// holds a record a reference may point to.
pub fn parse(bytes: &[u8], exists: impl Fn(&str, &str) -> bool) -> Result<Vec<Entry>, Invalid> {
    let mut bundle: Value = serde_json::from_slice(bytes).map_err(|e| {
        invalid(
            format!("line {}, column {}", e.line(), e.column()),
            format!("not JSON: {e}"),
        )
    })?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(invalid(
            "resourceType",
            "expected a FHIR Bundle (\"resourceType\": \"Bundle\")",
        ));
    }
    let found = validate::resource(&bundle, "Bundle")?;
    let Some(Value::Array(items)) = bundle.get_mut("entry") else {
        return Err(invalid("Bundle.entry", "the bundle holds no resources"));
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut by_url: HashMap<String, String> = HashMap::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut contained: Vec<HashSet<String>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter_mut().enumerate() {
        let path = format!("Bundle.entry[{i}]");
        if let Some(m) = item.pointer("/request/method").and_then(Value::as_str)
            && !matches!(m, "POST" | "PUT")
        {
            return Err(invalid(
                format!("{path}.request.method"),
                format!("{m} is not imported: only resources are (POST or PUT)"),
            ));
        }
        let full_url = item
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(resource) = item.get_mut("resource").map(Value::take) else {
            return Err(invalid(path, "has no resource"));
        };
        let rtype = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = match resource.get("id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => {
                id_from_url(full_url.as_deref(), &rtype).unwrap_or_else(|| content_id(&resource))
            }
        };
        if !seen.insert((rtype.clone(), id.clone())) {
            return Err(invalid(
                path,
                format!("{rtype}/{id} is in the bundle twice"),
            ));
        }
        if let Some(url) = full_url {
            by_url.insert(url, format!("{rtype}/{id}"));
        }
        contained.push(
            resource
                .get("contained")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_string))
                .collect(),
        );
        let mut resource = resource;
        if let Some(obj) = resource.as_object_mut() {
            obj.insert("id".into(), Value::String(id.clone()));
        }
        entries.push(Entry {
            rtype,
            id,
            resource,
        });
    }
    for f in found {
        let Some(i) = f.entry else { continue };
        let prefix = format!("/entry/{i}/resource");
        let Some(pointer) = f.pointer.strip_prefix(&prefix) else {
            continue; // in the entry's request or response, not its resource
        };
        let target = resolve(&f.reference, &contained[i], &by_url, &seen, &exists)
            .map_err(|problem| invalid(f.path.clone(), problem))?;
        if let Some(t) = target
            && let Some(slot) = entries[i].resource.pointer_mut(pointer)
        {
            *slot = Value::String(t);
        }
    }
    Ok(entries)
}

/// Where a reference points: `Ok(Some(new))` to rewrite it, `Ok(None)` to keep it.
fn resolve(
    r: &str,
    contained: &HashSet<String>,
    by_url: &HashMap<String, String>,
    in_bundle: &HashSet<(String, String)>,
    exists: &impl Fn(&str, &str) -> bool,
) -> Result<Option<String>, String> {
    if let Some(local) = r.strip_prefix('#') {
        return if local.is_empty() || contained.contains(local) {
            Ok(None)
        } else {
            Err(format!("{r:?} names no contained resource"))
        };
    }
    if let Some(t) = by_url.get(r) {
        return Ok(Some(t.clone()));
    }
    if r.starts_with("urn:") {
        return Err(format!("{r:?} is the fullUrl of no entry in the bundle"));
    }
    if r.starts_with("http://") || r.starts_with("https://") {
        return Ok(None); // outside the bundle and the vault: kept as written
    }
    let mut parts = r.split('/');
    let (Some(t), Some(id)) = (parts.next(), parts.next()) else {
        return Err(format!("{r:?} is not a reference (Type/id, a URL or #id)"));
    };
    if R4.resource(t).is_none() {
        return Err(format!("{r:?} does not name a resource type"));
    }
    if in_bundle.contains(&(t.to_string(), id.to_string())) || exists(t, id) {
        Ok(None)
    } else {
        Err(format!("{r:?} is neither in the bundle nor in the vault"))
    }
}

fn id_from_url(url: Option<&str>, rtype: &str) -> Option<String> {
    let url = url?;
    let id = if let Some(u) = url.strip_prefix("urn:uuid:") {
        u
    } else {
        let (before, id) = url.rsplit_once('/')?;
        before.ends_with(&format!("/{rtype}")).then_some(id)?
    };
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then(|| id.to_string())
}

/// An id for a resource that came with none: the same content gets the same id.
fn content_id(resource: &Value) -> String {
    let bytes = serde_json::to_vec(resource).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// The bytes of a transaction Bundle that PUTs `resources` (in this order).
pub fn export<'a>(resources: impl IntoIterator<Item = &'a Value>) -> Vec<u8> {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let t = r["resourceType"].as_str().unwrap_or_default();
            let id = r["id"].as_str().unwrap_or_default();
            let mut e = Map::new();
            if is_uuid(id) {
                e.insert("fullUrl".into(), json!(format!("urn:uuid:{id}")));
            }
            e.insert("resource".into(), r.clone());
            e.insert(
                "request".into(),
                json!({"method": "PUT", "url": format!("{t}/{id}")}),
            );
            Value::Object(e)
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let mut out = serde_json::to_vec_pretty(&bundle).unwrap_or_default();
    out.push(b'\n');
    out
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Value {
        json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:e1035ac9-ce0a-5989-b4ae-0a0c4351ff62",
                    "resource": {"resourceType": "Patient", "gender": "female"},
                    "request": {"method": "POST", "url": "Patient"}
                },
                {
                    "fullUrl": "urn:uuid:7eae916d-fba3-59fb-b3e5-4877a5211395",
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "BP"},
                        "subject": {"reference": "urn:uuid:e1035ac9-ce0a-5989-b4ae-0a0c4351ff62"}
                    },
                    "request": {"method": "POST", "url": "Observation"}
                }
            ]
        })
    }

    fn parse_value(v: &Value) -> Result<Vec<Entry>, Invalid> {
        parse(&serde_json::to_vec(v).unwrap(), |_, _| false)
    }

    #[test]
    fn ids_come_from_full_urls_and_references_become_type_slash_id() {
        let e = parse_value(&bundle()).unwrap();
        assert_eq!(e[0].id, "e1035ac9-ce0a-5989-b4ae-0a0c4351ff62");
        assert_eq!(e[0].resource["id"], e[0].id.as_str());
        assert_eq!(
            e[1].resource["subject"]["reference"],
            "Patient/e1035ac9-ce0a-5989-b4ae-0a0c4351ff62"
        );
    }

    #[test]
    fn an_export_imports_to_the_same_records_and_exports_the_same_bytes() {
        let e = parse_value(&bundle()).unwrap();
        let out = export(e.iter().map(|e| &e.resource));
        let again = parse(&out, |_, _| false).unwrap();
        assert_eq!(again, e);
        assert_eq!(export(again.iter().map(|e| &e.resource)), out);
    }

    #[test]
    fn a_reference_to_nothing_is_refused_with_its_path() {
        let mut b = bundle();
        b["entry"][1]["resource"]["subject"]["reference"] =
            json!("urn:uuid:00000000-0000-0000-0000-000000000000");
        let e = parse_value(&b).unwrap_err();
        assert_eq!(e.path, "Bundle.entry[1].resource.subject.reference");
        b["entry"][1]["resource"]["subject"]["reference"] = json!("Patient/nobody");
        assert_eq!(
            parse_value(&b).unwrap_err().path,
            "Bundle.entry[1].resource.subject.reference"
        );
        // One the vault holds resolves.
        let bytes = serde_json::to_vec(&b).unwrap();
        parse(&bytes, |t, id| t == "Patient" && id == "nobody").unwrap();
    }

    #[test]
    fn an_invalid_resource_is_refused_with_its_path() {
        let mut b = bundle();
        b["entry"][1]["resource"]["status"] = json!("finished");
        assert_eq!(
            parse_value(&b).unwrap_err().path,
            "Bundle.entry[1].resource.status"
        );
        let mut b = bundle();
        b["entry"][1]["resource"]
            .as_object_mut()
            .unwrap()
            .remove("code");
        assert_eq!(
            parse_value(&b).unwrap_err().path,
            "Bundle.entry[1].resource.code"
        );
    }

    #[test]
    fn the_same_record_twice_is_refused() {
        let mut b = bundle();
        let first = b["entry"][0].clone();
        b["entry"].as_array_mut().unwrap().push(first);
        assert_eq!(parse_value(&b).unwrap_err().path, "Bundle.entry[2]");
    }
}
