//! Name-reference fixing: after prefixes, suffixes, namespaces and generator hashes changed
//! object names, rewrite every field that referred to an object by its old name (kustomize's
//! nameReferenceTransformer and api/filters/nameref).
//!
//! For each referrer field the config lists, the referred object is chosen among the build's
//! objects by, in order: an earlier name equal to the field's value, an earlier id of the target
//! kind, the roleRef's kind (for `roleRef/name`), the referrer's namespace (cluster-scoped objects
//! and ServiceAccounts pass), and finally the prefix/suffix history shared with the referrer.
//! Fields that hold a `{name, namespace}` mapping (binding subjects, webhook services) also get
//! the referral's namespace.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{Result, TransformError, effective_namespace, gvk_of_id, original_id};
use crate::builtin_config::TransformerConfig;
use crate::fieldspec::{FieldSpec, Gvk};
use crate::resource::{ResId, Resource};

/// Rewrites name references in all objects, using the config's nameReference table.
pub fn fix_name_references(res: &mut [Resource], cfg: &TransformerConfig) -> Result<()> {
    let candidates: Vec<Candidate> = res.iter().map(Candidate::of).collect();
    for resource in res.iter_mut() {
        let referrer_gvk = gvk_of_id(&original_id(resource));
        let mut plans: Vec<(&Gvk, &FieldSpec)> = Vec::new();
        for back_ref in &cfg.name_reference {
            for spec in &back_ref.referrers {
                if spec.selects(&referrer_gvk) && spec.reaches(&resource.object) {
                    plans.push((&back_ref.gvk, spec));
                }
            }
        }
        if plans.is_empty() {
            continue;
        }
        let referrer = Referrer::of(resource)?;
        let subset = referrer.reachable(&candidates);
        for (target, spec) in plans {
            let fixer = Fixer { referrer: &referrer, target, spec, candidates: &subset };
            spec.apply_unchecked(&mut resource.object, None, &mut |node| fixer.set(node)).map_err(|source| {
                TransformError::FieldPath {
                    transformer: "nameReference",
                    resource: referrer.id.to_string(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// What nameReference needs to know about a possible referral target.
#[derive(Debug, Clone)]
struct Candidate {
    id: ResId,
    previous_ids: Vec<ResId>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    original_namespace: Option<String>,
    /// Computed once: every referrer's reachable subset asks.
    cluster_scoped: bool,
    /// kustomize's EffectiveNamespace of the current id, computed once for the same reason.
    effective_ns: Option<String>,
}

impl Candidate {
    fn of(r: &Resource) -> Candidate {
        let original = original_id(r);
        let id = r.id();
        Candidate {
            cluster_scoped: id.is_cluster_scoped(),
            effective_ns: effective_namespace(&id).map(str::to_string),
            id,
            previous_ids: r.previous_ids.clone(),
            prefixes: r.name_prefixes.clone(),
            suffixes: r.name_suffixes.clone(),
            original_namespace: effective_namespace(&original).map(str::to_string),
        }
    }

    fn is_cluster_scoped(&self) -> bool {
        self.cluster_scoped
    }
}

/// The object whose fields are being fixed.
struct Referrer {
    id: ResId,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    /// roleRef's apiGroup/kind, when the object has a complete roleRef.
    role_ref: Option<Gvk>,
    /// Namespaces of ServiceAccount subjects (RoleBindings only).
    subject_namespaces: HashSet<String>,
}

impl Referrer {
    fn of(r: &Resource) -> Result<Referrer> {
        let id = r.id();
        let role_ref = r.object.get("roleRef").and_then(Value::as_object).and_then(|role_ref| {
            let group = role_ref.get("apiGroup")?.as_str()?;
            let kind = role_ref.get("kind")?.as_str()?;
            Some(Gvk { group: group.to_string(), version: String::new(), kind: kind.to_string() })
        });
        let mut subject_namespaces = HashSet::new();
        if r.kind() == "RoleBinding"
            && let Some(Value::Array(subjects)) = r.object.get("subjects") {
                for subject in subjects.iter().filter_map(Value::as_object) {
                    let (Some(ns), Some(kind)) = (subject.get("namespace"), subject.get("kind")) else { continue };
                    if kind.as_str() != Some("ServiceAccount") {
                        continue;
                    }
                    match ns.as_str() {
                        Some(ns) => {
                            subject_namespaces.insert(ns.to_string());
                        }
                        None => {
                            return Err(TransformError::Unresolved {
                                transformer: "nameReference",
                                message: format!("invalid input: namespace is blank for resource '{id}'"),
                            });
                        }
                    }
                }
            }
        Ok(Referrer {
            id,
            prefixes: r.name_prefixes.clone(),
            suffixes: r.name_suffixes.clone(),
            role_ref,
            subject_namespaces,
        })
    }

    fn is_cluster_scoped(&self) -> bool {
        self.id.is_cluster_scoped()
    }

    /// kustomize's SubsetThatCouldBeReferencedByResource.
    fn reachable<'c>(&self, all: &'c [Candidate]) -> Vec<&'c Candidate> {
        if self.is_cluster_scoped() {
            return all.iter().collect();
        }
        let own = effective_namespace(&self.id);
        all.iter()
            .filter(|c| {
                c.is_cluster_scoped()
                    || c.effective_ns.as_deref() == own
                    || c.id.namespace.as_deref().is_some_and(|ns| self.subject_namespaces.contains(ns))
            })
            .collect()
    }
}

/// Fixes one referrer field for one target kind.
struct Fixer<'a> {
    referrer: &'a Referrer,
    target: &'a Gvk,
    spec: &'a FieldSpec,
    candidates: &'a [&'a Candidate],
}

impl Fixer<'_> {
    fn set(&self, node: &mut Value) -> std::result::Result<(), String> {
        match node {
            Value::Null => Ok(()),
            Value::String(_) => self.set_scalar(node),
            Value::Object(map) => self.set_mapping(map),
            Value::Array(items) => {
                for item in items.iter_mut() {
                    match item {
                        Value::Null => {}
                        Value::String(_) => self.set_scalar(item)?,
                        Value::Object(map) => self.set_mapping(map)?,
                        _ => return Err("a name reference list must hold strings or mappings".to_string()),
                    }
                }
                Ok(())
            }
            // Numbers and booleans cannot be names of renamed objects.
            _ => Ok(()),
        }
    }

    fn set_scalar(&self, node: &mut Value) -> std::result::Result<(), String> {
        let Value::String(old) = node else { return Ok(()) };
        if let Some(referral) = self.select(old, self.candidates.to_vec(), false)?
            && referral.id.name != *old {
                *node = Value::String(referral.id.name.clone());
            }
        Ok(())
    }

    fn set_mapping(&self, map: &mut Map<String, Value>) -> std::result::Result<(), String> {
        let Some(old) = map.get("name") else {
            return Err("path config error; no 'name' field in node".to_string());
        };
        let old = super::scalar_text(old).unwrap_or_default();
        let candidates: Vec<&Candidate> = match map.get("namespace") {
            None => self.candidates.to_vec(),
            Some(ns) => {
                let ns = super::scalar_text(ns).unwrap_or_default();
                let by_original: Vec<&Candidate> = self
                    .candidates
                    .iter()
                    .copied()
                    .filter(|c| c.original_namespace.as_deref() == Some(ns.as_str()))
                    .collect();
                if by_original.is_empty() {
                    self.candidates
                        .iter()
                        .copied()
                        .filter(|c| effective_namespace(&c.id) == Some(ns.as_str()))
                        .collect()
                } else {
                    by_original
                }
            }
        };
        let Some(referral) = self.select(&old, candidates, true)? else { return Ok(()) };
        let new_namespace = referral.id.namespace.clone().unwrap_or_default();
        if referral.id.name == old && new_namespace.is_empty() {
            return Ok(());
        }
        map.insert("name".to_string(), Value::String(referral.id.name.clone()));
        // An empty namespace would read as a wildcard, not as "default": leave the field alone.
        if !new_namespace.is_empty() {
            map.insert("namespace".to_string(), Value::String(new_namespace));
        }
        Ok(())
    }

    /// kustomize's selectReferral.
    fn select<'c>(
        &self,
        old_name: &str,
        mut candidates: Vec<&'c Candidate>,
        compare_namespaces: bool,
    ) -> std::result::Result<Option<&'c Candidate>, String> {
        candidates.retain(|c| c.previous_ids.iter().any(|id| id.name == old_name));
        candidates.retain(|c| c.previous_ids.iter().any(|id| gvk_of_id(id).is_selected_by(self.target)));
        if self.spec.path.ends_with("roleRef/name")
            && let Some(role_ref) = &self.referrer.role_ref {
                candidates.retain(|c| c.previous_ids.iter().any(|id| gvk_of_id(id).is_selected_by(role_ref)));
            }
        if !self.referrer.is_cluster_scoped() {
            let own = effective_namespace(&self.referrer.id);
            candidates.retain(|c| {
                c.is_cluster_scoped() || c.id.kind == "ServiceAccount" || c.effective_ns.as_deref() == own
            });
        }
        if candidates.len() == 1 {
            return Ok(candidates.pop());
        }
        candidates.retain(|c| self.same_affixes(c, true));
        if candidates.len() > 1 {
            candidates.retain(|c| self.same_affixes(c, false));
        }
        match candidates.len() {
            0 => Ok(None),
            1 => Ok(candidates.pop()),
            _ => {
                let first = candidates[0];
                let all_same = candidates.iter().all(|c| {
                    c.id.name == first.id.name && (!compare_namespaces || c.id.namespace == first.id.namespace)
                });
                if all_same {
                    Ok(Some(first))
                } else {
                    let ids: Vec<String> = candidates.iter().map(|c| c.id.to_string()).collect();
                    Err(format!("found multiple possible referrals: {}", ids.join(", ")))
                }
            }
        }
    }

    /// kustomize's PrefixesSuffixesEquals; with `allow_empty`, an empty history matches anything.
    fn same_affixes(&self, c: &Candidate, allow_empty: bool) -> bool {
        let matches = |mine: &[String], theirs: &[String]| {
            (allow_empty && (mine.is_empty() || theirs.is_empty())) || same_ending(mine, theirs)
        };
        matches(&self.referrer.prefixes, &c.prefixes) && matches(&self.referrer.suffixes, &c.suffixes)
    }
}

