//! HTTP: the Qovery endpoints (spec paths, no prefix) and the `/_fake/` control API.

use axum::{
    body::{Body, Bytes},
    extract::{MatchedPath, Path, RawQuery, Request, State},
    http::{header, HeaderValue, Method, StatusCode, Uri},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::registry::RegistryList;
use crate::replace::Fields;
use crate::role_check::{self, RoleDeploys};
use crate::{lock, state, Fault, RequestRecord, Seed, SeedRegistry, Shared};

const AWS_CREDENTIALS_LIST: &str = "/organization/{organizationId}/aws/credentials";
const AWS_CREDENTIALS: &str = "/organization/{organizationId}/aws/credentials/{credentialsId}";
const ORGANIZATION_CREDENTIALS: &str = "/organization/{organizationId}/credentials";
const ORGANIZATION_CLUSTER_STATUS: &str = "/organization/{organizationId}/cluster/status";
const CLUSTER_STATUS: &str = "/organization/{organizationId}/cluster/{clusterId}/status";
const CLUSTER_DEPLOY: &str = "/organization/{organizationId}/cluster/{clusterId}/deploy";
const ORGANIZATION_CLUSTERS: &str = "/organization/{organizationId}/cluster";
const CLUSTER_CLOUD_PROVIDER_INFO: &str =
    "/organization/{organizationId}/cluster/{clusterId}/cloudProviderInfo";
// The one path with no organization in it.
const CLUSTER_DNS_PROVIDER: &str = "/cluster/{clusterId}/dnsProvider";
const CONTAINER_REGISTRIES: &str = "/organization/{organizationId}/containerRegistry";
const CONTAINER_REGISTRY: &str =
    "/organization/{organizationId}/containerRegistry/{containerRegistryId}";
const HELM_REPOSITORIES: &str = "/organization/{organizationId}/helmRepository";
const HELM_REPOSITORY: &str = "/organization/{organizationId}/helmRepository/{helmRepositoryId}";

/// (method, route, operationId): how faults and the request log name a call.
pub(crate) const OPERATIONS: [(Method, &str, &str); 19] = [
    (Method::POST, AWS_CREDENTIALS_LIST, "createAWSCredentials"),
    (Method::GET, AWS_CREDENTIALS, "getAWSCredentials"),
    (Method::PUT, AWS_CREDENTIALS, "editAWSCredentials"),
    (Method::DELETE, AWS_CREDENTIALS, "deleteAWSCredentials"),
    (
        Method::GET,
        ORGANIZATION_CREDENTIALS,
        "listOrganizationCredentials",
    ),
    (
        Method::GET,
        ORGANIZATION_CLUSTER_STATUS,
        "getOrganizationClusterStatus",
    ),
    (Method::GET, CLUSTER_STATUS, "getClusterStatus"),
    (Method::POST, CLUSTER_DEPLOY, "deployCluster"),
    (
        Method::GET,
        ORGANIZATION_CLUSTERS,
        "listOrganizationCluster",
    ),
    (
        Method::GET,
        CLUSTER_CLOUD_PROVIDER_INFO,
        "getOrganizationCloudProviderInfo",
    ),
    (
        Method::POST,
        CLUSTER_CLOUD_PROVIDER_INFO,
        "specifyClusterCloudProviderInfo",
    ),
    (Method::GET, CLUSTER_DNS_PROVIDER, "getClusterDnsProvider"),
    (Method::PUT, CLUSTER_DNS_PROVIDER, "editClusterDnsProvider"),
    (Method::GET, CONTAINER_REGISTRIES, "listContainerRegistry"),
    (Method::GET, CONTAINER_REGISTRY, "getContainerRegistry"),
    (Method::PUT, CONTAINER_REGISTRY, "editContainerRegistry"),
    (Method::GET, HELM_REPOSITORIES, "listHelmRepository"),
    (Method::GET, HELM_REPOSITORY, "getHelmRepository"),
    (Method::PUT, HELM_REPOSITORY, "editHelmRepository"),
];

/// The operations whose body hands Qovery a secret key, which the fake notes whether
/// or not the call succeeds. The fake creates only role credentials, but a static
/// body sent to create some still carried its secret to Qovery's door.
const SECRET_CARRIERS: [&str; 5] = [
    "createAWSCredentials",
    "editAWSCredentials",
    "editContainerRegistry",
    "editHelmRepository",
    "editClusterDnsProvider",
];

/// The names a secret key goes by in those bodies (`config.secret_access_key` for a
/// registry, `dns_provider.credentials.aws_secret_access_key` for Route53), and by
/// mistake (`secret_key`, the old shell snippet's). A secret sent in the wrong place
/// is still a secret that went to Qovery.
const SECRET_FIELDS: [&str; 3] = ["secret_access_key", "aws_secret_access_key", "secret_key"];

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route(AWS_CREDENTIALS_LIST, post(create_aws_credentials))
        .route(
            AWS_CREDENTIALS,
            get(get_aws_credentials)
                .put(edit_aws_credentials)
                .delete(delete_aws_credentials),
        )
        .route(ORGANIZATION_CREDENTIALS, get(list_organization_credentials))
        .route(
            ORGANIZATION_CLUSTER_STATUS,
            get(get_organization_cluster_status),
        )
        .route(CLUSTER_STATUS, get(get_cluster_status))
        .route(CLUSTER_DEPLOY, post(deploy_cluster))
        .route(ORGANIZATION_CLUSTERS, get(list_organization_clusters))
        .route(
            CLUSTER_CLOUD_PROVIDER_INFO,
            get(get_cloud_provider_info).post(specify_cloud_provider_info),
        )
        .route(
            CLUSTER_DNS_PROVIDER,
            get(get_cluster_dns_provider).put(edit_cluster_dns_provider),
        )
        .route(CONTAINER_REGISTRIES, get(list_container_registries))
        .route(
            CONTAINER_REGISTRY,
            get(get_container_registry).put(edit_container_registry),
        )
        .route(HELM_REPOSITORIES, get(list_helm_repositories))
        .route(
            HELM_REPOSITORY,
            get(get_helm_repository).put(edit_helm_repository),
        )
        .route("/_fake/state", get(get_state).put(put_state))
        .route("/_fake/faults", post(post_fault))
        .route("/_fake/container_registries", post(post_container_registry))
        .route("/_fake/helm_repositories", post(post_helm_repository))
        .route("/_fake/cluster_status", post(post_cluster_status))
        .route("/_fake/role_deploys", post(post_role_deploys))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Added last so that it also wraps the fallbacks, and sees the matched route.
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// An error with the `{status, error, message}` body Qovery's docs show.
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn injected(fault: &Fault) -> Self {
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            retry_after: fault.retry_after,
            ..Self::new(status, "injected fault")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "status": self.status.as_u16(),
            "error": self.status.canonical_reason().unwrap_or("Error"),
            "message": self.message,
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Runs around every request: injected faults and authentication for the API calls,
/// then one log line and one request record. Never the body: it may carry a secret key.
async fn gate(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    if route.as_deref().is_some_and(|r| r.starts_with("/_fake/")) {
        let response = next.run(request).await;
        tracing::info!(%method, path, status = response.status().as_u16(), "control call");
        return response;
    }

    let operation = route.as_deref().and_then(|r| operation_of(&method, r));
    let hold = operation.and_then(|op| lock(&shared).take_hold(op));
    if let Some(hold) = hold {
        // Held on its way in, before anything else happens to it, until the test lets go.
        let _ = hold.reached.send(());
        let _ = hold.release.await;
    }
    let request = if operation.is_some_and(|op| SECRET_CARRIERS.contains(&op)) {
        receive_secrets(&shared, request).await
    } else {
        request
    };
    let fault = operation.and_then(|op| lock(&shared).take_fault(op));
    let response = match fault {
        None => serve(&shared, operation, request, next).await,
        Some(fault) => {
            let (request, quoted) = if fault.echo_request {
                let (request, quoted) = quote_request(request).await;
                (request, Some(quoted))
            } else {
                (request, None)
            };
            if fault.apply {
                // The call takes effect; only its answer is lost on the way back.
                serve(&shared, operation, request, next).await;
            }
            injected(&fault, quoted.as_deref())
        }
    };

    let operation = operation.unwrap_or("unknown");
    let status = response.status().as_u16();
    tracing::info!(operation, %method, path, status, "qovery api call");
    lock(&shared).record(RequestRecord {
        operation: operation.to_owned(),
        method: method.to_string(),
        path,
        status,
    });
    response
}

/// Authentication for an API call, then the call itself.
async fn serve(shared: &Shared, operation: Option<&str>, request: Request, next: Next) -> Response {
    if operation.is_some() {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !lock(shared).is_authorized(authorization) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API token; send `Authorization: Token <token>`",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Notes every secret key a PUT carries, whatever happens to the call.
async fn receive_secrets(shared: &Shared, request: Request) -> Request {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if let Ok(sent) = serde_json::from_slice::<Value>(&bytes) {
        let mut secrets = Vec::new();
        find_secrets(&sent, &mut secrets);
        let mut state = lock(shared);
        for secret in secrets {
            state.receive_secret(secret);
        }
    }
    Request::from_parts(parts, Body::from(bytes))
}

/// The strings under a `SECRET_FIELDS` name, at any depth, in document order.
fn find_secrets<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(fields) => {
            for (name, value) in fields {
                match value {
                    Value::String(s) if SECRET_FIELDS.contains(&name.as_str()) => found.push(s),
                    _ => find_secrets(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| find_secrets(v, found)),
        _ => {}
    }
}

/// The request as a gateway page would quote it (HTML, but nothing escaped: the
/// gateway this stands for misbehaves), and the request, whole again.
async fn quote_request(request: Request) -> (Request, String) {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(&name)
            .map(|v| format!("<br>\n{name}: {}", String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_default()
    };
    let quoted = format!(
        "<p>The request body it received was:</p>\n<pre>{}</pre>\n<p>Request: {} {} {:?}{}{}</p>\n",
        String::from_utf8_lossy(&bytes),
        parts.method,
        parts.uri,
        parts.version,
        header(header::AUTHORIZATION),
        header(header::CONTENT_TYPE),
    );
    (Request::from_parts(parts, Body::from(bytes)), quoted)
}

/// The answer to a call hit by `fault`: Qovery's JSON error, or a gateway's page.
fn injected(fault: &Fault, quoted: Option<&str>) -> Response {
    if let Some(location) = &fault.location {
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
        let mut response = (status, "moved").into_response();
        if let Ok(value) = HeaderValue::from_str(location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return response;
    }
    if !fault.echo_request && !fault.apply {
        return ApiError::injected(fault).into_response();
    }
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    // With a 400, a credentials PUT's secret_access_key starts at character 278 of the
    // page (for a credentials name of 8 characters): across character 300, where the
    // rotator used to cut error bodies before scrubbing them. That is how its first
    // characters leaked (issue 6); the page keeps that layout to show they no longer do.
    let what = match status.as_u16() {
        504 => "The upstream server did not answer in time.",
        s if s >= 500 => "The upstream server could not be reached.",
        _ => "The gateway refused this request: the upstream server said no.",
    };
    let quoted = quoted.unwrap_or_default();
    let page = format!(
        "<html>\n<head><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n<p>{what}</p>\n{quoted}</body>\n</html>\n"
    );
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response();
    if let Some(seconds) = fault.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn operation_of(method: &Method, route: &str) -> Option<&'static str> {
    // axum answers HEAD with the GET handler, so it must pass the same gate.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    OPERATIONS
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map(|(_, _, op)| *op)
}

fn parse_uuid(name: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| {
        ApiError::bad_request(format!("path parameter {name} {value:?} is not a UUID"))
    })
}

async fn get_aws_credentials(
    State(shared): State<Shared>,
    Path((organization_id, credentials_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let credentials_id = parse_uuid("credentialsId", &credentials_id)?;
    let state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.get_credentials(credentials_id)?))
}

async fn edit_aws_credentials(
    State(shared): State<Shared>,
    Path((organization_id, credentials_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let credentials_id = parse_uuid("credentialsId", &credentials_id)?;
    let request = StaticCredentialsRequest::parse(&body)?;
    let mut state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.edit_credentials(
        credentials_id,
        request.name,
        request.access_key_id,
        request.secret_access_key,
    )?))
}

/// The spec's `AwsStaticCredentialsRequest`, checked by hand so that each 400 names
/// the field at fault. Messages never echo a value: one of them is a secret.
struct StaticCredentialsRequest {
    name: String,
    access_key_id: String,
    secret_access_key: String,
}

impl StaticCredentialsRequest {
    const FIELDS: [&'static str; 4] = ["type", "name", "access_key_id", "secret_access_key"];

    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(ApiError::bad_request(
                "the body must be a JSON object (AwsStaticCredentialsRequest)",
            ));
        };
        match fields.get("type").and_then(Value::as_str) {
            Some("AWS_STATIC") => {}
            None => {
                return Err(ApiError::bad_request(
                    "field `type` is required and must be the string \"AWS_STATIC\"",
                ))
            }
            // Valid in Qovery (the console's edit form sends it), but it throws away the
            // static secret, which the rotator never holds: nothing could be moved back.
            Some("AWS_ROLE") => {
                return Err(ApiError::bad_request(
                    "field `type` is \"AWS_ROLE\"; this fake edits only static keys: an entry \
                     turned into a role in place loses its static key for good, so create an \
                     AWS_ROLE entry and point the clusters at it with cloudProviderInfo",
                ))
            }
            // The EKS Anywhere types are valid in Qovery; the rotator never sends them.
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "field `type` is {other:?}; this fake only accepts \"AWS_STATIC\""
                )))
            }
        }
        if let Some(unknown) = fields.keys().find(|k| !Self::FIELDS.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "field `{unknown}` is not part of AwsStaticCredentialsRequest"
            )));
        }
        let text = |name: &str| match fields.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(ApiError::bad_request(format!(
                "field `{name}` must not be empty"
            ))),
            Some(_) => Err(ApiError::bad_request(format!(
                "field `{name}` must be a string"
            ))),
            None => Err(ApiError::bad_request(format!("field `{name}` is required"))),
        };
        Ok(Self {
            name: text("name")?,
            access_key_id: text("access_key_id")?,
            secret_access_key: text("secret_access_key")?,
        })
    }
}

