//! The OpenAPI 3.1 document of Stalecast's HTTP API (`openapi/openapi.json`), and the
//! explorer that serves it at `/docs`.
//!
//! The document is built from the procedure [`Registry`]: every procedure appears as its
//! tRPC HTTP route — a query as `GET /trpc/<path>` with the `input` query parameter, a
//! mutation as `POST /trpc/<path>` with a JSON body, the stream as `text/event-stream` —
//! with the success envelope `{"result":{"data":…}}` and the error envelope for each
//! status the route can answer. The schemas come from the same types, through utoipa.
//! The explorer is Swagger UI compiled into the binary (no request leaves the server).

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr,
    Required, ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::health::{self, Liveness, Readiness};
use crate::rpc::{ErrorCode, ErrorEnvelope, Gate, Kind, Presence, Procedure, Registry, RpcError, cookie};

/// Where the server serves the document.
pub const JSON_PATH: &str = "/openapi.json";
/// Where the server serves the explorer.
pub const DOCS_PATH: &str = "/docs";

const DESCRIPTION: &str = "\
Stalecast answers typed queries and mutations over an OpenStack-style cloud and tells \
browsers, over one Server-Sent-Events stream per tab, which data just went stale.

It speaks **tRPC v11's HTTP wire format**, so the stock `@trpc/client` works against it \
(typed by the generated `@stalecast/bindings` package, `AppRouter`). Every procedure is one \
route under `/trpc`:

- a **query** is `GET /trpc/<path>?input=<url-encoded JSON>`;
- a **mutation** is `POST /trpc/<path>` with the JSON input as the body;
- both answer `{\"result\":{\"data\":…}}`, and every error answers the error envelope \
`{\"error\":{\"code\":…,\"message\":…,\"data\":{\"code\":\"BAD_REQUEST\",\"httpStatus\":400,\"path\":…}}}` \
with the matching HTTP status;
- a query's answer carries an `ETag`; sent back as `If-None-Match`, it gives `304 Not Modified` \
while the value is unchanged. Large cached answers are compressed (`br`, `gzip`) once per value;
- calls batch as `/trpc/<p1>,<p2>?batch=1` with `input={\"0\":…,\"1\":…}` (the body for \
mutations): the answer is an array of envelopes, `207` when their statuses differ;
- `updates.onUpdate` is the event stream: `event: connected`, then one `id:`/`data:` event \
per notification (`StreamEvent`), and `event: ping` while idle.

**Sign-in.** `auth.login` checks a user name and password with the cloud's own Keystone and \
answers with the `stalecast_session` cookie (`HttpOnly`, `SameSite=Lax`; over HTTPS `Secure` \
and named `__Host-stalecast_session`), which holds an opaque session id and nothing else. Every \
other procedure and the stream need it (`401 UNAUTHORIZED` otherwise) and answer only what the \
user's projects hold: another project's resource is `404`, a write where the user's role may not \
write is `403`, and writes reach the cloud with the user's own token. Failed sign-ins are limited \
per user and per address: `429` with `Retry-After`. When the session ends (signed out, expired) \
the stream's last event is `event: serialized-error` with the `UNAUTHORIZED` error.";

/// The name of the session cookie's security scheme.
pub const SESSION_SCHEME: &str = "session";

/// The shared response of an error status: its name in `components.responses`, what it
/// means, and an example envelope.
fn error_response(code: ErrorCode) -> (&'static str, &'static str, RpcError) {
    let (name, meaning, example, path) = error_kind(code);
    (name, meaning, example.with_path(path))
}

