//! Patch target selection, as kustomize's `resmap.Select` does it: group, version, kind, name and
//! namespace as anchored regular expressions (empty = any; name and namespace match the resource's
//! original or current id), and Kubernetes label/annotation selectors.

use serde_json::{Map, Value};

use crate::kustomization::Selector;
use crate::resource::{ResId, Resource};

/// A selector that failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// `name` or `namespace` is not a valid regular expression.
    #[error("invalid {field} regex {pattern:?} in patch target: {message}")]
    Regex { field: &'static str, pattern: String, message: String },
    /// A label or annotation selector does not parse.
    #[error("invalid {field} {selector:?}: {message}")]
    LabelSelector { field: &'static str, selector: String, message: String },
}

/// The fields of a `target:` with absent ones as empty strings (kustomize's zero values).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// API group, an anchored regular expression; empty selects any.
    pub group: String,
    /// API version, an anchored regular expression; empty selects any.
    pub version: String,
    /// Kind, an anchored regular expression; empty selects any.
    pub kind: String,
    /// Name, an RE2 regular expression anchored at both ends; empty selects any.
    pub name: String,
    /// Namespace, an anchored regular expression; `default` also matches "no namespace".
    pub namespace: String,
    /// Kubernetes label selector, e.g. `app=a,tier in (web,api),!canary`.
    pub label_selector: String,
    /// Kubernetes label selector syntax, applied to annotations.
    pub annotation_selector: String,
}

impl From<&Selector> for Target {
    fn from(s: &Selector) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Target {
            group: text(&s.group),
            version: text(&s.version),
            kind: text(&s.kind),
            name: text(&s.name),
            namespace: text(&s.namespace),
            label_selector: text(&s.label_selector),
            annotation_selector: text(&s.annotation_selector),
        }
    }
}

/// A compiled patch target.
#[derive(Debug, Clone)]
pub struct CompiledSelector {
    selector: Target,
    group: Option<regex::Regex>,
    version: Option<regex::Regex>,
    kind: Option<regex::Regex>,
    name: Option<regex::Regex>,
    namespace: Option<regex::Regex>,
    labels: LabelSelector,
    annotations: LabelSelector,
}

fn anchored(field: &'static str, pattern: &str) -> Result<Option<regex::Regex>, SelectorError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(&format!("^(?:{pattern})$")).map(Some).map_err(|e| SelectorError::Regex {
        field,
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}

/// Compile a kustomization `target:` (regexes anchored like kustomize's `SelectorRegex`).
pub fn compile(selector: &Selector) -> Result<CompiledSelector, SelectorError> {
    Target::from(selector).compile()
}

impl Target {
    /// Compile the regexes and label selectors.
    pub fn compile(&self) -> Result<CompiledSelector, SelectorError> {
        let parse = |field: &'static str, text: &str| {
            LabelSelector::parse(text).map_err(|message| SelectorError::LabelSelector {
                field,
                selector: text.to_string(),
                message,
            })
        };
        Ok(CompiledSelector {
            selector: self.clone(),
            group: anchored("group", &self.group)?,
            version: anchored("version", &self.version)?,
            kind: anchored("kind", &self.kind)?,
            name: anchored("name", &self.name)?,
            namespace: anchored("namespace", &self.namespace)?,
            labels: parse("labelSelector", &self.label_selector)?,
            annotations: parse("annotationSelector", &self.annotation_selector)?,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (k, v) in [
            ("group", &self.group),
            ("version", &self.version),
            ("kind", &self.kind),
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("labelSelector", &self.label_selector),
            ("annotationSelector", &self.annotation_selector),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={v}"));
            }
        }
        write!(f, "{{{}}}", parts.join(", "))
    }
}

/// kustomize's `ResId.EffectiveNamespace`: a name for "no namespace" that compares equal to
/// `default` for namespaced kinds, and a marker for cluster-scoped kinds.
pub fn effective_namespace(id: &ResId) -> String {
    if id.is_cluster_scoped() {
        return "_non_namespaceable_".to_string();
    }
    match id.namespace.as_deref() {
        None | Some("") => "default".to_string(),
        Some(ns) => ns.to_string(),
    }
}

/// kustomize's `ResId.Equals`: same group, version, kind, name and effective namespace.
pub fn ids_equal(a: &ResId, b: &ResId) -> bool {
    a.group == b.group
        && a.version == b.version
        && a.kind == b.kind
        && a.name == b.name
        && effective_namespace(a) == effective_namespace(b)
}

/// kustomize's id text, e.g. `Deployment.v1.apps/d.[noNs]`.
pub fn id_string(id: &ResId) -> String {
    id.to_string()
}

