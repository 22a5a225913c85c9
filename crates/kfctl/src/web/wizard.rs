//! What the wizard sends, and its validation on the server.
//!
//! The browser checks fields too, for quick feedback, but only this module decides: every field
//! is checked here (names are DNS-1123, emails look like emails, sizes are bounded, platform
//! fields match what the cloud accepts, components come from the catalog) before anything is
//! written or run. A kubeconfig path typed into the wizard is the one path a request may carry; it
//! must be absolute and plain (no `..`), name a regular file of bounded size, and parse as a
//! kubeconfig, and its content is never echoed back.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The password upstream Kubeflow ships for user@example.com; a deployment must not keep it.
pub const UPSTREAM_DEFAULT_PASSWORD: &str = "12341234";
/// Largest kubeconfig accepted (upload or server path).
pub const MAX_KUBECONFIG_BYTES: usize = 256 * 1024;

/// The wizard's answers, as the browser sends them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentForm {
    pub name: String,
    pub version: String,
    pub platform: PlatformForm,
    pub components: Vec<String>,
    pub user: UserForm,
}

/// The default user's login.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserForm {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for UserForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserForm").field("email", &self.email).field("password", &"<redacted>").finish()
    }
}

/// The platform step: which kind, with the fields that kind needs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PlatformForm {
    /// A cluster that already exists, reached through a kubeconfig.
    Existing { kubeconfig: KubeconfigSource, context: Option<String> },
    Kind { cluster_name: String },
    Minikube { profile: String },
    Microk8s {},
    K3d { cluster_name: String },
    Gke { project: String, region: String, cluster_name: String, machine_type: String, nodes: u32 },
    Eks { region: String, cluster_name: String, instance_type: String, nodes: u32 },
    Aks { subscription: String, resource_group: String, location: String, cluster_name: String, vm_size: String, nodes: u32 },
}

impl PlatformForm {
    /// The platform kind's name as kfctl.yaml spells it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            PlatformForm::Existing { .. } => "existing",
            PlatformForm::Kind { .. } => "kind",
            PlatformForm::Minikube { .. } => "minikube",
            PlatformForm::Microk8s {} => "microk8s",
            PlatformForm::K3d { .. } => "k3d",
            PlatformForm::Gke { .. } => "gke",
            PlatformForm::Eks { .. } => "eks",
            PlatformForm::Aks { .. } => "aks",
        }
    }

    /// Whether the platform is created by generated Terraform (and so has a plan to review).
    pub fn is_cloud(&self) -> bool {
        matches!(self, PlatformForm::Gke { .. } | PlatformForm::Eks { .. } | PlatformForm::Aks { .. })
    }
}

/// Where an `existing` platform's kubeconfig comes from.
#[derive(Clone, Deserialize, Serialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum KubeconfigSource {
    /// The file's content, uploaded from the browser.
    Upload { content: String },
    /// A file on the server's machine.
    ServerPath { path: String },
}

impl std::fmt::Debug for KubeconfigSource {
    // An uploaded kubeconfig is a credential: never print its content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KubeconfigSource::Upload { content } => write!(f, "Upload(<{} bytes redacted>)", content.len()),
            KubeconfigSource::ServerPath { path } => f.debug_struct("ServerPath").field("path", path).finish(),
        }
    }
}

/// One field the server refused, named as the form names it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A component the wizard can offer, from the release's catalog.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentChoice {
    pub name: String,
    pub description: String,
    /// Part of the base set: preselected in the wizard.
    pub default: bool,
    /// Components this one needs; the wizard explains and adds them.
    pub requires: Vec<String>,
}

/// A kubeconfig checked to parse, with its credentials kept out of `Debug`.
#[derive(Clone)]
pub struct CheckedKubeconfig {
    /// Where it lives on the server, when it was given as a path.
    pub path: Option<PathBuf>,
    /// The file's text.
    pub content: String,
    /// Context names it defines.
    pub contexts: Vec<String>,
    pub current_context: Option<String>,
}

impl std::fmt::Debug for CheckedKubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedKubeconfig").field("path", &self.path).field("contexts", &self.contexts).finish_non_exhaustive()
    }
}

impl CheckedKubeconfig {
    /// Secret values inside it (keys, tokens, passwords), to keep out of downloads.
    pub fn secret_values(&self) -> Vec<String> {
        let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(&self.content) else { return Vec::new() };
        let mut out = Vec::new();
        if let Some(users) = value.get("users").and_then(|u| u.as_array()) {
            for user in users {
                if let Some(fields) = user.get("user").and_then(|u| u.as_object()) {
                    for key in ["client-key-data", "client-certificate-data", "token", "password"] {
                        if let Some(text) = fields.get(key).and_then(|v| v.as_str()) {
                            out.push(text.to_string());
                        }
                    }
                }
            }
        }
        out
    }
}