fn error_kind(code: ErrorCode) -> (&'static str, &'static str, RpcError, &'static str) {
    match code {
        ErrorCode::BadRequest | ErrorCode::ParseError => (
            "BadRequest",
            "`BAD_REQUEST`: the input is mistyped or invalid, and the message names the field; \
             `PARSE_ERROR`: the input is not JSON.",
            RpcError::bad_request("input.sizeGb: invalid type: string \"ten\", expected u32"),
            "storage.volumes.create",
        ),
        ErrorCode::NotFound => (
            "NotFound",
            "`NOT_FOUND`: no resource with that id (or no procedure at that path).",
            RpcError::not_found("no volume with id \"vol-9999\""),
            "storage.volumes.get",
        ),
        ErrorCode::MethodNotSupported => (
            "MethodNotAllowed",
            "`METHOD_NOT_SUPPORTED`: queries and the stream take GET, mutations POST.",
            RpcError::new(code, "storage.volumes.create is a mutation: use POST"),
            "storage.volumes.create",
        ),
        ErrorCode::Conflict => (
            "Conflict",
            "`CONFLICT`: the resource's state forbids the change (stopping a stopped server).",
            RpcError::new(code, "server srv-0001 is already SHUTOFF"),
            "compute.servers.stop",
        ),
        ErrorCode::PayloadTooLarge => (
            "PayloadTooLarge",
            "`PAYLOAD_TOO_LARGE`: the body is larger than `--max-body-bytes`.",
            RpcError::new(code, "request body is larger than 1048576 bytes"),
            "storage.volumes.create",
        ),
        ErrorCode::Forbidden => (
            "Forbidden",
            "`FORBIDDEN`: the user's role in the project may not do this (a reader's write, or the \
             cloud's policy), and the message names the project; or the request's `Host` is not one \
             this server answers to, or its `Origin` is another site's (see `--allowed-host`, \
             `--cors-origin`).",
            RpcError::new(
                code,
                "bob may not change anything in project data-team (prj-data): their role there is reader",
            ),
            "storage.volumes.create",
        ),
        ErrorCode::Unauthorized => (
            "Unauthorized",
            "`UNAUTHORIZED`: no running session (sign in with `auth.login`; a cookie naming an ended \
             session is cleared), or, from `auth.login`, a wrong user name, password or domain.",
            RpcError::new(code, "sign in first (auth.login): this needs a session"),
            "storage.volumes.list",
        ),
        ErrorCode::TooManyRequests => (
            "TooManyRequests",
            "`TOO_MANY_REQUESTS`: too many failed sign-ins lately for this user or from this address \
             (`Retry-After` says when to try again), or the cloud is limiting requests.",
            RpcError::new(code, "too many failed sign-ins: try again in 42 s"),
            "auth.login",
        ),
        ErrorCode::Timeout => (
            "RequestTimeout",
            "`TIMEOUT`: the request body did not arrive within `--body-timeout`.",
            RpcError::new(code, "the request body did not arrive within 30s"),
            "storage.volumes.create",
        ),
        ErrorCode::UnsupportedMediaType => (
            "UnsupportedMediaType",
            "`UNSUPPORTED_MEDIA_TYPE`: a mutation's body must be `Content-Type: application/json`.",
            RpcError::new(code, "a mutation's body must be application/json, not text/plain"),
            "storage.volumes.create",
        ),
        ErrorCode::GatewayTimeout => (
            "GatewayTimeout",
            "`GATEWAY_TIMEOUT`: the write reached the cloud API but its outcome is unknown (it timed out \
             or the connection was lost after sending): check before retrying.",
            RpcError::new(code, "the cloud API did not confirm the change, which may or may not have been made"),
            "storage.volumes.create",
        ),
        ErrorCode::BadGateway => (
            "BadGateway",
            "`BAD_GATEWAY`: the cloud API answered with an error.",
            RpcError::new(code, "the cloud API answered with an error"),
            "storage.volumes.list",
        ),
        ErrorCode::ServiceUnavailable => (
            "ServiceUnavailable",
            "`SERVICE_UNAVAILABLE`: the cloud API is unreachable and nothing is cached.",
            RpcError::new(code, "the cloud API is unreachable; try again shortly"),
            "storage.volumes.list",
        ),
        _ => (
            "InternalServerError",
            "`INTERNAL_SERVER_ERROR`: a failure inside Stalecast; the detail is in its log.",
            RpcError::new(ErrorCode::InternalServerError, "internal server error"),
            "storage.volumes.list",
        ),
    }
}

/// `{"result":{"data":<schema>}}`.
fn success_envelope(data: RefOr<Schema>) -> RefOr<Schema> {
    let result = ObjectBuilder::new().schema_type(Type::Object).property("data", data).required("data");
    ObjectBuilder::new().schema_type(Type::Object).property("result", result).required("result").into()
}

fn json_content(schema: RefOr<Schema>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn required(yes: bool) -> Required {
    if yes { Required::True } else { Required::False }
}

/// The tag of a procedure: its path without the last segment (`storage.volumes`).
fn tag(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(prefix, _)| prefix)
}

