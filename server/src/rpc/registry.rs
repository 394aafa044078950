//! The procedure registry: every query, mutation and subscription Stalecast answers,
//! with its path, kind and input/output types.
//!
//! The registry is the single list the HTTP layer dispatches from and the contract
//! generators (TypeScript bindings, OpenAPI) enumerate, so a procedure cannot be served
//! without being described, or described without being served.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;
use utoipa::openapi::schema::ArrayBuilder;
use utoipa::openapi::{Ref, RefOr, Schema};

use super::cookie::SessionCookie;
use super::encoded::{Answers, Encoded};
use super::{Api, ErrorCode, RpcError};
use crate::domain::changes::{Changes, Delta};
use crate::domain::page::{Page, Paged};
use crate::domain::signin::{Me, SignOut, SignedIn, SignedOut};
use crate::domain::{self, Ctx, Listing};
use crate::upstream::store::Fetch;

/// What a procedure is, in tRPC's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// Read-only, `GET`, cacheable; what update types invalidate.
    Query,
    /// Changes something, `POST`; publishes an update before it answers.
    Mutation,
    /// A server-sent-event stream (`GET`, `text/event-stream`).
    Subscription,
}

impl Kind {
    /// `query`, `mutation` or `subscription`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Mutation => "mutation",
            Kind::Subscription => "subscription",
        }
    }
}

/// Who may call a procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Anyone who reaches the server (`auth.login`).
    Open,
    /// A signed-in caller only: without a session, `401`.
    Session,
}

/// The bytes of an answer, as the HTTP layer sends them.
#[derive(Clone, Debug)]
pub enum Answer {
    /// JSON computed for this request.
    Json(Bytes),
    /// A stored value's answer, encoded once and shared by every request for it.
    Shared(Arc<Encoded>),
    /// JSON computed for this request, and what it does to the session cookie.
    Session(Bytes, SessionCookie),
}

impl Answer {
    /// The procedure's JSON (without the envelope).
    pub fn json(&self) -> Bytes {
        match self {
            Answer::Json(json) | Answer::Session(json, _) => json.clone(),
            Answer::Shared(encoded) => encoded.json(),
        }
    }

    /// What the answer does to the session cookie.
    pub fn cookie(&self) -> Option<&SessionCookie> {
        match self {
            Answer::Session(_, cookie) => Some(cookie),
            _ => None,
        }
    }
}

/// What a procedure's result becomes on the wire. `Wire` is the type the contract
/// describes, so the registered output type and the bytes sent cannot disagree.
pub trait Output: Send + 'static {
    type Wire: Wire;
    fn encode(self, answers: &Answers) -> impl Future<Output = Result<Answer, RpcError>> + Send;
}

impl<T: Wire + Serialize + Send> Output for T {
    type Wire = T;
    async fn encode(self, _: &Answers) -> Result<Answer, RpcError> {
        serde_json::to_vec(&self).map(|json| Answer::Json(Bytes::from(json))).map_err(RpcError::internal)
    }
}

/// A sign-in answers who signed in, and sets the cookie to the new session's id.
impl Output for SignedIn {
    type Wire = Me;
    async fn encode(self, _: &Answers) -> Result<Answer, RpcError> {
        let json = serde_json::to_vec(&self.me).map_err(RpcError::internal)?;
        Ok(Answer::Session(Bytes::from(json), SessionCookie::Set(self.session.id().to_owned())))
    }
}

/// A sign-out answers whose session ended, and clears the cookie.
impl Output for SignOut {
    type Wire = SignedOut;
    async fn encode(self, _: &Answers) -> Result<Answer, RpcError> {
        let json = serde_json::to_vec(&self.0).map_err(RpcError::internal)?;
        Ok(Answer::Session(Bytes::from(json), SessionCookie::Clear))
    }
}

/// A list is encoded once per version and project, and shared.
impl<R: Fetch + Wire + Serialize> Output for Listing<R>
where
    Vec<R>: Wire,
{
    type Wire = Vec<R>;
    async fn encode(self, answers: &Answers) -> Result<Answer, RpcError> {
        answers.list(self).await.map(Answer::Shared)
    }
}

