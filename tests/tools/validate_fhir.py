"""Validates FHIR R4 (4.0.1) JSON resources with fhir.resources, a model
library generated from HL7's R4 structure definitions and maintained
outside Bedside: element names, types, cardinalities, required elements
and primitive formats are checked by code Bedside did not write.

Reads one JSON document per line on stdin (a resource or a Bundle) and
writes one JSON line per document: {"ok": true, "types": {...}} with the
resource types it held (a Bundle's entries are validated and counted one
by one), or {"ok": false, "error": "..."}.
"""

import json
import sys

from fhir.resources import construct_fhir_element


def validate(resource, types):
    kind = resource.get("resourceType")
    construct_fhir_element(kind, resource)
    types[kind] = types.get(kind, 0) + 1
    if kind == "Bundle":
        for entry in resource.get("entry", []):
            validate(entry["resource"], types)


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        types = {}
        try:
            validate(json.loads(line), types)
            result = {"ok": True, "types": types}
        except Exception as error:  # every failure is reported, none ends the run
            result = {"ok": False, "error": str(error)}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