/// The `input` query parameter: the procedure's input as URL-encoded JSON.
fn input_parameter(procedure: &Procedure) -> Option<utoipa::openapi::path::Parameter> {
    if procedure.input.presence == Presence::None {
        return None;
    }
    Some(
        ParameterBuilder::new()
            .name("input")
            .parameter_in(ParameterIn::Query)
            .required(required(procedure.input.presence == Presence::Required))
            .description(Some("The input, as URL-encoded JSON."))
            .content("application/json", json_content((procedure.input.schema)()))
            .build(),
    )
}

fn operation(procedure: &Procedure) -> Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(procedure.path))
        .summary(Some(procedure.description))
        .tag(tag(procedure.path));
    op = match procedure.gate {
        Gate::Session => op.security(SecurityRequirement::new(SESSION_SCHEME, Vec::<String>::new())),
        // Anyone may call it: no requirement at all.
        Gate::Open => op.securities(Some(Vec::<SecurityRequirement>::new())),
    };
    match procedure.kind {
        Kind::Query => {
            let query = if procedure.input.presence == Presence::None { "" } else { "?input=<url-encoded JSON>" };
            op = op
                .parameters(input_parameter(procedure).map(|p| [p]))
                .description(Some(format!("Query `{}`: `GET /trpc/{}{query}`.", procedure.path, procedure.path)));
        }
        Kind::Mutation => {
            let body = (procedure.input.presence != Presence::None).then(|| {
                RequestBodyBuilder::new()
                    .required(Some(required(procedure.input.presence == Presence::Required)))
                    .content("application/json", json_content((procedure.input.schema)()))
                    .build()
            });
            op = op.request_body(body).description(Some(format!(
                "Mutation `{}`: `POST /trpc/{}` with the JSON input as the body. It publishes \
                 the update it causes before it answers.",
                procedure.path, procedure.path
            )));
        }
        Kind::Subscription => {
            let last_event_id = |place: ParameterIn, name: &str, description: &str| {
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(place)
                    .required(Required::False)
                    .description(Some(description))
                    .schema(Some(String::schema()))
                    .build()
            };
            op = op
                .parameters(input_parameter(procedure).map(|p| [p]))
                .parameter(last_event_id(
                    ParameterIn::Query,
                    "lastEventId",
                    "Resume after this event id (also `input.lastEventId`).",
                ))
                .parameter(last_event_id(
                    ParameterIn::Header,
                    "Last-Event-ID",
                    "Resume after this event id; what browsers send when they reconnect. Wins over the others.",
                ))
                .description(Some(
                    "Server-Sent Events in tRPC's `httpSubscriptionLink` format. The stream opens with \
                     `event: connected` (`{\"reconnectAfterInactivityMs\":N}`), then sends one event per \
                     notification — `id: <seq>` and `data: <StreamEvent as JSON>` — and `event: ping` while \
                     idle. A client that resumes gets every update after its id, or a `resync` when they are \
                     no longer kept.",
                ));
        }
    }
    let success = match procedure.kind {
        Kind::Subscription => ResponseBuilder::new()
            .description("The event stream (never compressed).")
            .content(
                "text/event-stream",
                ContentBuilder::new()
                    .schema(Some(String::schema()))
                    .example(Some(serde_json::Value::String(String::from(
                        "event: connected\ndata: {\"reconnectAfterInactivityMs\":30000}\n\n\
                         id: 42\ndata: {\"kind\":\"update\",\"seq\":42,\"type\":\"volumes\",\"ids\":[\"vol-0007\"],\"ts\":1763800000123456}\n\n\
                         event: ping\ndata: {}\n\n",
                    ))))
                    .build(),
            )
            .build(),
        Kind::Query | Kind::Mutation => ResponseBuilder::new()
            .description("The procedure's output in tRPC's success envelope.")
            .content("application/json", json_content(success_envelope((procedure.output.schema)())))
            .build(),
    };
    let mut op = op.response("200", success);
    if procedure.kind == Kind::Query {
        op = op.response(
            "304",
            ResponseBuilder::new()
                .description("Not modified: the `If-None-Match` sent names the current `ETag`; no body."),
        );
    }
    for code in procedure.errors() {
        let (name, _, _) = error_response(*code);
        let status = code.status().as_u16().to_string();
        op = if *code == ErrorCode::TooManyRequests {
            // Documented inline: it carries `Retry-After`.
            op.response(status, too_many_requests())
        } else {
            op.response(status, Ref::from_response_name(name))
        };
    }
    op.build()
}