/// A `changes` answer is encoded once per distinct question and shared.
impl<R: Changes> Output for Delta<R>
where
    R::Answer: Wire,
{
    type Wire = R::Answer;
    async fn encode(self, answers: &Answers) -> Result<Answer, RpcError> {
        answers.delta(self).await.map(Answer::Shared)
    }
}

/// A `page` answer is computed and encoded once per distinct question and shared.
impl<R: Paged> Output for Page<R>
where
    R::Answer: Wire,
{
    type Wire = R::Answer;
    async fn encode(self, answers: &Answers) -> Result<Answer, RpcError> {
        answers.page(self).await.map(Answer::Shared)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Box<dyn Fn(Arc<Api>, Ctx, serde_json::Value) -> BoxFuture<Result<Answer, RpcError>> + Send + Sync>;

/// How a procedure's input may be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// The input must be given.
    Required,
    /// The input may be absent (or `null`): an `Option<T>`.
    Optional,
    /// The procedure takes no input ([`NoInput`]).
    None,
}

/// A type that crosses the wire, described for the contract generators: ts-rs gives its
/// TypeScript side, utoipa its JSON Schema. Named types implement it with an empty
/// `impl Wire for T {}` (next to their `ToSchema` derive); a type used in the registry
/// without it does not compile, so every input and output is described.
pub trait Wire: TS + ToSchema + 'static {
    const PRESENCE: Presence = Presence::Required;

    /// Pushes the named schemas this type refers to, itself included.
    fn components(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((<Self as ToSchema>::name().into_owned(), Self::schema()));
        <Self as ToSchema>::schemas(out);
    }

    /// Writes the TypeScript declarations of this type and those it depends on.
    fn export_ts(cfg: &ts_rs::Config) -> Result<(), ts_rs::ExportError> {
        Self::export_all(cfg)
    }

    /// The type's schema where it is used: a `$ref` to its component.
    fn reference() -> RefOr<Schema> {
        Ref::from_schema_name(<Self as ToSchema>::name()).into()
    }
}

impl<T: Wire> Wire for Vec<T>
where
    Vec<T>: ToSchema,
{
    fn reference() -> RefOr<Schema> {
        ArrayBuilder::new().items(T::reference()).into()
    }
    fn components(out: &mut Vec<(String, RefOr<Schema>)>) {
        T::components(out);
    }
    fn export_ts(cfg: &ts_rs::Config) -> Result<(), ts_rs::ExportError> {
        T::export_ts(cfg)
    }
}

impl<T: Wire> Wire for Option<T>
where
    Option<T>: ToSchema,
{
    const PRESENCE: Presence = Presence::Optional;
    /// An optional input is documented as its inner type, marked not required (absent or
    /// `null` means none), which is also what Swagger UI can offer an editor for.
    fn reference() -> RefOr<Schema> {
        T::reference()
    }
    fn components(out: &mut Vec<(String, RefOr<Schema>)>) {
        T::components(out);
    }
    fn export_ts(cfg: &ts_rs::Config) -> Result<(), ts_rs::ExportError> {
        T::export_ts(cfg)
    }
}

/// The input of a procedure that takes none: absent, `null` or `{}`. TypeScript sees it
/// as `undefined`, so the stock client calls such a procedure without arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoInput;

impl<'de> Deserialize<'de> for NoInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Null => Ok(NoInput),
            serde_json::Value::Object(map) if map.is_empty() => Ok(NoInput),
            _ => Err(serde::de::Error::custom("this procedure takes no input (send none, null or {})")),
        }
    }
}

impl TS for NoInput {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;
    fn name(_: &ts_rs::Config) -> String {
        String::from("undefined")
    }
    fn inline(cfg: &ts_rs::Config) -> String {
        <Self as TS>::name(cfg)
    }
}

impl utoipa::PartialSchema for NoInput {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::schema::empty().into()
    }
}

impl ToSchema for NoInput {}

impl Wire for NoInput {
    const PRESENCE: Presence = Presence::None;
    fn components(_: &mut Vec<(String, RefOr<Schema>)>) {}
    fn export_ts(_: &ts_rs::Config) -> Result<(), ts_rs::ExportError> {
        Ok(())
    }
    fn reference() -> RefOr<Schema> {
        <Self as utoipa::PartialSchema>::schema()
    }
}

