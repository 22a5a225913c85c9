//! Asking the API server what the current user may do (SelfSubjectAccessReview), and getting
//! its own words for a denial (which name the user) without changing anything.

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use kube::Client;

/// Whether the current user may `verb` `resource` in `group` (in `namespace`, or cluster-wide).
pub async fn can_i(client: &Client, verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: namespace.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// The API server's own message for a denied `verb` (it names the user), obtained with a
/// dry-run request that authorization rejects before anything else looks at it.
pub async fn describe_denial(client: &Client, verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> String {
    let base = if group.is_empty() { "/api/v1".to_owned() } else { format!("/apis/{group}/v1") };
    let scope = namespace.map(|ns| format!("/namespaces/{ns}")).unwrap_or_default();
    let collection = format!("{base}{scope}/{resource}");
    let request = match verb {
        "create" => http::Request::post(format!("{collection}?dryRun=All"))
            .header("Content-Type", "application/json")
            .body(b"{}".to_vec()),
        _ => http::Request::patch(format!("{collection}/kfctl-access-check?dryRun=All"))
            .header("Content-Type", "application/merge-patch+json")
            .body(b"{}".to_vec()),
    };
    let fallback = || {
        let what = if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") };
        match namespace {
            Some(ns) => format!("cannot {verb} {what} in namespace {ns}"),
            None => format!("cannot {verb} {what} (cluster-wide)"),
        }
    };
    let Ok(request) = request else { return fallback() };
    match client.request_text(request).await {
        Err(kube::Error::Api(status)) if status.code == 403 && !status.message.is_empty() => status.message.clone(),
        _ => fallback(),
    }
}