/// The `429` answer: the error envelope and the `Retry-After` header.
fn too_many_requests() -> utoipa::openapi::Response {
    let (_, meaning, example) = error_response(ErrorCode::TooManyRequests);
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ErrorEnvelope::name())))
        .example(serde_json::to_value(example.envelope()).ok())
        .build();
    let retry_after = utoipa::openapi::HeaderBuilder::new()
        .schema(Some(u64::schema()))
        .description(Some("Seconds until the next attempt is taken (failed sign-ins)."))
        .build();
    ResponseBuilder::new()
        .description(meaning)
        .content("application/json", content)
        .header("Retry-After", retry_after)
        .build()
}

/// The health endpoints, as `health` declares them.
fn health_paths(mut paths: PathsBuilder) -> PathsBuilder {
    for (endpoint, schema) in [(health::LIVENESS, Liveness::name()), (health::READINESS, Readiness::name())] {
        let mut op = OperationBuilder::new()
            .operation_id(Some(endpoint.operation_id))
            .summary(Some(endpoint.summary))
            .description((!endpoint.description.is_empty()).then_some(endpoint.description))
            .tag("health");
        for (status, meaning) in endpoint.statuses {
            let content = json_content(Ref::from_schema_name(schema.clone()).into());
            op = op.response(
                status.to_string(),
                ResponseBuilder::new().description(*meaning).content("application/json", content),
            );
        }
        paths = paths.path(endpoint.path, PathItem::new(HttpMethod::Get, op.build()));
    }
    paths
}

/// The OpenAPI document of every procedure in `registry`, plus the health routes.
pub fn document(registry: &Registry) -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    let mut tags: Vec<&str> = Vec::new();
    for procedure in registry.iter() {
        let method = match procedure.kind {
            Kind::Query | Kind::Subscription => HttpMethod::Get,
            Kind::Mutation => HttpMethod::Post,
        };
        paths = paths.path(format!("/trpc/{}", procedure.path), PathItem::new(method, operation(procedure)));
        (procedure.input.components)(&mut schemas);
        (procedure.output.components)(&mut schemas);
        if !tags.contains(&tag(procedure.path)) {
            tags.push(tag(procedure.path));
        }
    }
    tags.sort_unstable();
    tags.push("health");
    paths = health_paths(paths);
    schemas.push((ErrorEnvelope::name().into_owned(), ErrorEnvelope::schema()));
    ErrorEnvelope::schemas(&mut schemas);
    schemas.push((Liveness::name().into_owned(), Liveness::schema()));
    schemas.push((Readiness::name().into_owned(), Readiness::schema()));
    Readiness::schemas(&mut schemas);

    let session = ApiKeyValue::with_description(
        cookie::NAME,
        "The session cookie `auth.login` sets: an opaque id, `HttpOnly`, `SameSite=Lax`. Over HTTPS it is \
         `Secure` and named `__Host-stalecast_session`. Browsers send it by themselves, the event stream's \
         request included.",
    );
    let mut components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(SESSION_SCHEME, SecurityScheme::ApiKey(ApiKey::Cookie(session)));
    let mut all_errors: Vec<ErrorCode> = registry.iter().flat_map(|p| p.errors().iter().copied()).collect();
    all_errors.sort_by_key(|c| c.status());
    all_errors.dedup();
    for code in all_errors.iter().filter(|c| **c != ErrorCode::TooManyRequests) {
        let (name, meaning, example) = error_response(*code);
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorEnvelope::name())))
            .example(serde_json::to_value(example.envelope()).ok())
            .build();
        components = components
            .response(name, ResponseBuilder::new().description(meaning).content("application/json", content).build());
    }

    let info = InfoBuilder::new()
        .title("Stalecast")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(LicenseBuilder::new().name("MIT OR Apache-2.0").identifier(Some("MIT OR Apache-2.0")).build()))
        .extensions(Some(
            Extensions::builder()
                .add("x-generated", "By `stalecast gen` from the Rust code. Do not edit: run `make gen`.")
                .build(),
        ))
        .build();
    OpenApiBuilder::new()
        .info(info)
        .paths(paths.build())
        .components(Some(components.build()))
        .tags(Some(tags.into_iter().map(|t| TagBuilder::new().name(t).build())))
        .build()
}

