//! The domain routers: every query and mutation over projects, servers, volumes, images
//! and networks, registered in one [`Registry`], and the invalidation map that says which
//! queries each update type makes stale.
//!
//! Queries read the [`Store`](crate::upstream::store::Store). Mutations write upstream,
//! then refresh the affected collection — which publishes the update — before they
//! answer, so a client that sees the answer can rely on the notification being out.

pub mod model;

use crate::app::AppState;
use crate::rpc::{Kind, NoInput, Registry, Reply, RpcError};
use crate::updates::StreamEvent;
use crate::updates::UpdateType;
use crate::updates::stream::{self, OnUpdateInput};
use crate::upstream::store::{Fetch, Snapshot};
use model::*;

/// Which query procedures each update type makes stale. Declared once, here, next to the
/// procedures; emitted to TypeScript as `UPDATE_QUERY_MAP`. Every path must be a
/// registered query (checked by a test over the registry).
pub const INVALIDATION: &[(UpdateType, &[&str])] = &[
    (UpdateType::Projects, &["projects.list"]),
    (UpdateType::Servers, &["compute.servers.list", "compute.servers.get"]),
    (UpdateType::Volumes, &["storage.volumes.list", "storage.volumes.get"]),
    (UpdateType::Images, &["images.list"]),
    (UpdateType::Networks, &["networks.list"]),
];

/// The query paths an update type invalidates.
pub fn invalidated_by(kind: UpdateType) -> &'static [&'static str] {
    INVALIDATION.iter().find(|(t, _)| *t == kind).map_or(&[], |(_, paths)| paths)
}

/// Every procedure Stalecast answers.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.query::<Option<ListInput>, Vec<Project>, _, _>("projects.list", "All projects.", |app, input| async move {
        list::<Project>(&app, input).await
    })
    .query::<Option<ListInput>, Vec<Server>, _, _>(
        "compute.servers.list",
        "Servers (instances), optionally of one project.",
        |app, input| async move { list::<Server>(&app, input).await },
    )
    .query::<IdInput, Server, _, _>("compute.servers.get", "One server by id.", |app, input| async move {
        get::<Server>(&app, &input.id).await
    })
    .query::<Option<ListInput>, Vec<Volume>, _, _>(
        "storage.volumes.list",
        "Block-storage volumes, optionally of one project.",
        |app, input| async move { list::<Volume>(&app, input).await },
    )
    .query::<IdInput, Volume, _, _>("storage.volumes.get", "One volume by id.", |app, input| async move {
        get::<Volume>(&app, &input.id).await
    })
    .query::<Option<ListInput>, Vec<Image>, _, _>(
        "images.list",
        "Images, optionally those owned by one project.",
        |app, input| async move { list::<Image>(&app, input).await },
    )
    .query::<Option<ListInput>, Vec<Network>, _, _>(
        "networks.list",
        "Networks, optionally of one project.",
        |app, input| async move { list::<Network>(&app, input).await },
    )
    .query::<NoInput, UpdatesState, _, _>(
        "updates.state",
        "The bus's latest seq, the replay ring's size and the last update of each type.",
        |app, _: NoInput| async move { Reply::new(&updates_state(&app)) },
    )
    .mutation::<ServerCreate, Server, _, _>(
        "compute.servers.create",
        "Creates a server (status BUILD, then ACTIVE).",
        |app, input| async move { create_server(&app, input).await },
    )
    .mutation::<IdInput, Deleted, _, _>("compute.servers.delete", "Deletes a server.", |app, input| async move {
        app.store().client().delete_server(&input.id).await?;
        refreshed::<Server>(&app).await?;
        Reply::new(&Deleted { id: input.id })
    })
    .mutation::<IdInput, Server, _, _>("compute.servers.start", "Starts a stopped server.", |app, input| async move {
        server_action(&app, &input.id, "os-start").await
    })
    .mutation::<IdInput, Server, _, _>("compute.servers.stop", "Stops a running server.", |app, input| async move {
        server_action(&app, &input.id, "os-stop").await
    })
    .mutation::<VolumeCreate, Volume, _, _>(
        "storage.volumes.create",
        "Creates a volume (status creating, then available).",
        |app, input| async move { create_volume(&app, input).await },
    )
    .mutation::<IdInput, Deleted, _, _>(
        "storage.volumes.delete",
        "Deletes a volume that is not attached.",
        |app, input| async move {
            app.store().client().delete_volume(&input.id).await?;
            refreshed::<Volume>(&app).await?;
            Reply::new(&Deleted { id: input.id })
        },
    )
    .subscription::<Option<OnUpdateInput>, StreamEvent>(
        stream::PATH,
        "The stream of update notifications (Server-Sent Events).",
    );
    debug_assert!(r.iter().all(|p| p.kind != Kind::Subscription || p.path == stream::PATH));
    r
}