/// The spec answers 201 with the new entry, as `getAWSCredentials` would show it.
async fn create_aws_credentials(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let request = RoleCredentialsRequest::parse(&body)?;
    let mut state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok((
        StatusCode::CREATED,
        Json(state.create_role_credentials(request.name, request.role_arn)),
    ))
}

/// The spec's `AwsRoleCredentialsRequest`, the one kind of credentials the fake
/// creates: a migration to a role creates the role's entry; nothing the rotator does
/// creates static credentials, so a client that tries is wrong.
struct RoleCredentialsRequest {
    name: String,
    role_arn: String,
}

impl RoleCredentialsRequest {
    const SCHEMA: &'static str = "AwsRoleCredentialsRequest";

    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value = json_body(body)?;
        let fields = Fields::body(&value, Self::SCHEMA)?;
        // Checked first: a static body's other fields would otherwise be named as
        // unknown, which hides the real mistake.
        match value.get("type").and_then(Value::as_str) {
            Some("AWS_ROLE") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "field `type` is {other:?}: this fake creates only AWS_ROLE credentials"
                )))
            }
            None => {
                return Err(ApiError::bad_request(
                    "field `type` is required and must be the string \"AWS_ROLE\": \
                     this fake creates only AWS_ROLE credentials",
                ))
            }
        }
        fields.only(
            &["type", "name", "role_arn"],
            &format!("it is not part of {}", Self::SCHEMA),
        )?;
        Ok(Self {
            name: fields.text("name")?.to_owned(),
            role_arn: fields.text("role_arn")?.to_owned(),
        })
    }
}