/// A [`Wire`] type as the generators see it, behind function pointers so that the
/// registry can hold procedures of different types.
#[derive(Clone, Copy)]
pub struct WireType {
    /// The type's name as TypeScript code refers to it (`Volume[]`, `VolumeCreate`).
    pub ts_name: fn(&ts_rs::Config) -> String,
    /// Writes the TypeScript declarations of the type's named parts and their dependencies.
    pub ts_export: fn(&ts_rs::Config) -> Result<(), ts_rs::ExportError>,
    /// The type's JSON Schema where it is used (named types by `$ref`).
    pub schema: fn() -> RefOr<Schema>,
    /// Pushes the named schemas the type refers to.
    pub components: fn(&mut Vec<(String, RefOr<Schema>)>),
    pub presence: Presence,
}

impl std::fmt::Debug for WireType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str((self.ts_name)(&ts_rs::Config::default()).as_str())
    }
}

impl WireType {
    pub fn of<T: Wire>() -> Self {
        WireType {
            ts_name: <T as TS>::name,
            ts_export: <T as Wire>::export_ts,
            schema: <T as Wire>::reference,
            components: <T as Wire>::components,
            presence: T::PRESENCE,
        }
    }
}

/// One registered procedure.
pub struct Procedure {
    pub path: &'static str,
    pub kind: Kind,
    pub gate: Gate,
    pub description: &'static str,
    pub input: WireType,
    pub output: WireType,
    handler: Option<Handler>,
}

impl std::fmt::Debug for Procedure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Procedure")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("gate", &self.gate)
            .field("input", &self.input)
            .field("output", &self.output)
            .finish()
    }
}

impl Procedure {
    /// The error codes the procedure answers with (besides success), as the contract
    /// states them: the OpenAPI document's responses and the bindings' `PROCEDURE_ERRORS`.
    pub fn errors(&self) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match (self.kind, self.gate) {
            (Kind::Query, _) => &[
                BadRequest,
                Unauthorized,
                Forbidden,
                NotFound,
                MethodNotSupported,
                InternalServerError,
                BadGateway,
                ServiceUnavailable,
            ],
            (Kind::Mutation, Gate::Session) => &[
                BadRequest,
                Unauthorized,
                Forbidden,
                NotFound,
                MethodNotSupported,
                Timeout,
                Conflict,
                PayloadTooLarge,
                UnsupportedMediaType,
                TooManyRequests,
                InternalServerError,
                BadGateway,
                ServiceUnavailable,
                GatewayTimeout,
            ],
            // Signing in: wrong credentials (401), too many failures (429), Keystone down.
            (Kind::Mutation, Gate::Open) => &[
                BadRequest,
                Unauthorized,
                Forbidden,
                MethodNotSupported,
                Timeout,
                PayloadTooLarge,
                UnsupportedMediaType,
                TooManyRequests,
                InternalServerError,
                BadGateway,
                ServiceUnavailable,
            ],
            (Kind::Subscription, _) => &[BadRequest, Unauthorized, Forbidden, MethodNotSupported],
        }
    }

    /// Runs a query or mutation for the caller `ctx` names, with raw JSON input (`null`
    /// when absent). A procedure behind [`Gate::Session`] called without a session is
    /// `401`, before its input is even read.
    pub async fn call(&self, api: Arc<Api>, ctx: Ctx, input: serde_json::Value) -> Result<Answer, RpcError> {
        if self.gate == Gate::Session && ctx.caller.is_none() {
            return Err(RpcError::new(ErrorCode::Unauthorized, "sign in first (auth.login): this needs a session"));
        }
        match &self.handler {
            Some(handler) => handler(api, ctx, input).await,
            None => Err(RpcError::new(
                super::ErrorCode::MethodNotSupported,
                format!("{} is a subscription: open it as an event stream", self.path),
            )),
        }
    }
}