/// Collects field errors while checking a form.
#[derive(Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_string(), message: message.into() });
    }

    fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(message) = result {
            self.fail(field, message);
        }
    }

    /// The errors found, if any.
    pub fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }
}

/// A DNS-1123 label: lowercase letters, digits and `-`, starting and ending alphanumeric, 1-63.
pub fn dns1123_label(text: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok { Ok(()) } else { Err("use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit".into()) }
}

/// A plausible email address: one `@`, a local part without spaces, a dotted domain of DNS labels.
pub fn email(text: &str) -> Result<(), String> {
    let err = || Err("enter an email address like user@example.com".to_string());
    if text.len() > 254 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err();
    }
    let Some((local, domain)) = text.split_once('@') else { return err() };
    if local.is_empty() || local.len() > 64 || domain.contains('@') || !domain.contains('.') {
        return err();
    }
    let labels_ok = domain.split('.').all(|label| {
        let lower = label.to_ascii_lowercase();
        !lower.is_empty() && dns1123_label(&lower).is_ok()
    });
    let local_ok = local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    if labels_ok && local_ok { Ok(()) } else { err() }
}

/// The default user's new password.
pub fn password(text: &str, email: &str) -> Result<(), String> {
    if text == UPSTREAM_DEFAULT_PASSWORD {
        return Err("this is the upstream default password; choose your own".into());
    }
    if text.len() < 10 {
        return Err("use at least 10 characters".into());
    }
    // bcrypt, which Dex uses to store it, reads only the first 72 bytes.
    if text.len() > 72 {
        return Err("use at most 72 bytes".into());
    }
    if text.chars().any(|c| c.is_control()) {
        return Err("control characters are not allowed".into());
    }
    if text.eq_ignore_ascii_case(email) {
        return Err("the password must not be the email address".into());
    }
    Ok(())
}

fn pattern(text: &str, min: usize, max: usize, allowed: impl Fn(char) -> bool, what: &str) -> Result<(), String> {
    if (min..=max).contains(&text.len()) && text.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!("{what} ({min}-{max} characters)"))
    }
}

/// A GCP project id: 6-30 of lowercase letters, digits, `-`; starts with a letter.
fn gcp_project(text: &str) -> Result<(), String> {
    let ok = (6..=30).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && !text.ends_with('-')
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err("a GCP project id: 6-30 lowercase letters, digits and '-', starting with a letter".into()) }
}

/// A cloud region or zone name like `us-central1`, `eu-west-1`, `westeurope`.
fn region(text: &str) -> Result<(), String> {
    pattern(text, 2, 40, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-', "lowercase letters, digits and '-'")
}

/// A machine/instance/VM size like `e2-standard-8`, `m5.2xlarge`, `Standard_D8s_v3`.
fn machine_type(text: &str) -> Result<(), String> {
    pattern(text, 2, 64, |c| c.is_ascii_alphanumeric() || "._-".contains(c), "letters, digits, '.', '_' and '-'")
}

fn node_count(nodes: u32) -> Result<(), String> {
    if (1..=100).contains(&nodes) { Ok(()) } else { Err("between 1 and 100 nodes".into()) }
}

fn uuid(text: &str) -> Result<(), String> {
    let groups: Vec<&str> = text.split('-').collect();
    let ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok { Ok(()) } else { Err("an Azure subscription id (a UUID like 00000000-0000-0000-0000-000000000000)".into()) }
}

fn resource_group(text: &str) -> Result<(), String> {
    let base = pattern(text, 1, 90, |c| c.is_ascii_alphanumeric() || "._()-".contains(c), "letters, digits and . _ ( ) -");
    if base.is_ok() && text.ends_with('.') { Err("must not end with '.'".into()) } else { base }
}

fn context_name(text: &str) -> Result<(), String> {
    pattern(text, 1, 253, |c| !c.is_control(), "a kubeconfig context name")
}

/// Parses kubeconfig text (never echoing it) and lists its contexts.
pub fn parse_kubeconfig(content: String, path: Option<PathBuf>) -> Result<CheckedKubeconfig, String> {
    if content.len() > MAX_KUBECONFIG_BYTES {
        return Err(format!("the kubeconfig is larger than {} KiB", MAX_KUBECONFIG_BYTES / 1024));
    }
    let value: serde_json::Value =
        serde_saphyr::from_str(&content).map_err(|_| "this is not a kubeconfig (it does not parse as YAML)".to_string())?;
    if value.get("kind").and_then(|k| k.as_str()) != Some("Config") || value.get("clusters").and_then(|c| c.as_array()).is_none() {
        return Err("this is not a kubeconfig (expected `kind: Config` with `clusters`)".into());
    }
    let contexts: Vec<String> = value
        .get("contexts")
        .and_then(|c| c.as_array())
        .map(|list| list.iter().filter_map(|c| c.get("name").and_then(|n| n.as_str()).map(String::from)).collect())
        .unwrap_or_default();
    if contexts.is_empty() {
        return Err("the kubeconfig defines no contexts".into());
    }
    let current_context = value.get("current-context").and_then(|c| c.as_str()).map(String::from);
    Ok(CheckedKubeconfig { path, content, contexts, current_context })
}

/// Checks a kubeconfig path typed into the wizard and reads it. Blocking (reads a file).
pub fn read_server_kubeconfig(text: &str) -> Result<CheckedKubeconfig, String> {
    if text.len() > 4096 || text.chars().any(|c| c.is_control()) {
        return Err("enter an absolute path to a kubeconfig file on the server".into());
    }
    let path = Path::new(text);
    if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
        return Err("enter an absolute path without '.' or '..' parts".into());
    }
    // Generic messages from here on: a request must not learn which files exist on the server.
    let unreadable = || "no readable kubeconfig file at this path".to_string();
    let meta = std::fs::metadata(path).map_err(|_| unreadable())?;
    if !meta.is_file() || meta.len() > MAX_KUBECONFIG_BYTES as u64 {
        return Err(unreadable());
    }
    let content = std::fs::read_to_string(path).map_err(|_| unreadable())?;
    parse_kubeconfig(content, Some(path.to_path_buf())).map_err(|_| unreadable())
}