fn string_map(m: Option<&Map<String, Value>>) -> Vec<(String, String)> {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    })
    .unwrap_or_default()
}

impl CompiledSelector {
    /// The selector this was compiled from.
    pub fn selector(&self) -> &Target {
        &self.selector
    }

    /// Whether `res` is selected. Name and namespace match the original id (before prefixes and
    /// namespace changes in this build) or the current one.
    pub fn matches(&self, res: &Resource) -> bool {
        let current = res.id();
        let original = res.previous_ids.first().cloned().unwrap_or_else(|| current.clone());
        if let Some(re) = &self.namespace
            && !re.is_match(&effective_namespace(&original))
            && !re.is_match(&effective_namespace(&current))
        {
            return false;
        }
        if let Some(re) = &self.name
            && !re.is_match(&original.name)
            && !re.is_match(&current.name)
        {
            return false;
        }
        let gvk_matches = [(&self.group, &current.group), (&self.version, &current.version), (&self.kind, &current.kind)]
            .into_iter()
            .all(|(re, value)| re.as_ref().is_none_or(|re| re.is_match(value)));
        if !gvk_matches {
            return false;
        }
        self.labels.matches(&string_map(res.labels())) && self.annotations.matches(&string_map(res.annotations()))
    }

    /// Indexes of the selected resources, in order.
    pub fn select(&self, resources: &[Resource]) -> Vec<usize> {
        resources.iter().enumerate().filter(|(_, r)| self.matches(r)).map(|(i, _)| i).collect()
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    DoesNotExist(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed Kubernetes label selector (`k8s.io/apimachinery/pkg/labels.Parse` syntax).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '>' => {
                out.push(Token::Gt);
                i += 1;
            }
            '<' => {
                out.push(Token::Lt);
                i += 1;
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Token::DoubleEq);
                    i += 2;
                } else {
                    out.push(Token::Eq);
                    i += 1;
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Token::NotEq);
                    i += 2;
                } else {
                    out.push(Token::Not);
                    i += 1;
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !",()<>=!".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                });
            }
        }
    }
    Ok(out)
}