async fn list<R: Fetch>(app: &AppState, input: Option<ListInput>) -> Result<Reply<Vec<R>>, RpcError> {
    let snapshot = app.store().get::<R>().await?;
    match input.and_then(|i| i.project_id) {
        None => Ok(snapshot.reply()),
        Some(project) => {
            let items: Vec<R> =
                snapshot.items.iter().filter(|r| r.project_id() == Some(project.as_str())).cloned().collect();
            Reply::new(&items)
        }
    }
}

async fn get<R: Fetch>(app: &AppState, id: &str) -> Result<Reply<R>, RpcError> {
    let snapshot = app.store().get::<R>().await?;
    found(&snapshot, id)
}

fn found<R: Fetch>(snapshot: &Snapshot<R>, id: &str) -> Result<Reply<R>, RpcError> {
    match snapshot.find(id) {
        Some(item) => Reply::new(item),
        None => Err(RpcError::not_found(format!("no {} with id \"{id}\"", singular(R::TYPE)))),
    }
}

fn singular(kind: UpdateType) -> &'static str {
    match kind {
        UpdateType::Projects => "project",
        UpdateType::Servers => "server",
        UpdateType::Volumes => "volume",
        UpdateType::Images => "image",
        UpdateType::Networks => "network",
    }
}

/// Refreshes a collection after a write, which publishes what changed.
async fn refreshed<R: Fetch>(app: &AppState) -> Result<std::sync::Arc<Snapshot<R>>, RpcError> {
    Ok(app.store().refresh::<R>().await?)
}

fn updates_state(app: &AppState) -> UpdatesState {
    let state = app.bus().state();
    UpdatesState {
        seq: state.seq,
        ring_size: state.ring_size as u64,
        types: state.types.into_iter().map(|(kind, s)| TypeUpdateState { kind, seq: s.seq, ts: s.ts }).collect(),
    }
}

/// Checks a display name: 1 to 255 characters, not only white space, no control
/// characters.
fn check_name(field: &str, name: &str) -> Result<(), RpcError> {
    if name.trim().is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(RpcError::bad_request(format!(
            "input.{field}: must be 1 to 255 characters, not blank, without control characters"
        )));
    }
    Ok(())
}

/// Checks that `projectId` names a known project.
async fn check_project(app: &AppState, project_id: &str) -> Result<(), RpcError> {
    let projects = app.store().get::<Project>().await?;
    if projects.find(project_id).is_none() {
        return Err(RpcError::bad_request(format!("input.projectId: no project with id \"{project_id}\"")));
    }
    Ok(())
}

async fn create_server(app: &AppState, input: ServerCreate) -> Result<Reply<Server>, RpcError> {
    check_name("name", &input.name)?;
    check_project(app, &input.project_id).await?;
    let flavor = input.flavor.as_deref().unwrap_or("m1.small");
    let id =
        app.store().client().create_server(&input.project_id, &input.name, flavor, input.image_id.as_deref()).await?;
    let snapshot = refreshed::<Server>(app).await?;
    found(&snapshot, &id)
}

async fn server_action(app: &AppState, id: &str, action: &str) -> Result<Reply<Server>, RpcError> {
    app.store().client().server_action(id, action).await?;
    let snapshot = refreshed::<Server>(app).await?;
    found(&snapshot, id)
}

async fn create_volume(app: &AppState, input: VolumeCreate) -> Result<Reply<Volume>, RpcError> {
    check_name("name", &input.name)?;
    if !(1..=16384).contains(&input.size_gb) {
        return Err(RpcError::bad_request("input.sizeGb: must be between 1 and 16384"));
    }
    let description = input.description.as_deref().unwrap_or_default();
    if description.chars().count() > 1024 {
        return Err(RpcError::bad_request("input.description: at most 1024 characters"));
    }
    check_project(app, &input.project_id).await?;
    let id = app.store().client().create_volume(&input.project_id, &input.name, input.size_gb, description).await?;
    let snapshot = refreshed::<Volume>(app).await?;
    found(&snapshot, &id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invalidated_path_is_a_registered_query() {
        let registry = registry();
        for (kind, paths) in INVALIDATION {
            assert!(!paths.is_empty(), "{kind} invalidates nothing");
            for path in *paths {
                let procedure = registry.get(path).unwrap_or_else(|| panic!("{kind} → {path}: not registered"));
                assert_eq!(procedure.kind, Kind::Query, "{kind} → {path}: not a query");
            }
        }
    }

    #[test]
    fn every_update_type_has_an_invalidation_entry() {
        for kind in UpdateType::ALL {
            assert!(INVALIDATION.iter().filter(|(t, _)| *t == kind).count() == 1, "{kind}");
        }
    }
}
