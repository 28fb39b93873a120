"""The vault's interop tier, the Python side (crates/testnet/tests/interop_fhir.rs).

generate DIR: one synthetic patient per carebundle 0.5 profile (fixed seeds), as FHIR R4
  transaction Bundles; no real patient data.
validate FILE...: each file through fhir.resources 8's R4B models (its default models are
  R5), by its resourceType; a file that fails is reported with pydantic's error.
read BASE TOKEN PATIENT: reads the vault's FHIR API with `requests`, as FHIR tooling
  does (metadata, a search, a read) and validates every answer the same way.

Prints one JSON line: {"ok": bool, ...}.
"""
import json
import subprocess
import sys

PROFILES = ["anaemia", "ckd_stage3", "healthy", "hypertension", "type2_diabetes"]


def model(resource_type):
    from fhir.resources.R4B import get_fhir_model_class
    return get_fhir_model_class(resource_type)


def validate(obj):
    """None when valid, else the error's text."""
    try:
        model(obj["resourceType"]).model_validate(obj)
        return None
    except Exception as e:  # pydantic's ValidationError, or an unknown type
        return f"{type(e).__name__}: {e}"[:2000]


def generate(out):
    for i, p in enumerate(PROFILES):
        subprocess.run(
            ["carebundle", "generate", "--profile", p, "--count", "1", "--seed", str(100 + i), "--out", out],
            check=True, capture_output=True,
        )
    print(json.dumps({"ok": True, "profiles": PROFILES}))


def validate_files(files):
    results = {}
    for f in files:
        with open(f) as fh:
            obj = json.load(fh)
        results[f] = validate(obj)
    bad = {f: e for f, e in results.items() if e}
    print(json.dumps({"ok": not bad, "checked": len(results), "failed": bad}))


def read(base, token, patient):
    import requests
    h = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    out = {}
    meta = requests.get(f"{base}/metadata", headers=h, timeout=30)
    out["metadata"] = (meta.status_code, validate(meta.json()))
    search = requests.get(f"{base}/Observation", params={"patient": patient}, headers=h, timeout=30)
    found = search.json()
    out["search"] = (search.status_code, validate(found))
    first = found["entry"][0]["resource"]
    one = requests.get(f"{base}/Observation/{first['id']}", headers=h, timeout=30)
    out["read"] = (one.status_code, validate(one.json()))
    denied = requests.get(f"{base}/metadata", timeout=30)
    ok = all(code == 200 and err is None for code, err in out.values()) and denied.status_code == 401
    print(json.dumps({
        "ok": ok, "answers": out, "total": found.get("total"),
        "read_equals_search": one.json() == first, "without_token": denied.status_code,
    }))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"generate": lambda: generate(args[0]), "validate": lambda: validate_files(args),
     "read": lambda: read(*args)}[cmd]()