impl LabelSelector {
    /// Parse a selector; the empty string selects everything.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let tokens = lex(text)?;
        let mut requirements = Vec::new();
        let mut pos = 0;
        let ident = |pos: usize| match tokens.get(pos) {
            Some(Token::Ident(s)) => Some(s.clone()),
            // `in`/`notin` are valid label keys and values when they are not operators.
            Some(Token::In) => Some("in".to_string()),
            Some(Token::NotIn) => Some("notin".to_string()),
            _ => None,
        };
        while pos < tokens.len() {
            if tokens[pos] == Token::Not {
                let key = ident(pos + 1).ok_or_else(|| format!("expected a key after '!' at token {}", pos + 1))?;
                requirements.push(Requirement::DoesNotExist(key));
                pos += 2;
            } else {
                let key = ident(pos).ok_or_else(|| format!("expected a key at token {pos}"))?;
                pos += 1;
                match tokens.get(pos) {
                    None | Some(Token::Comma) => requirements.push(Requirement::Exists(key)),
                    Some(Token::Eq | Token::DoubleEq | Token::NotEq) => {
                        let negate = tokens[pos] == Token::NotEq;
                        pos += 1;
                        // `key=` selects the empty value.
                        let value = match tokens.get(pos) {
                            Some(Token::Ident(v)) => {
                                pos += 1;
                                v.clone()
                            }
                            Some(Token::In) | Some(Token::NotIn) => {
                                pos += 1;
                                ident(pos - 1).unwrap_or_default()
                            }
                            None | Some(Token::Comma) => String::new(),
                            Some(other) => return Err(format!("unexpected {other:?} after operator")),
                        };
                        requirements.push(if negate {
                            Requirement::NotIn(key, vec![value])
                        } else {
                            Requirement::In(key, vec![value])
                        });
                    }
                    Some(Token::In | Token::NotIn) => {
                        let negate = tokens[pos] == Token::NotIn;
                        pos += 1;
                        if tokens.get(pos) != Some(&Token::Open) {
                            return Err("expected '(' after in/notin".into());
                        }
                        pos += 1;
                        let mut values = Vec::new();
                        loop {
                            match tokens.get(pos) {
                                Some(Token::Close) => {
                                    pos += 1;
                                    break;
                                }
                                Some(Token::Comma) => pos += 1,
                                Some(_) if ident(pos).is_some() => {
                                    values.push(ident(pos).unwrap_or_default());
                                    pos += 1;
                                }
                                _ => return Err("unterminated value set".into()),
                            }
                        }
                        if values.is_empty() {
                            return Err("for 'in', 'notin' operators, values set can't be empty".into());
                        }
                        requirements.push(if negate { Requirement::NotIn(key, values) } else { Requirement::In(key, values) });
                    }
                    Some(Token::Gt | Token::Lt) => {
                        let greater = tokens[pos] == Token::Gt;
                        pos += 1;
                        let n: i64 = ident(pos)
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| "expected an integer after '>' or '<'".to_string())?;
                        pos += 1;
                        requirements.push(if greater { Requirement::GreaterThan(key, n) } else { Requirement::LessThan(key, n) });
                    }
                    Some(other) => return Err(format!("unexpected {other:?} after key {key:?}")),
                }
            }
            match tokens.get(pos) {
                None => {}
                Some(Token::Comma) => {
                    pos += 1;
                    if pos == tokens.len() {
                        return Err("trailing ','".into());
                    }
                }
                Some(other) => return Err(format!("expected ',' but found {other:?}")),
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether a label (or annotation) set satisfies every requirement.
    pub fn matches(&self, set: &[(String, String)]) -> bool {
        let get = |k: &str| set.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        self.requirements.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Requirement::GreaterThan(k, n) => get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            Requirement::LessThan(k, n) => get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Origin;
    use serde_json::json;

    fn resource(v: Value) -> Resource {
        let Value::Object(object) = v else { panic!("not a map") };
        Resource::new(object, Origin::default())
    }

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors() {
        let labels = set(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app in (web, api)", true),
            ("app notin (web,api)", false),
            ("missing notin (a)", true),
            ("app=web,tier=back", false),
            ("app=web, tier in (front)", true),
            ("n>4", true),
            ("n<5", false),
        ];
        for (text, want) in cases {
            let sel = LabelSelector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(sel.matches(&labels), *want, "{text}");
        }
        for bad in ["app in ()", "app in (a", "app=web,", "=x", "app ) x"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn selector_matches_gvk_anchored_regex_namespace_and_labels() {
        let deploy = resource(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web-api", "labels": {"app": "web"}, "annotations": {"team": "a"}}}));
        let sa = resource(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "kf"}}));
        let sel = |s: Target| s.compile().expect("compiles");
        let cases: Vec<(Target, bool, bool)> = vec![
            (Target::default(), true, true),
            (Target { kind: "Deployment".into(), ..Default::default() }, true, false),
            (Target { kind: "Deploy".into(), ..Default::default() }, false, false),
            (Target { kind: "Service|Deployment".into(), ..Default::default() }, true, false),
            (Target { kind: "Service.*".into(), ..Default::default() }, false, true),
            (Target { group: "apps".into(), version: "v1".into(), ..Default::default() }, true, false),
            (Target { name: "web".into(), ..Default::default() }, false, true),
            (Target { name: "web.*".into(), ..Default::default() }, true, true),
            (Target { name: "api|web-api".into(), ..Default::default() }, true, false),
            (Target { namespace: "default".into(), ..Default::default() }, true, false),
            (Target { namespace: "k.".into(), ..Default::default() }, false, true),
            (Target { label_selector: "app=web".into(), ..Default::default() }, true, false),
            (Target { annotation_selector: "team in (a,b)".into(), ..Default::default() }, true, false),
        ];
        for (s, want_deploy, want_sa) in cases {
            let text = s.to_string();
            let c = sel(s);
            assert_eq!(c.matches(&deploy), want_deploy, "{text} on Deployment");
            assert_eq!(c.matches(&sa), want_sa, "{text} on ServiceAccount");
        }
    }

    #[test]
    fn name_matches_the_original_name_too() {
        let mut res = resource(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}}));
        res.rename("prefix-svc");
        let by_old = Target { name: "svc".into(), ..Default::default() }.compile().expect("compiles");
        let by_new = Target { name: "prefix-svc".into(), ..Default::default() }.compile().expect("compiles");
        assert!(by_old.matches(&res));
        assert!(by_new.matches(&res));
    }

    #[test]
    fn ids_print_like_kustomize() {
        let id = ResId { group: "apps".into(), version: "v1".into(), kind: "Deployment".into(), name: "d".into(), namespace: None };
        assert_eq!(id_string(&id), "Deployment.v1.apps/d.[noNs]");
        let core = ResId { group: String::new(), version: "v1".into(), kind: "Service".into(), name: "s".into(), namespace: Some("kf".into()) };
        assert_eq!(id_string(&core), "Service.v1.[noGrp]/s.kf");
        let with_default = ResId { namespace: Some("default".into()), ..id.clone() };
        assert!(ids_equal(&id, &with_default));
    }
}