/// The spec answers 204 with no body.
async fn delete_aws_credentials(
    State(shared): State<Shared>,
    Path((organization_id, credentials_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let credentials_id = parse_uuid("credentialsId", &credentials_id)?;
    let mut state = lock(&shared);
    state.check_organization(organization_id)?;
    state.delete_credentials(credentials_id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_organization_credentials(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.list_credentials()))
}

async fn get_organization_cluster_status(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.all_statuses()))
}

async fn get_cluster_status(
    State(shared): State<Shared>,
    Path((organization_id, cluster_id)): Path<(String, String)>,
) -> Result<Json<state::ClusterStatus>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let cluster_id = parse_uuid("clusterId", &cluster_id)?;
    let mut state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.poll_status(cluster_id)?))
}

async fn deploy_cluster(
    State(shared): State<Shared>,
    Path((organization_id, cluster_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<state::ClusterStatus>), ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let cluster_id = parse_uuid("clusterId", &cluster_id)?;
    let dry_run = dry_run(query.as_deref())?;
    // A role is read under the lock, assumed without it (a real AssumeRole is a network
    // call), and what came of it applied under the lock again, which checks the
    // cluster afresh.
    let to_assume = {
        let state = lock(&shared);
        state.check_organization(organization_id)?;
        match dry_run {
            true => None,
            false => state.role_to_assume(cluster_id)?,
        }
    };
    let role = match to_assume {
        Some((setting, role_arn)) => {
            let result = role_check::assume_role(&setting, cluster_id, &role_arn).await;
            if let Err(e) = &result {
                tracing::info!(%cluster_id, role_arn, error = e.as_str(), "role not assumed");
            }
            Some((role_arn, result))
        }
        None => None,
    };
    let mut state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok((
        StatusCode::CREATED,
        Json(state.deploy(cluster_id, dry_run, role)?),
    ))
}

/// `?dry_run=true|false`; other query parameters are ignored.
fn dry_run(query: Option<&str>) -> Result<bool, ApiError> {
    let mut dry_run = false;
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "dry_run" {
            dry_run = match value {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "query parameter dry_run must be true or false, not {value:?}"
                    )))
                }
            };
        }
    }
    Ok(dry_run)
}

