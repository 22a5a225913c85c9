//! Gates between apply phases: wait (by watching) until CRDs are Established or a Service has
//! ready endpoints.

use std::time::Duration;

use futures::future::{join_all, try_join_all};
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;
use kube::runtime::wait::{await_condition, conditions};

/// Wait until every named CRD is Established. Err names what is still waited for.
pub async fn crds_established(client: &Client, names: &[String], timeout: Duration) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let waits = names.iter().map(|name| {
        let api = api.clone();
        async move {
            match tokio::time::timeout(timeout, await_condition(api, name, conditions::is_crd_established())).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("CRD {name}: {e}")),
                Err(_) => Err(format!("CRD {name} not Established")),
            }
        }
    });
    try_join_all(waits).await.map(|_| ())
}

/// Whether an Endpoints object has at least one ready address.
pub fn has_ready_address(endpoints: Option<&Endpoints>) -> bool {
    endpoints
        .and_then(|e| e.subsets.as_ref())
        .is_some_and(|subsets| subsets.iter().any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty())))
}

/// Wait (watching their Endpoints) until every Service (namespace, name) has a ready endpoint
/// address, at most `timeout`. Returns the Services that still have none, each with why; empty
/// when all are ready.
pub async fn services_without_endpoints(
    client: &Client,
    services: &[(String, String)],
    timeout: Duration,
) -> Vec<((String, String), String)> {
    let waits = services.iter().map(|(ns, name)| {
        let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
        async move {
            let why = match tokio::time::timeout(timeout, await_condition(api, name, has_ready_address)).await {
                Ok(Ok(_)) => return None,
                Ok(Err(e)) => format!("watching its Endpoints failed: {e}"),
                Err(_) => format!("no ready endpoints after {}s", timeout.as_secs()),
            };
            Some(((ns.clone(), name.clone()), why))
        }
    });
    join_all(waits).await.into_iter().flatten().collect()
}
