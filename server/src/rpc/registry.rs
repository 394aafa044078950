//! The procedure registry: every query, mutation and subscription Stalecast answers,
//! with its path, kind and input/output types.
//!
//! The registry is the single list the HTTP layer dispatches from and the contract
//! generators (TypeScript bindings, OpenAPI) enumerate, so a procedure cannot be served
//! without being described, or described without being served.

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ts_rs::TS;

use super::RpcError;
use crate::app::AppState;

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

/// A procedure's answer: the JSON of an `O`, serialized once. Only constructible from an
/// `O` (or from something that holds `O`'s JSON), so the registered output type and the
/// bytes on the wire cannot disagree.
#[derive(Clone, Debug)]
pub struct Reply<O> {
    json: Bytes,
    _output: PhantomData<fn() -> O>,
}

impl<O: Serialize> Reply<O> {
    pub fn new(value: &O) -> Result<Self, RpcError> {
        serde_json::to_vec(value)
            .map(|json| Reply { json: Bytes::from(json), _output: PhantomData })
            .map_err(RpcError::internal)
    }
}

impl<O> Reply<O> {
    /// Wraps JSON that the caller guarantees is an `O` (a cached serialization).
    pub(crate) fn from_serialized(json: Bytes) -> Self {
        Reply { json, _output: PhantomData }
    }

    pub fn into_json(self) -> Bytes {
        self.json
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Box<dyn Fn(AppState, serde_json::Value) -> BoxFuture<Result<Bytes, RpcError>> + Send + Sync>;

/// The TypeScript side of a Rust type, as ts-rs describes it.
#[derive(Clone, Copy)]
pub struct TsType {
    /// The type's name as TypeScript code refers to it (`Volume[]`, `VolumeCreate`).
    pub name: fn(&ts_rs::Config) -> String,
    /// Writes the type's declaration and those it depends on.
    pub export_all: fn(&ts_rs::Config) -> Result<(), ts_rs::ExportError>,
}

impl std::fmt::Debug for TsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str((self.name)(&ts_rs::Config::default()).as_str())
    }
}

impl TsType {
    pub fn of<T: TS + 'static>() -> Self {
        TsType { name: <T as TS>::name, export_all: <T as TS>::export_all }
    }
}

/// One registered procedure.
pub struct Procedure {
    pub path: &'static str,
    pub kind: Kind,
    pub description: &'static str,
    pub input: TsType,
    pub output: TsType,
    handler: Option<Handler>,
}

impl std::fmt::Debug for Procedure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Procedure")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("input", &self.input)
            .field("output", &self.output)
            .finish()
    }
}

impl Procedure {
    /// Runs a query or mutation with raw JSON input (`null` when absent).
    pub async fn call(&self, app: AppState, input: serde_json::Value) -> Result<Bytes, RpcError> {
        match &self.handler {
            Some(handler) => handler(app, input).await,
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

    /// Registers a query: `handler(app, input)` answers `GET /trpc/<path>`.
    pub fn query<I, O, F, Fut>(&mut self, path: &'static str, description: &'static str, handler: F) -> &mut Self
    where
        I: DeserializeOwned + TS + Send + 'static,
        O: TS + 'static,
        F: Fn(AppState, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Reply<O>, RpcError>> + Send + 'static,
    {
        self.add::<I, O, F, Fut>(path, Kind::Query, description, handler)
    }

    /// Registers a mutation: `handler(app, input)` answers `POST /trpc/<path>`.
    pub fn mutation<I, O, F, Fut>(&mut self, path: &'static str, description: &'static str, handler: F) -> &mut Self
    where
        I: DeserializeOwned + TS + Send + 'static,
        O: TS + 'static,
        F: Fn(AppState, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Reply<O>, RpcError>> + Send + 'static,
    {
        self.add::<I, O, F, Fut>(path, Kind::Mutation, description, handler)
    }

    /// Describes a subscription served by its own streaming handler; `O` is the type of
    /// each event's data.
    pub fn subscription<I: TS + 'static, O: TS + 'static>(
        &mut self,
        path: &'static str,
        description: &'static str,
    ) -> &mut Self {
        self.insert(Procedure {
            path,
            kind: Kind::Subscription,
            description,
            input: TsType::of::<I>(),
            output: TsType::of::<O>(),
            handler: None,
        })
    }

    fn add<I, O, F, Fut>(&mut self, path: &'static str, kind: Kind, description: &'static str, handler: F) -> &mut Self
    where
        I: DeserializeOwned + TS + Send + 'static,
        O: TS + 'static,
        F: Fn(AppState, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Reply<O>, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Box::new(move |app, raw| {
            let handler = handler.clone();
            Box::pin(async move {
                let input: I = super::decode_input(raw)?;
                handler(app, input).await.map(Reply::into_json)
            })
        });
        self.insert(Procedure {
            path,
            kind,
            description,
            input: TsType::of::<I>(),
            output: TsType::of::<O>(),
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