/// Whether the shorter list is a tail of the longer (kustomize's SameEndingSubSlice).
fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.is_empty();
    }
    long.ends_with(short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::test_support::{expected, objects, resources};
    use crate::transform::{apply_name_prefix_suffix, apply_namespace};

    /// Runs namespace, prefix/suffix and name-reference fixing as one kustomization would.
    fn build(input: &str, namespace: &str, prefix: &str, suffix: &str) -> Vec<Value> {
        let cfg = TransformerConfig::builtin();
        let mut res = resources(input);
        apply_namespace(&mut res, namespace, &cfg).unwrap();
        apply_name_prefix_suffix(&mut res, prefix, suffix, &cfg).unwrap();
        fix_name_references(&mut res, &cfg).unwrap();
        objects(&res)
    }

    #[test]
    fn name_reference_table() {
        // (name, namespace, prefix, input, expected); expected outputs measured with kubectl kustomize.
        let cases = [
            (
                "pod spec references follow renamed configmaps, secrets, service accounts and claims",
                "",
                "p-",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: sec}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: pvc}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      serviceAccountName: sa\n      containers:\n      - name: c\n        envFrom: [{configMapRef: {name: cm}}, {secretRef: {name: sec}}]\n        env: [{name: E, valueFrom: {configMapKeyRef: {name: cm, key: k}}}, {name: F, valueFrom: {configMapKeyRef: {name: other, key: k}}}]\n      volumes:\n      - {name: v, persistentVolumeClaim: {claimName: pvc}}\n      - {name: w, secret: {secretName: sec}}\n",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p-cm}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: p-sec}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: p-sa}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: p-pvc}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: p-d}\nspec:\n  template:\n    spec:\n      serviceAccountName: p-sa\n      containers:\n      - name: c\n        envFrom: [{configMapRef: {name: p-cm}}, {secretRef: {name: p-sec}}]\n        env: [{name: E, valueFrom: {configMapKeyRef: {name: p-cm, key: k}}}, {name: F, valueFrom: {configMapKeyRef: {name: other, key: k}}}]\n      volumes:\n      - {name: v, persistentVolumeClaim: {claimName: p-pvc}}\n      - {name: w, secret: {secretName: p-sec}}\n",
            ),
            (
                "binding subjects and roleRef: namespace and name of the service account, role by kind",
                "ns1",
                "p-",
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: role}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: role}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: crb}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: role}\nsubjects:\n- {kind: ServiceAccount, name: sa, namespace: default}\n- {kind: ServiceAccount, name: sa2, namespace: elsewhere}\n- {kind: User, name: sa}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: rb}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: role}\nsubjects:\n- {kind: ServiceAccount, name: sa}\n",
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: p-sa, namespace: ns1}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: p-role}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: p-role, namespace: ns1}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: p-crb}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: p-role}\nsubjects:\n- {kind: ServiceAccount, name: p-sa, namespace: ns1}\n- {kind: ServiceAccount, name: sa2, namespace: elsewhere}\n- {kind: User, name: p-sa, namespace: ns1}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: p-rb, namespace: ns1}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: p-role}\nsubjects:\n- {kind: ServiceAccount, name: p-sa, namespace: ns1}\n",
            ),
            (
                "webhook service reference: renamed unless it names another namespace",
                "ns1",
                "p-",
                "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: mwc}\nwebhooks:\n- name: a\n  clientConfig:\n    service: {name: svc, namespace: old}\n- name: b\n  clientConfig:\n    service: {name: svc}\n",
                "apiVersion: v1\nkind: Service\nmetadata: {name: p-svc, namespace: ns1}\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: p-mwc}\nwebhooks:\n- name: a\n  clientConfig:\n    service: {name: svc, namespace: old}\n- name: b\n  clientConfig:\n    service: {name: p-svc, namespace: ns1}\n",
            ),
        ];
        for (name, namespace, prefix, input, want) in cases {
            assert_eq!(build(input, namespace, prefix, ""), expected(want), "{name}");
        }
    }

    #[test]
    fn same_ending_lists() {
        let v = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_ending(&v(&[]), &v(&[])));
        assert!(!same_ending(&v(&[]), &v(&["a"])));
        assert!(same_ending(&v(&["b"]), &v(&["a", "b"])));
        assert!(!same_ending(&v(&["a"]), &v(&["a", "b"])));
    }
}