/// A form that passed every check, with its kubeconfig read.
#[derive(Debug, Clone)]
pub struct CheckedDeployment {
    pub form: DeploymentForm,
    /// The components to enable: the chosen ones plus everything they require.
    pub components: Vec<String>,
    pub kubeconfig: Option<CheckedKubeconfig>,
}

/// Checks every field of `form`. `versions` are the versions this server can deploy; `catalog` is
/// the chosen version's catalog. Blocking (may read a kubeconfig file).
pub fn check(form: DeploymentForm, versions: &[String], catalog: &[ComponentChoice]) -> Result<CheckedDeployment, Vec<FieldError>> {
    let mut checks = Checks::default();
    checks.check("name", dns1123_label(&form.name));
    if !versions.contains(&form.version) {
        checks.fail("version", format!("choose one of: {}", versions.join(", ")));
    }
    checks.check("user.email", email(&form.user.email));
    checks.check("user.password", password(&form.user.password, &form.user.email));

    let mut kubeconfig = None;
    match &form.platform {
        PlatformForm::Existing { kubeconfig: source, context } => {
            let checked = match source {
                KubeconfigSource::Upload { content } => parse_kubeconfig(content.clone(), None),
                KubeconfigSource::ServerPath { path } => read_server_kubeconfig(path),
            };
            match checked {
                Err(message) => checks.fail("platform.kubeconfig", message),
                Ok(checked) => {
                    if let Some(context) = context {
                        match context_name(context) {
                            Err(message) => checks.fail("platform.context", message),
                            Ok(()) if !checked.contexts.contains(context) => {
                                checks.fail("platform.context", format!("the kubeconfig has no such context; it has: {}", checked.contexts.join(", ")))
                            }
                            Ok(()) => {}
                        }
                    } else if checked.current_context.is_none() {
                        checks.fail("platform.context", "the kubeconfig has no current-context; choose one");
                    }
                    kubeconfig = Some(checked);
                }
            }
        }
        PlatformForm::Kind { cluster_name } | PlatformForm::K3d { cluster_name } => {
            checks.check("platform.cluster_name", dns1123_label(cluster_name));
        }
        PlatformForm::Minikube { profile } => checks.check("platform.profile", dns1123_label(profile)),
        PlatformForm::Microk8s {} => {}
        PlatformForm::Gke { project, region: r, cluster_name, machine_type: m, nodes } => {
            checks.check("platform.project", gcp_project(project));
            checks.check("platform.region", region(r));
            checks.check("platform.cluster_name", dns1123_label(cluster_name));
            checks.check("platform.machine_type", machine_type(m));
            checks.check("platform.nodes", node_count(*nodes));
        }
        PlatformForm::Eks { region: r, cluster_name, instance_type, nodes } => {
            checks.check("platform.region", region(r));
            checks.check("platform.cluster_name", dns1123_label(cluster_name));
            checks.check("platform.instance_type", machine_type(instance_type));
            checks.check("platform.nodes", node_count(*nodes));
        }
        PlatformForm::Aks { subscription, resource_group: group, location, cluster_name, vm_size, nodes } => {
            checks.check("platform.subscription", uuid(subscription));
            checks.check("platform.resource_group", resource_group(group));
            checks.check("platform.location", region(location));
            checks.check("platform.cluster_name", dns1123_label(cluster_name));
            checks.check("platform.vm_size", machine_type(vm_size));
            checks.check("platform.nodes", node_count(*nodes));
        }
    }

    let components = match resolve_components(&form.components, catalog) {
        Ok(list) => list,
        Err(message) => {
            checks.fail("components", message);
            Vec::new()
        }
    };
    checks.into_result()?;
    Ok(CheckedDeployment { form, components, kubeconfig })
}

