"""A second opinion on DSP messages for tests/dsp.rs: JSON Schema and JSON-LD, with the
specification's own files from ../shared/dsp/2025-1 (nothing is fetched).

Reads one JSON document on stdin, {"dsp": "<dir of the DSP 2025-1 artifacts>", "checks":
[{"schema": "catalog/catalog-schema.json", "document": {...}}, ...]} and prints one JSON array:
for each check {"errors": ["..."], "expanded": <the document expanded as JSON-LD, or null>}.
Every `*-schema.json` is registered under its `$id`; the two context IRIs are served from
`context/`.
"""

import json
import pathlib
import sys

import jsonschema
import referencing
from pyld import jsonld

CONTEXTS = {
    "https://w3id.org/dspace/2025/1/context.jsonld": "context/dspace.jsonld",
    "https://w3id.org/dspace/2025/1/odrl-profile.jsonld": "context/odrl.jsonld",
}


def main():
    request = json.load(sys.stdin)
    root = pathlib.Path(request["dsp"])
    resources = []
    schemas = {}
    for path in root.glob("*/*-schema.json"):
        text = path.read_text(encoding="utf-8")
        # The published defect: `#definitions/...` lacks the `/` after `#`.
        text = text.replace('#definitions/', '#/definitions/')
        schema = json.loads(text)
        schemas[str(path.relative_to(root))] = schema
        resources.append((schema["$id"], referencing.Resource.from_contents(schema)))
    registry = referencing.Registry().with_resources(resources)

    def loader(url, options=None):
        local = CONTEXTS.get(url)
        if local is None:
            raise jsonld.JsonLdError("not a pinned context", "loading document failed",
                                     {"url": url}, code="loading document failed")
        return {"contextUrl": None, "documentUrl": url,
                "document": json.loads((root / local).read_text(encoding="utf-8"))}

    out = []
    for check in request["checks"]:
        validator = jsonschema.Draft201909Validator(schemas[check["schema"]], registry=registry)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(check["document"])]
        try:
            expanded = jsonld.expand(check["document"], {"documentLoader": loader})
        except jsonld.JsonLdError as e:
            errors.append(f"JSON-LD expansion: {e}")
            expanded = None
        out.append({"errors": errors, "expanded": expanded})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
