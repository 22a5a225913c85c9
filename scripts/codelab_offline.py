"""Runs the parts of kfctl's codelabs that need no cluster, in the SDK's venv (scripts/test-codelabs).

    python codelab_offline.py NOTEBOOK MANIFESTS_DIR

- validates the notebook against the nbformat 4 schema;
- executes the code cells tagged `offline`, in order, in one namespace (as a kernel would);
- checks what the notebook's metadata `kfctl.offline` promises:
  - `compiles`: files the cells wrote, each a KFP IR YAML (pipelineInfo, root, deploymentSpec);
  - `validates`: kinds of objects the cells built (a dict, or an SDK model), each validated against
    the openAPI v3 schema of its CustomResourceDefinition in the release's manifests (MANIFESTS_DIR,
    the unpacked release archive). Fields the schema does not know are errors, as with the API
    server's strict field validation.
Exit 0 when all holds; otherwise 1 with what failed, by notebook, cell and field.
"""

import copy
import linecache
import os
import sys
import tempfile

import jsonschema
import nbformat
import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def crd_schemas(manifests, kinds):
    """(apiVersion, kind) -> openAPI v3 schema, from the CRDs of `kinds` under applications/ and common/."""
    schemas = {}
    for top in ("applications", "common"):
        for root, _, files in os.walk(os.path.join(manifests, top)):
            for name in files:
                if not name.endswith((".yaml", ".yml")):
                    continue
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if "kind: CustomResourceDefinition" not in text or not any(f"kind: {k}\n" in text for k in kinds):
                    continue
                try:
                    docs = list(yaml.load_all(text, Loader=Loader))
                except yaml.YAMLError:
                    continue  # kustomize patches with placeholders; real CRDs parse
                for doc in docs:
                    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                        continue
                    spec = doc.get("spec") or {}
                    group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
                    for version in spec.get("versions") or []:
                        schema = ((version.get("schema") or {}).get("openAPIV3Schema"))
                        if group and kind and schema and version.get("served", True):
                            schemas.setdefault((f"{group}/{version['name']}", kind), (schema, path))
    return schemas


def strict(schema):
    """The schema with unknown fields rejected where it lists the fields (as structural schemas do)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties", "definitions"):
            for child in (node.get(key) or {}).values():
                walk(child)
        for key in ("items", "additionalProperties", "not"):
            walk(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key) or []:
                walk(child)

    walk(schema)
    return schema


def as_manifest(value):
    """A Kubernetes object as JSON-ready dict, from a dict or an openapi-generated SDK model."""
    if isinstance(value, dict):
        return value if "apiVersion" in value and "kind" in value else None
    if isinstance(value, type):
        return None  # an imported model class, not an object
    if hasattr(value, "attribute_map") and hasattr(value, "openapi_types"):
        data = serialize(value)
        return data if "kind" in data else None
    return None


def serialize(value):
    """What the SDK sends: model attributes under their JSON names (attribute_map), Nones left out."""
    if isinstance(value, (list, tuple)):
        return [serialize(v) for v in value]
    if isinstance(value, dict):
        return {k: serialize(v) for k, v in value.items() if v is not None}
    if hasattr(value, "attribute_map") and hasattr(value, "openapi_types") and not isinstance(value, type):
        return {
            value.attribute_map[attr]: serialize(getattr(value, attr))
            for attr in value.openapi_types
            if getattr(value, attr) is not None
        }
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def main(notebook_path, manifests):
    failures = []
    nb = nbformat.read(notebook_path, as_version=4)
    nbformat.validate(nb)
    promised = (nb.metadata.get("kfctl") or {}).get("offline") or {}
    cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and "offline" in c.metadata.get("tags", [])]
    if promised and not cells:
        failures.append("its metadata promises offline checks, but no code cell is tagged `offline`")
    workdir = tempfile.mkdtemp(prefix="codelab-")
    os.chdir(workdir)
    namespace = {"__name__": "__main__"}
    for index, cell in cells:
        filename = f"<{os.path.basename(notebook_path)} cell {index}>"
        # inspect.getsource reads cell sources from linecache, as IPython arranges in a kernel.
        linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(True), filename)
        try:
            exec(compile(cell.source, filename, "exec"), namespace)
        except Exception as e:  # report every codelab, not only the first failure
            failures.append(f"cell {index} raised {type(e).__name__}: {e}")
            break
    for path in promised.get("compiles", []):
        if not os.path.exists(path):
            failures.append(f"the offline cells did not write {path}")
            continue
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.load_all(f, Loader=Loader) if d]
        ir = docs[0] if docs else {}
        missing = [k for k in ("pipelineInfo", "root", "deploymentSpec", "components") if k not in ir]
        if missing:
            failures.append(f"{path} is not KFP IR YAML: no {', '.join(missing)}")
        else:
            print(f"  ok: compiled {path}: pipeline {ir['pipelineInfo'].get('name')}, {len(ir['components'])} components")
    wanted = promised.get("validates", [])
    if wanted:
        schemas = crd_schemas(manifests, wanted)
        built = {}
        for name, value in namespace.items():
            manifest = as_manifest(value) if not name.startswith("__") else None
            if manifest:
                built.setdefault(manifest["kind"], []).append((name, manifest))
        for kind in wanted:
            if kind not in built:
                failures.append(f"no {kind} object was built by the offline cells")
            for name, manifest in built.get(kind, []):
                key = (manifest.get("apiVersion"), kind)
                if key not in schemas:
                    failures.append(f"`{name}`: the release has no CRD for {key[0]} {kind}")
                    continue
                schema, crd_path = schemas[key]
                validator = jsonschema.Draft7Validator(strict(schema))
                errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))
                for error in errors:
                    field = ".".join(str(p) for p in error.path) or "(object)"
                    failures.append(f"`{name}` ({kind}) field {field}: {error.message} (schema {os.path.relpath(crd_path, manifests)})")
                if not errors:
                    print(f"  ok: validated `{name}`: {key[0]} {kind} against {os.path.relpath(crd_path, manifests)}")
    for failure in failures:
        print(f"FAIL {notebook_path}: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])))