/// The document as written to `openapi/openapi.json`.
pub fn to_json(document: &OpenApi) -> anyhow::Result<String> {
    let mut json = serde_json::to_string_pretty(document)?;
    json.push('\n');
    Ok(json)
}

/// `/docs` (Swagger UI, bundled into the binary, able to call every query and mutation
/// against this server) and `/openapi.json`.
pub fn explorer<S: Clone + Send + Sync + 'static>(document: OpenApi) -> axum::Router<S> {
    let config = Config::new([JSON_PATH])
        // Swagger UI would otherwise send the document to an online validator.
        .validator_url("none")
        .try_it_out_enabled(true)
        .display_request_duration(true)
        .filter(true);
    SwaggerUi::new(DOCS_PATH).url(JSON_PATH, document).config(config).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::to_value(document(&crate::rpc::registry())).expect("json")
    }

    #[test]
    fn every_procedure_is_its_trpc_route() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        for procedure in crate::rpc::registry().iter() {
            let item = &doc["paths"][format!("/trpc/{}", procedure.path)];
            let (method, other) = match procedure.kind {
                Kind::Mutation => ("post", "get"),
                _ => ("get", "post"),
            };
            let op = &item[method];
            assert!(op.is_object(), "{} has no {method}", procedure.path);
            assert!(item[other].is_null(), "{}", procedure.path);
            assert_eq!(op["operationId"], procedure.path);
            for code in procedure.errors() {
                let status = code.status().as_u16().to_string();
                let response = &op["responses"][&status];
                assert!(response["$ref"].is_string() || response["headers"].is_object(), "{} {status}", procedure.path);
            }
            let security = &op["security"];
            match procedure.gate {
                Gate::Session => assert_eq!(security, &serde_json::json!([{"session": []}]), "{}", procedure.path),
                Gate::Open => assert_eq!(security, &serde_json::json!([]), "{}", procedure.path),
            }
            assert!(op["responses"]["401"].is_object(), "{}: every procedure may answer 401", procedure.path);
        }
        let list = &doc["paths"]["/trpc/storage.volumes.list"]["get"];
        assert_eq!(list["parameters"][0]["name"], "input");
        assert_eq!(list["parameters"][0]["required"], false);
        let data = &list["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["result"]["properties"]
            ["data"];
        assert_eq!(data["type"], "array");
        assert_eq!(data["items"]["$ref"], "#/components/schemas/Volume");
        let create = &doc["paths"]["/trpc/storage.volumes.create"]["post"];
        assert_eq!(create["requestBody"]["required"], true);
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/VolumeCreate"
        );
        assert!(create["responses"]["413"].is_object() && create["responses"]["409"].is_object());
        assert!(create["responses"]["304"].is_null() && list["responses"]["304"].is_object());
        let state = &doc["paths"]["/trpc/updates.state"]["get"];
        assert!(state["parameters"].is_null(), "updates.state takes no input");
        let stream = &doc["paths"]["/trpc/updates.onUpdate"]["get"];
        assert!(stream["responses"]["200"]["content"]["text/event-stream"].is_object());
        assert!(
            doc["paths"]["/healthz"]["get"].is_object()
                && doc["paths"]["/readyz"]["get"]["responses"]["503"].is_object()
        );
        assert!(doc["paths"]["/healthz"]["get"]["security"].is_null(), "health needs no session");
        let scheme = &doc["components"]["securitySchemes"]["session"];
        assert_eq!(
            (&scheme["type"], &scheme["in"], &scheme["name"]),
            (&"apiKey".into(), &"cookie".into(), &"stalecast_session".into())
        );
        let login = &doc["paths"]["/trpc/auth.login"]["post"]["responses"];
        assert!(login["429"]["headers"]["Retry-After"].is_object() && login["415"].is_object());
    }

    #[test]
    fn every_reference_resolves() {
        let doc = doc();
        fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                        out.push(r.clone());
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20);
        for r in all {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
        for name in ["Volume", "StreamEvent", "ErrorEnvelope", "ErrorCode", "UpdateType", "Readiness"] {
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