/// The chosen components plus, transitively, what they require; in catalog order.
pub fn resolve_components(chosen: &[String], catalog: &[ComponentChoice]) -> Result<Vec<String>, String> {
    if chosen.is_empty() {
        return Err("choose at least one component".into());
    }
    if chosen.len() > catalog.len() {
        return Err("more components than the catalog has".into());
    }
    let mut wanted = BTreeSet::new();
    let mut queue: Vec<&str> = Vec::new();
    for name in chosen {
        if !catalog.iter().any(|c| &c.name == name) {
            return Err(format!("unknown component {:?}; the catalog has: {}", truncate(name), catalog.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")));
        }
        queue.push(name);
    }
    while let Some(name) = queue.pop() {
        if !wanted.insert(name.to_string()) {
            continue;
        }
        if let Some(choice) = catalog.iter().find(|c| c.name == name) {
            queue.extend(choice.requires.iter().map(String::as_str));
        }
    }
    Ok(catalog.iter().filter(|c| wanted.contains(&c.name)).map(|c| c.name.clone()).collect())
}

/// Request text echoed in an error is cut short, so a huge value cannot blow up the response.
fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["kubeflow", "a", "kf-1", "0abc"] {
            assert!(dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Kubeflow", "a_b", "a.b", "../x", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_and_passwords() {
        for ok in ["user@example.com", "first.last+kf@sub.example.org"] {
            assert!(email(ok).is_ok(), "{ok}");
        }
        for bad in ["", "user", "user@", "@example.com", "user@example", "us er@example.com", "user@exa_mple.com", "a@b@c.com"] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(password("12341234", "u@example.com").unwrap_err().contains("upstream default"));
        assert!(password("short", "u@example.com").is_err());
        assert!(password("u@example.com", "u@example.com").is_err());
        assert!(password(&"x".repeat(73), "u@example.com").is_err());
        assert!(password("correct horse battery", "u@example.com").is_ok());
    }

    #[test]
    fn cloud_fields() {
        assert!(gcp_project("my-project-123").is_ok());
        assert!(gcp_project("1project").is_err());
        assert!(region("us-central1").is_ok() && region("US").is_err());
        assert!(machine_type("Standard_D8s_v3").is_ok() && machine_type("m5.2xlarge").is_ok() && machine_type("a b").is_err());
        assert!(uuid("0f8fad5b-d9cb-469f-a165-70867728950e").is_ok() && uuid("nope").is_err());
        assert!(node_count(0).is_err() && node_count(3).is_ok() && node_count(1000).is_err());
    }

    fn catalog() -> Vec<ComponentChoice> {
        let c = |name: &str, default, requires: &[&str]| ComponentChoice {
            name: name.into(),
            description: String::new(),
            default,
            requires: requires.iter().map(|s| s.to_string()).collect(),
        };
        vec![c("cert-manager", true, &[]), c("istio", true, &["cert-manager"]), c("dex", true, &["istio"]), c("jupyter", false, &["istio"])]
    }

    #[test]
    fn components_pull_in_what_they_require() {
        assert_eq!(resolve_components(&["jupyter".into()], &catalog()).unwrap(), vec!["cert-manager", "istio", "jupyter"]);
        assert!(resolve_components(&["../etc".into()], &catalog()).unwrap_err().contains("unknown component"));
        assert!(resolve_components(&[], &catalog()).is_err());
    }

    #[test]
    fn kubeconfig_paths_are_checked() {
        assert!(read_server_kubeconfig("relative/config").is_err());
        assert!(read_server_kubeconfig("/tmp/../etc/passwd").is_err());
        assert_eq!(read_server_kubeconfig("/etc/passwd").unwrap_err(), "no readable kubeconfig file at this path");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "apiVersion: v1\nkind: Config\nclusters: []\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\ncurrent-context: a\nusers:\n- name: u\n  user: {token: abcdefghijkl}\n").unwrap();
        let checked = read_server_kubeconfig(path.to_str().unwrap()).unwrap();
        assert_eq!(checked.contexts, vec!["a"]);
        assert_eq!(checked.secret_values(), vec!["abcdefghijkl"]);
        assert!(!format!("{checked:?}").contains("abcdefghijkl"));
    }
}