/// Every procedure, by path.
#[derive(Debug, Default)]
pub struct Registry {
    procedures: BTreeMap<&'static str, Procedure>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a query for signed-in callers: `handler(ctx, input)` answers
    /// `GET /trpc/<path>`.
    pub fn query<I, O, F, Fut>(&mut self, path: &'static str, description: &'static str, handler: F) -> &mut Self
    where
        I: DeserializeOwned + Wire + Send,
        O: Output,
        F: Fn(Ctx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, domain::Error>> + Send + 'static,
    {
        self.add::<I, O, F, Fut>(path, Kind::Query, Gate::Session, description, handler)
    }

    /// Registers a mutation for signed-in callers: `handler(ctx, input)` answers
    /// `POST /trpc/<path>`.
    pub fn mutation<I, O, F, Fut>(&mut self, path: &'static str, description: &'static str, handler: F) -> &mut Self
    where
        I: DeserializeOwned + Wire + Send,
        O: Output,
        F: Fn(Ctx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, domain::Error>> + Send + 'static,
    {
        self.add::<I, O, F, Fut>(path, Kind::Mutation, Gate::Session, description, handler)
    }

    /// Registers a mutation anyone may call (signing in).
    pub fn open_mutation<I, O, F, Fut>(
        &mut self,
        path: &'static str,
        description: &'static str,
        handler: F,
    ) -> &mut Self
    where
        I: DeserializeOwned + Wire + Send,
        O: Output,
        F: Fn(Ctx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, domain::Error>> + Send + 'static,
    {
        self.add::<I, O, F, Fut>(path, Kind::Mutation, Gate::Open, description, handler)
    }

    /// Describes a subscription served by its own streaming handler; `O` is the type of
    /// each event's data.
    pub fn subscription<I: Wire, O: Wire>(&mut self, path: &'static str, description: &'static str) -> &mut Self {
        self.insert(Procedure {
            path,
            kind: Kind::Subscription,
            gate: Gate::Session,
            description,
            input: WireType::of::<I>(),
            output: WireType::of::<O>(),
            handler: None,
        })
    }

    fn add<I, O, F, Fut>(
        &mut self,
        path: &'static str,
        kind: Kind,
        gate: Gate,
        description: &'static str,
        handler: F,
    ) -> &mut Self
    where
        I: DeserializeOwned + Wire + Send,
        O: Output,
        F: Fn(Ctx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, domain::Error>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Box::new(move |api, ctx, raw| {
            let handler = handler.clone();
            Box::pin(async move {
                let input: I = super::decode_input(raw)?;
                let output = handler(ctx, input).await?;
                output.encode(&api.answers).await
            })
        });
        self.insert(Procedure {
            path,
            kind,
            gate,
            description,
            input: WireType::of::<I>(),
            output: WireType::of::<O::Wire>(),
            handler: Some(erased),
        })
    }

    fn insert(&mut self, procedure: Procedure) -> &mut Self {
        let path = procedure.path;
        assert!(self.procedures.insert(path, procedure).is_none(), "procedure {path} registered twice");
        self
    }

    pub fn get(&self, path: &str) -> Option<&Procedure> {
        self.procedures.get(path)
    }

    /// Every procedure, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = &Procedure> {
        self.procedures.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::{IdInput, ListInput};
    use crate::upstream::model::Volume;

    #[test]
    fn no_input_is_absent_null_or_empty_and_nothing_else() {
        for ok in [serde_json::json!(null), serde_json::json!({})] {
            assert_eq!(crate::rpc::decode_input::<NoInput>(ok).expect("accepted"), NoInput);
        }
        for bad in [serde_json::json!({"x": 1}), serde_json::json!(5), serde_json::json!([])] {
            let error = crate::rpc::decode_input::<NoInput>(bad).expect_err("refused");
            assert!(error.message.contains("takes no input"), "{}", error.message);
        }
    }

    #[test]
    fn wire_types_describe_presence_and_references() {
        assert_eq!(WireType::of::<NoInput>().presence, Presence::None);
        assert_eq!(WireType::of::<Option<ListInput>>().presence, Presence::Optional);
        assert_eq!(WireType::of::<IdInput>().presence, Presence::Required);
        let list = serde_json::to_value((WireType::of::<Vec<Volume>>().schema)()).expect("json");
        assert_eq!(list, serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/Volume"}}));
        assert_eq!((WireType::of::<Vec<Volume>>().ts_name)(&ts_rs::Config::new()), "Array<Volume>");
    }
}