async fn list_organization_clusters(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.list_clusters()))
}

async fn get_cloud_provider_info(
    State(shared): State<Shared>,
    Path((organization_id, cluster_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let cluster_id = parse_uuid("clusterId", &cluster_id)?;
    let state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.get_cloud_provider_info(cluster_id)?))
}

/// The spec answers 201 with the cluster's info, as GET now shows it.
async fn specify_cloud_provider_info(
    State(shared): State<Shared>,
    Path((organization_id, cluster_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let cluster_id = parse_uuid("clusterId", &cluster_id)?;
    let body = json_body(&body)?;
    let mut state = lock(&shared);
    state.check_organization(organization_id)?;
    Ok((
        StatusCode::CREATED,
        Json(state.specify_cloud_provider_info(cluster_id, &body)?),
    ))
}

async fn get_cluster_dns_provider(
    State(shared): State<Shared>,
    Path(cluster_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cluster_id = parse_uuid("clusterId", &cluster_id)?;
    Ok(Json(lock(&shared).get_dns_provider(cluster_id)?))
}

/// The spec answers 200 with the provider, as GET shows it.
async fn edit_cluster_dns_provider(
    State(shared): State<Shared>,
    Path(cluster_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let cluster_id = parse_uuid("clusterId", &cluster_id)?;
    let body = json_body(&body)?;
    Ok(Json(lock(&shared).edit_dns_provider(cluster_id, &body)?))
}

async fn list_container_registries(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_registries(&shared, RegistryList::Container, &organization_id)
}

async fn get_container_registry(
    State(shared): State<Shared>,
    Path(ids): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_registry(&shared, RegistryList::Container, ids)
}

async fn edit_container_registry(
    State(shared): State<Shared>,
    Path(ids): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    edit_registry(&shared, RegistryList::Container, ids, &body)
}

async fn list_helm_repositories(
    State(shared): State<Shared>,
    Path(organization_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_registries(&shared, RegistryList::Helm, &organization_id)
}

async fn get_helm_repository(
    State(shared): State<Shared>,
    Path(ids): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_registry(&shared, RegistryList::Helm, ids)
}

async fn edit_helm_repository(
    State(shared): State<Shared>,
    Path(ids): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    edit_registry(&shared, RegistryList::Helm, ids, &body)
}

fn list_registries(
    shared: &Shared,
    list: RegistryList,
    organization_id: &str,
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", organization_id)?;
    let state = lock(shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.list_registries(list)))
}

fn get_registry(
    shared: &Shared,
    list: RegistryList,
    (organization_id, id): (String, String),
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let id = parse_uuid(list.id_parameter(), &id)?;
    let state = lock(shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.get_registry(list, id)?))
}

fn edit_registry(
    shared: &Shared,
    list: RegistryList,
    (organization_id, id): (String, String),
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let organization_id = parse_uuid("organizationId", &organization_id)?;
    let id = parse_uuid(list.id_parameter(), &id)?;
    let body = json_body(body)?;
    let mut state = lock(shared);
    state.check_organization(organization_id)?;
    Ok(Json(state.edit_registry(list, id, &body)?))
}

/// serde_json's syntax errors give a position, never the text around it.
fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

async fn get_state(State(shared): State<Shared>) -> Response {
    Json(lock(&shared).snapshot()).into_response()
}

async fn put_state(State(shared): State<Shared>, body: Bytes) -> Result<StatusCode, ApiError> {
    let seed: Seed = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid seed: {e}")))?;
    lock(&shared)
        .reseed(seed)
        .map_err(|e| ApiError::bad_request(format!("invalid seed: {e}")))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn post_fault(State(shared): State<Shared>, body: Bytes) -> Result<StatusCode, ApiError> {
    let fault: Fault = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid fault: {e}")))?;
    lock(&shared)
        .add_fault(fault)
        .map_err(|e| ApiError::bad_request(format!("invalid fault: {e}")))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn post_container_registry(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    post_registry(&shared, RegistryList::Container, &body)
}

async fn post_helm_repository(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    post_registry(&shared, RegistryList::Helm, &body)
}

fn post_registry(shared: &Shared, list: RegistryList, body: &[u8]) -> Result<StatusCode, ApiError> {
    let invalid = |e: String| ApiError::bad_request(format!("invalid {}: {e}", list.what()));
    let seed: SeedRegistry = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    lock(shared).put_registry(list, seed).map_err(invalid)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"cluster_id": ..., "status": ...}`: see `State::set_cluster_status`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterStatusChange {
    cluster_id: String,
    status: String,
}

async fn post_cluster_status(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let change: ClusterStatusChange = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid cluster status change: {e}")))?;
    lock(&shared).set_cluster_status(&change.cluster_id, &change.status)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"role_deploys": "succeed" | "fail"}`: see [`RoleDeploys`]. STS is set up only at
/// the start (`--aws-endpoint`, `--qovery-principal`): this body carries no key.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDeploysChange {
    role_deploys: RoleDeploysSetting,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum RoleDeploysSetting {
    Succeed,
    Fail,
}

async fn post_role_deploys(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let change: RoleDeploysChange = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid role_deploys: {e}")))?;
    lock(&shared).set_role_deploys(match change.role_deploys {
        RoleDeploysSetting::Succeed => RoleDeploys::Succeed,
        RoleDeploysSetting::Fail => RoleDeploys::Fail,
    });
    Ok(StatusCode::NO_CONTENT)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("the fake does not serve {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("the fake does not serve {method} {}", uri.path()),
    )
}
