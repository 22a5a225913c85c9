//! `vars:`: `$(NAME)` substitution in the varReference fields (kustomize's legacy vars,
//! api/filters/refvar). A var names an object (`objref`) and a field in it (`fieldref.fieldpath`,
//! default `metadata.name`); the object is bound when the declaring kustomization is built and
//! its field is read at the very end, after names were fixed.

use serde::Deserialize;
use serde_json::Value;

use super::{Result, TransformError, effective_namespace};
use crate::builtin_config::TransformerConfig;
use crate::fieldspec::{PathStep, lookup, parse_dotted_path};
use crate::resource::{ResId, Resource};

/// One `vars:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    /// The name used in `$(NAME)`.
    pub name: String,
    /// The object holding the value.
    pub objref: ObjRef,
    /// Dotted path of the field holding the value.
    pub field_path: String,
}

/// A var's `objref`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjRef {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace; empty matches any.
    pub namespace: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVar {
    name: String,
    objref: RawObjRef,
    #[serde(default)]
    fieldref: Option<RawFieldRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
struct RawObjRef {
    #[serde(default, rename = "apiversion")]
    api_version: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFieldRef {
    #[serde(default)]
    fieldpath: String,
}

impl Var {
    /// Parses one `vars:` entry.
    pub fn from_value(value: &Value) -> Result<Var> {
        let raw: RawVar = serde_json::from_value(super::lowercase_keys(value))
            .map_err(|e| TransformError::InvalidSpec { field: "vars".to_string(), message: e.to_string() })?;
        let mut objref = ObjRef {
            group: raw.objref.group,
            version: raw.objref.version,
            kind: raw.objref.kind,
            name: raw.objref.name,
            namespace: raw.objref.namespace,
        };
        if !raw.objref.api_version.is_empty() {
            // kustomize's Target.GVK(): apiVersion overrides group/version.
            match raw.objref.api_version.split_once('/') {
                Some((group, version)) => {
                    objref.group = group.to_string();
                    objref.version = version.to_string();
                }
                None => objref.version = raw.objref.api_version.clone(),
            }
        }
        let field_path = raw.fieldref.map(|f| f.fieldpath).filter(|p| !p.is_empty());
        Ok(Var { name: raw.name, objref, field_path: field_path.unwrap_or_else(|| "metadata.name".to_string()) })
    }

    fn matches(&self, id: &ResId) -> bool {
        let o = &self.objref;
        if id.group != o.group || id.version != o.version || id.kind != o.kind || id.name != o.name {
            return false;
        }
        if o.namespace.is_empty() {
            return true;
        }
        let wanted = ResId { namespace: Some(o.namespace.clone()), ..id.clone() };
        effective_namespace(&wanted) == effective_namespace(id)
    }

    /// kustomize's rendering of a var in its messages.
    fn describe(&self) -> String {
        let o = &self.objref;
        let or_none = |s: &str, none: &str| if s.is_empty() { none.to_string() } else { s.to_string() };
        format!(
            "{{{} {}.{}.{} {{{}}}}}",
            self.name,
            o.kind,
            or_none(&o.version, "[noVer]"),
            or_none(&o.group, "[noGrp]"),
            self.field_path
        )
    }
}

/// The vars declared so far in a build, each bound to the object it named when declared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VarSet {
    vars: Vec<(Var, Option<ResId>)>,
}

impl VarSet {
    /// No vars.
    pub fn new() -> VarSet {
        VarSet::default()
    }

    /// Whether no var was declared.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// kustomize's MergeVars: declares one kustomization's `vars:` after its transformers ran,
    /// binding each to the object (current or earlier id) it names.
    pub fn declare(&mut self, vars: &[Value], res: &[Resource]) -> Result<()> {
        for value in vars {
            let var = Var::from_value(value)?;
            let matched: Vec<&Resource> = res
                .iter()
                .filter(|r| var.matches(&r.id()) || r.previous_ids.iter().any(|id| var.matches(id)))
                .collect();
            if matched.len() > 1 {
                return Err(TransformError::Unresolved {
                    transformer: "vars",
                    message: format!(
                        "found {} resId matches for var {} (unable to disambiguate)",
                        matched.len(),
                        var.describe()
                    ),
                });
            }
            let bound = matched.first().map(|r| r.id());
            self.add(var, bound)?;
        }
        Ok(())
    }

    /// Adds the vars of a base (kustomize's MergeSet).
    pub fn merge(&mut self, other: VarSet) -> Result<()> {
        for (var, bound) in other.vars {
            self.add(var, bound)?;
        }
        Ok(())
    }

    fn add(&mut self, var: Var, bound: Option<ResId>) -> Result<()> {
        if self.vars.iter().any(|(v, _)| v.name == var.name) {
            return Err(TransformError::InvalidSpec {
                field: "vars".to_string(),
                message: format!("var '{}' already encountered\n  hint: var names must be unique across the build", var.name),
            });
        }
        self.vars.push((var, bound));
        Ok(())
    }
}

/// Substitutes `$(NAME)` in the config's varReference fields of all objects. Returns the names
/// of vars that were declared but never used (kustomize logs them).
pub fn resolve_vars(res: &mut [Resource], vars: &VarSet, cfg: &TransformerConfig) -> Result<Vec<String>> {
    if vars.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<(String, Value)> = Vec::new();
    let ids: Vec<ResId> = res.iter().map(Resource::id).collect();
    for (var, bound) in &vars.vars {
        let holder = bound.as_ref().and_then(|bound| {
            res.iter().zip(&ids).find(|(r, id)| *id == bound || r.previous_ids.iter().any(|id| id == bound)).map(|(r, _)| r)
        });
        let Some(holder) = holder else {
            return Err(TransformError::Unresolved {
                transformer: "vars",
                message: format!("var '{}' cannot be mapped to a field in the set of known resources", var.describe()),
            });
        };
        // Looked up in place: the holder's object is not copied into a Value to walk it.
        let steps = parse_dotted_path(&var.field_path);
        let whole;
        let found = match steps.split_first() {
            None => {
                whole = Value::Object(holder.object.clone());
                Some(&whole)
            }
            Some((PathStep::Field(first), rest)) => holder.object.get(first).and_then(|v| lookup(v, rest)),
            Some(_) => None,
        };
        let Some(value) = found else {
            return Err(TransformError::Unresolved {
                transformer: "vars",
                message: format!("field specified in var '{}' not found in corresponding resource", var.describe()),
            });
        };
        values.push((var.name.clone(), value.clone()));
    }
    let mut used = vec![false; values.len()];
    for r in res.iter_mut() {
        for spec in &cfg.var_reference {
            if let Err(source) = spec.apply(&mut r.object, None, &mut |node| substitute_node(node, &values, &mut used)) {
                return Err(TransformError::FieldPath { transformer: "vars", resource: r.id().to_string(), source });
            }
        }
    }
    // kustomize re-validates objects after substitution: a var can empty a name.
    if let Some(r) = res.iter().find(|r| r.name().is_empty() && !r.kind().ends_with("List")) {
        return Err(TransformError::Unresolved {
            transformer: "vars",
            message: format!(
                "missing metadata.name in object {} {} after var substitution\n  hint: the var used in its name resolved to an empty value",
                r.api_version(),
                r.kind()
            ),
        });
    }
    Ok(values.iter().zip(used).filter(|(_, used)| !used).map(|((name, _), _)| name.clone()).collect())
}

fn substitute_node(node: &mut Value, values: &[(String, Value)], used: &mut [bool]) -> std::result::Result<(), String> {
    match node {
        Value::String(_) => {
            substitute_string(node, values, used);
            Ok(())
        }
        Value::Object(map) => {
            for value in map.values_mut() {
                if value.is_string() {
                    substitute_string(value, values, used);
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                if !item.is_string() {
                    return Err("invalid value type expect a string".to_string());
                }
                substitute_string(item, values, used);
            }
            Ok(())
        }
        // Only strings hold references.
        _ => Ok(()),
    }
}

fn substitute_string(node: &mut Value, values: &[(String, Value)], used: &mut [bool]) {
    let Value::String(text) = node else { return };
    if !text.contains('$') {
        return;
    }
    let mut lookup_var = |name: &str| -> Option<Value> {
        let i = values.iter().position(|(n, _)| n == name)?;
        used[i] = true;
        Some(values[i].1.clone())
    };
    *node = expand(text, &mut lookup_var);
}

/// kustomize's expansion of `$(NAME)`: `$$` is a literal `$`, unknown names stay as written,
/// and a string that is exactly one reference takes the var's value with its type.
pub fn expand(input: &str, lookup_var: &mut dyn FnMut(&str) -> Option<Value>) -> Value {
    let bytes = input.as_bytes();
    let mut out = String::new();
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup_var(name) {
                            Some(value) if input.len() == name.len() + 3 => return value,
                            Some(value) => out.push_str(&display(&value)),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Not a reference: keep the `$` and the next character.
                    let ch = rest.chars().next().expect("rest is not empty");
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    Value::String(out)
}

/// A var value inside a longer string (Go's `%v`).
fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, resources};
    use crate::transform::{apply_name_prefix_suffix, fix_name_references};
    use serde_json::json;

    #[test]
    fn expand_table() {
        let mut vars = |name: &str| match name {
            "SVC" => Some(json!("p-svc")),
            "PORT" => Some(json!(8080)),
            _ => None,
        };
        let cases = [
            ("$(SVC)", json!("p-svc")),
            ("$(PORT)", json!(8080)),
            ("pre$(PORT)", json!("pre8080")),
            ("x-$(PORT)-$$(SVC)-$(NOPE)-$(SVC", json!("x-8080-$(SVC)-$(NOPE)-$(SVC")),
            ("no refs", json!("no refs")),
            ("cost $5", json!("cost $5")),
            ("trailing $", json!("trailing $")),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &mut vars), want, "{input}");
        }
    }

    #[test]
    fn vars_end_to_end_like_kubectl() {
        // Input, kustomization and output as measured with kubectl kustomize (namePrefix p-).
        // kubectl prints the annotation `y` as "8080": kustomize turns every annotation value
        // into a string when it strips its build annotations at the very end, after vars.
        let mut res = resources(
            "apiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: foo}\nspec:\n  ports: [{port: 8080, name: http}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: cr}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {a: \"$(SVC)\", b: \"$(PORT)\", n: 5}\n  annotations: {x: \"x-$(PORT)-$(CR)-$$(SVC)-$(NOPE)-$(SVC\", y: \"$(PORT)\"}\nspec:\n  containers:\n  - name: c\n    args: [\"$(SVC)\", \"$(PORT)\", \"pre$(PORT)\"]\n    env: [{name: E, value: \"$(PORT)\"}]\n",
        );
        let cfg = TransformerConfig::builtin();
        apply_name_prefix_suffix(&mut res, "p-", "", &cfg).unwrap();
        let declared = [
            json!({"name": "SVC", "objref": {"kind": "Service", "name": "svc", "apiVersion": "v1"}}),
            json!({"name": "PORT", "objref": {"kind": "Service", "name": "svc", "apiVersion": "v1"}, "fieldref": {"fieldpath": "spec.ports[0].port"}}),
            json!({"name": "CR", "objref": {"kind": "ClusterRole", "name": "cr", "apiVersion": "rbac.authorization.k8s.io/v1"}}),
        ];
        let mut vars = VarSet::new();
        vars.declare(&declared, &res).unwrap();
        fix_name_references(&mut res, &cfg).unwrap();
        let unused = resolve_vars(&mut res, &vars, &cfg).unwrap();
        assert!(unused.is_empty(), "{unused:?}");
        assert_eq!(
            objects(&res),
            expected("apiVersion: v1\nkind: Service\nmetadata: {name: p-svc, namespace: foo}\nspec:\n  ports: [{port: 8080, name: http}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: p-cr}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p-p\n  labels: {a: p-svc, b: 8080, n: 5}\n  annotations: {x: \"x-8080-p-cr-$(SVC)-$(NOPE)-$(SVC\", y: 8080}\nspec:\n  containers:\n  - name: c\n    args: [p-svc, 8080, pre8080]\n    env: [{name: E, value: 8080}]\n")
        );
    }

    #[test]
    fn objref_without_api_version_does_not_bind() {
        // kubectl kustomize: "var '{SVC Service.[noVer].[noGrp] {metadata.name}}' cannot be mapped
        // to a field in the set of known resources".
        let mut res = resources("apiVersion: v1\nkind: Service\nmetadata: {name: svc}\n");
        let mut vars = VarSet::new();
        vars.declare(&[json!({"name": "SVC", "objref": {"kind": "Service", "name": "svc"}})], &res).unwrap();
        let err = resolve_vars(&mut res, &vars, &TransformerConfig::builtin()).unwrap_err();
        assert!(err.to_string().contains("{SVC Service.[noVer].[noGrp] {metadata.name}}"), "{err}");
    }

    #[test]
    fn var_that_empties_a_name_is_an_error() {
        // Like kubeflow's tektoncd overlay: `name: $(generateName)` with an empty value; kubectl
        // fails with "missing metadata.name in object".
        let mut res = resources("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: params}\ndata: {generateName: ''}\n---\napiVersion: app.k8s.io/v1beta1\nkind: Application\nmetadata: {name: $(generateName)}\n");
        let mut cfg = TransformerConfig::builtin();
        cfg.var_reference.push(crate::fieldspec::FieldSpec::new("metadata/name", false));
        let mut vars = VarSet::new();
        let var = json!({"name": "generateName", "objref": {"kind": "ConfigMap", "name": "params", "apiVersion": "v1"}, "fieldref": {"fieldPath": "data.generateName"}});
        vars.declare(&[var], &res).unwrap();
        let err = resolve_vars(&mut res, &vars, &cfg).unwrap_err();
        assert!(err.to_string().contains("missing metadata.name"), "{err}");
    }

    #[test]
    fn duplicate_var_names_are_rejected() {
        let res = resources("apiVersion: v1\nkind: Service\nmetadata: {name: svc}\n");
        let var = json!({"name": "SVC", "objref": {"kind": "Service", "name": "svc", "apiVersion": "v1"}});
        let mut vars = VarSet::new();
        let err = vars.declare(&[var.clone(), var], &res).unwrap_err();
        assert!(err.to_string().contains("already encountered"), "{err}");
    }
}
