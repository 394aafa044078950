//! Every procedure Stalecast answers, by its tRPC path: the one list the HTTP layer
//! dispatches from and the contract generators describe. Each entry names a function of
//! the domain; the types that cross the wire are declared [`Wire`] here.

use super::registry::{Kind, NoInput, Registry, Wire};
use super::stream::{OnUpdateInput, PATH as STREAM};
use crate::domain::changes::*;
use crate::domain::page::*;
use crate::domain::signin::{self, LoginInput, Me, ProjectAccess, SignOut, SignedIn, SignedInUser, SignedOut};
use crate::domain::stats::ServerStats;
use crate::domain::types::*;
use crate::domain::{self, Listing};
use crate::updates::{StreamEvent, UpdateType};
use crate::upstream::model::{Flavor, Image, Network, Project, Server, Subnet, Volume, VolumeSnapshot};

impl Wire for Project {}
impl Wire for Server {}
impl Wire for Volume {}
impl Wire for Image {}
impl Wire for Network {}
impl Wire for ListInput {}
impl Wire for IdInput {}
impl Wire for ServerCreate {}
impl Wire for VolumeCreate {}
impl Wire for Deleted {}
impl Wire for UpdatesState {}
impl Wire for ServerStats {}
impl Wire for StreamEvent {}
impl Wire for UpdateType {}
impl Wire for OnUpdateInput {}
impl Wire for ChangesInput {}
impl Wire for ProjectChanges {}
impl Wire for ServerChanges {}
impl Wire for VolumeChanges {}
impl Wire for ImageChanges {}
impl Wire for NetworkChanges {}
impl Wire for PageInput {}
impl Wire for ProjectPage {}
impl Wire for ServerPage {}
impl Wire for VolumePage {}
impl Wire for ImagePage {}
impl Wire for NetworkPage {}
impl Wire for VolumeSnapshot {}
impl Wire for Subnet {}
impl Wire for Flavor {}
impl Wire for SnapshotCreate {}
impl Wire for SubnetCreate {}
impl Wire for SnapshotChanges {}
impl Wire for SubnetChanges {}
impl Wire for FlavorChanges {}
impl Wire for SnapshotPage {}
impl Wire for SubnetPage {}
impl Wire for FlavorPage {}
impl Wire for LoginInput {}
impl Wire for Me {}
impl Wire for SignedInUser {}
impl Wire for ProjectAccess {}
impl Wire for SignedOut {}

/// The registry of every procedure.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.open_mutation::<LoginInput, SignedIn, _, _>(
        "auth.login",
        "Signs in with the cloud's Keystone (user name, password, domain by name): sets the session cookie and answers who signed in, with their projects and roles. Failed sign-ins are limited per user and per address (429 with Retry-After).",
        |ctx, input| async move { signin::login(&ctx, input).await },
    )
    .query::<NoInput, Me, _, _>(
        "auth.me",
        "Who is signed in: the user, their projects with their roles there, and when the session ends.",
        |ctx, _: NoInput| async move { signin::me(&ctx) },
    )
    .mutation::<NoInput, SignOut, _, _>(
        "auth.logout",
        "Signs out: ends the session (its streams end, in every tab), revokes its Keystone tokens, clears the cookie.",
        |ctx, _: NoInput| async move { signin::logout(&ctx).await },
    )
    .query::<Option<ListInput>, Listing<Project>, _, _>(
        "projects.list",
        "The projects the caller has a role on.",
        |ctx, input| async move { domain::list(&ctx, input).await },
    )
    .query::<ChangesInput, Delta<Project>, _, _>(
        "projects.changes",
        "What changed in projects.list after a seq: upserts and deletes, or resync.",
        |ctx, input| async move { domain::changes::changes(&ctx, input).await },
    )
    .query::<Option<PageInput>, Page<Project>, _, _>(
        "projects.page",
        "One page of projects, filtered, searched and sorted (by name) by the server, with the total and the next page's cursor.",
        |ctx, input| async move { domain::page::page(&ctx, input).await },
    )
    .query::<Option<ListInput>, Listing<Server>, _, _>(
        "compute.servers.list",
        "Servers (instances) of the caller's projects, optionally of one of them.",
        |ctx, input| async move { domain::list(&ctx, input).await },
    )
    .query::<ChangesInput, Delta<Server>, _, _>(
        "compute.servers.changes",
        "What changed in compute.servers.list after a seq: upserts and deletes, or resync.",
        |ctx, input| async move { domain::changes::changes(&ctx, input).await },
    )
    .query::<Option<PageInput>, Page<Server>, _, _>(
        "compute.servers.page",
        "One page of servers, filtered, searched and sorted (by name, created, status) by the server, with the total and the next page's cursor.",
        |ctx, input| async move { domain::page::page(&ctx, input).await },
    )
    .query::<IdInput, Server, _, _>("compute.servers.get", "One server by id.", |ctx, input| async move {
        domain::get(&ctx, input).await
    })
    .query::<Option<ListInput>, Listing<Flavor>, _, _>(
        "compute.flavors.list",
        "The public flavors servers are created with (the whole cloud's: no project).",
        |ctx, input| async move { domain::list(&ctx, input).await },
    )
    .query::<ChangesInput, Delta<Flavor>, _, _>(
        "compute.flavors.changes",
        "What changed in compute.flavors.list after a seq: upserts and deletes, or resync.",
        |ctx, input| async move { domain::changes::changes(&ctx, input).await },
    )
    .query::<Option<PageInput>, Page<Flavor>, _, _>(
        "compute.flavors.page",
        "One page of flavors, filtered, searched and sorted (by name, vcpus, ramMb, diskGb) by the server, with the total and the next page's cursor.",
        |ctx, input| async move { domain::page::page(&ctx, input).await },
    )
    .query::<IdInput, Flavor, _, _>("compute.flavors.get", "One flavor by id.", |ctx, input| async move {
        domain::get(&ctx, input).await
    })
    .query::<Option<ListInput>, Listing<Volume>, _, _>(
        "storage.volumes.list",
        "Block-storage volumes of the caller's projects, optionally of one of them.",
        |ctx, input| async move { domain::list(&ctx, input).await },
    )
    .query::<ChangesInput, Delta<Volume>, _, _>(
        "storage.volumes.changes",
        "What changed in storage.volumes.list after a seq: upserts and deletes, or resync.",
        |ctx, input| async move { domain::changes::changes(&ctx, input).await },
    )
    .query::<Option<PageInput>, Page<Volume>, _, _>(
        "storage.volumes.page",
        "One page of volumes, filtered, searched and sorted (by name, createdAt, sizeGb, status) by the server, with the total and the next page's cursor.",
        |ctx, input| async move { domain::page::page(&ctx, input).await },
    )
    .query::<IdInput, Volume, _, _>("storage.volumes.get", "One volume by id.", |ctx, input| async move {
        domain::get(&ctx, input).await
    })
    .query::<Option<ListInput>, Listing<VolumeSnapshot>, _, _>(
        "storage.snapshots.list",
        "Volume snapshots, optionally of one project.",
        |ctx, input| async move { domain::list(&ctx, input).await },
    )
    .query::<ChangesInput, Delta<VolumeSnapshot>, _, _>(
        "storage.snapshots.changes",
        "What changed in storage.snapshots.list after a seq: upserts and deletes, or resync.",
        |ctx, input| async move { domain::changes::changes(&ctx, input).await },
    )
    .query::<Option<PageInput>, Page<VolumeSnapshot>, _, _>(
        "storage.snapshots.page",
        "One page of volume snapshots, filtered, searched and sorted (by name, createdAt, sizeGb, status) by the server, with the total and the next page's cursor.",
        |ctx, input| async move { domain::page::page(&ctx, input).await },
    )
    .query::<IdInput, VolumeSnapshot, _, _>("storage.snapshots.get", "One volume snapshot by id.", |ctx, input| async move {
        domain::get(&ctx, input).await
    })
    .query::<Option<ListInput>, Listing<Image>, _, _>(
        "images.list",
        "Public images and those of the caller's projects, optionally those owned by one project.",
        |ctx, input| async move { domain::list(&ctx, input).await },
    )
    .query::<ChangesInput, Delta<Image>, _, _>(
        "images.changes",
        "What changed in images.list after a seq: upserts and deletes, or resync.",
        |ctx, input| async move { domain::changes::changes(&ctx, input).await },
    )
    .query::<Option<PageInput>, Page<Image>, _, _>(
        "images.page",
        "One page of images, filtered, searched and sorted (by name, sizeBytes, status) by the server, with the total and the next page's cursor.",
        |ctx, input| async move { domain::page::page(&ctx, input).await },
    )
    .query::<Option<ListInput>, Listing<Network>, _, _>(
        "networks.list",
        "Shared networks and those of the caller's projects, optionally of one project.",
        |ctx, input| async move { domain::list(&ctx, input).await },
    )
    .query::<ChangesInput, Delta<Network>, _, _>(
        "networks.changes",
        "What changed in networks.list after a seq: upserts and deletes, or resync.",
        |ctx, input| async move { domain::changes::changes(&ctx, input).await },
    )
    .query::<Option<PageInput>, Page<Network>, _, _>(
        "networks.page",
        "One page of networks, filtered, searched and sorted (by name) by the server, with the total and the next page's cursor.",
        |ctx, input| async move { domain::page::page(&ctx, input).await },
    )
    .query::<Option<ListInput>, Listing<Subnet>, _, _>(
        "networks.subnets.list",
        "Subnets, optionally of one project.",
        |ctx, input| async move { domain::list(&ctx, input).await },
    )
    .query::<ChangesInput, Delta<Subnet>, _, _>(
        "networks.subnets.changes",
        "What changed in networks.subnets.list after a seq: upserts and deletes, or resync.",
        |ctx, input| async move { domain::changes::changes(&ctx, input).await },
    )
    .query::<Option<PageInput>, Page<Subnet>, _, _>(
        "networks.subnets.page",
        "One page of subnets, filtered (status: ipv4 or ipv6), searched and sorted (by name, cidr, createdAt) by the server, with the total and the next page's cursor.",
        |ctx, input| async move { domain::page::page(&ctx, input).await },
    )
    .query::<IdInput, Subnet, _, _>("networks.subnets.get", "One subnet by id.", |ctx, input| async move {
        domain::get(&ctx, input).await
    })
    .query::<NoInput, UpdatesState, _, _>(
        "updates.state",
        "The bus's latest seq, the replay ring's size and the last update of each type the caller may see.",
        |ctx, _: NoInput| async move { domain::updates_state(&ctx) },
    )
    .query::<NoInput, ServerStats, _, _>(
        "server.stats",
        "The server's figures for its dashboard page: open streams, notifications per second, delivery p99, \
         the cloud's services and collections, and the nodes (which one polls). Sampled every few seconds; a \
         serverStats update says when they changed.",
        |ctx, _: NoInput| async move { Ok(domain::stats::stats(&ctx)) },
    )
    .mutation::<ServerCreate, Server, _, _>(
        "compute.servers.create",
        "Creates a server (status BUILD, then ACTIVE).",
        |ctx, input| async move { domain::create_server(&ctx, input).await },
    )
    .mutation::<IdInput, Deleted, _, _>("compute.servers.delete", "Deletes a server.", |ctx, input| async move {
        domain::delete_server(&ctx, input).await
    })
    .mutation::<IdInput, Server, _, _>("compute.servers.start", "Starts a stopped server.", |ctx, input| async move {
        domain::server_action(&ctx, input, "os-start").await
    })
    .mutation::<IdInput, Server, _, _>("compute.servers.stop", "Stops a running server.", |ctx, input| async move {
        domain::server_action(&ctx, input, "os-stop").await
    })
    .mutation::<VolumeCreate, Volume, _, _>(
        "storage.volumes.create",
        "Creates a volume (status creating, then available).",
        |ctx, input| async move { domain::create_volume(&ctx, input).await },
    )
    .mutation::<IdInput, Deleted, _, _>(
        "storage.volumes.delete",
        "Deletes a volume that is not attached.",
        |ctx, input| async move { domain::delete_volume(&ctx, input).await },
    )
    .mutation::<SnapshotCreate, VolumeSnapshot, _, _>(
        "storage.snapshots.create",
        "Snapshots a volume, in its project (status creating, then available); the volume must be available, or in-use with force.",
        |ctx, input| async move { domain::create_snapshot(&ctx, input).await },
    )
    .mutation::<IdInput, Deleted, _, _>(
        "storage.snapshots.delete",
        "Deletes a volume snapshot.",
        |ctx, input| async move { domain::delete_snapshot(&ctx, input).await },
    )
    .mutation::<SubnetCreate, Subnet, _, _>(
        "networks.subnets.create",
        "Adds a subnet to a network, in the network's project; its CIDR must not overlap another subnet of the network.",
        |ctx, input| async move { domain::create_subnet(&ctx, input).await },
    )
    .mutation::<IdInput, Deleted, _, _>("networks.subnets.delete", "Deletes a subnet.", |ctx, input| async move {
        domain::delete_subnet(&ctx, input).await
    })
    .subscription::<Option<OnUpdateInput>, StreamEvent>(
        STREAM,
        "The stream of update notifications (Server-Sent Events).",
    );
    debug_assert!(r.iter().all(|p| p.kind != Kind::Subscription || p.path == STREAM));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::INVALIDATION;

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
    fn every_list_has_a_registered_changes_query() {
        let registry = registry();
        for (list, changes) in domain::CHANGES {
            for path in [list, changes] {
                let procedure = registry.get(path).unwrap_or_else(|| panic!("{path}: not registered"));
                assert_eq!(procedure.kind, Kind::Query, "{path}: not a query");
            }
        }
        for procedure in registry.iter().filter(|p| p.path.ends_with(".list")) {
            assert!(
                domain::CHANGES.iter().any(|(list, _)| *list == procedure.path),
                "{}: no changes query",
                procedure.path
            );
        }
    }

    #[test]
    fn every_list_has_a_page_query_invalidated_with_it() {
        let registry = registry();
        let lists: Vec<&str> = registry.iter().filter(|p| p.path.ends_with(".list")).map(|p| p.path).collect();
        assert_eq!(lists.len(), UpdateType::COLLECTIONS.len());
        for list in lists {
            let page = format!("{}.page", list.trim_end_matches(".list"));
            let procedure = registry.get(&page).unwrap_or_else(|| panic!("{list}: no {page}"));
            assert_eq!(procedure.kind, Kind::Query, "{page}: not a query");
            let (kind, _) = INVALIDATION
                .iter()
                .find(|(_, paths)| paths.contains(&list))
                .unwrap_or_else(|| panic!("{list}: invalidated by nothing"));
            let paths = INVALIDATION.iter().filter(|(k, _)| k == kind).flat_map(|(_, p)| p.iter());
            assert!(paths.clone().any(|p| *p == page), "{kind} invalidates {list} but not {page}");
        }
    }

    #[test]
    fn each_page_query_names_its_sort_keys() {
        use crate::domain::page::Paged;
        fn names<R: Paged>(path: &str) {
            let description = registry().get(path).map(|p| p.description).unwrap_or_default();
            assert!(description.contains(&format!("(by {})", R::SORTS.join(", "))), "{path}: {description}");
        }
        names::<Project>("projects.page");
        names::<Server>("compute.servers.page");
        names::<Volume>("storage.volumes.page");
        names::<Image>("images.page");
        names::<Network>("networks.page");
        names::<VolumeSnapshot>("storage.snapshots.page");
        names::<Subnet>("networks.subnets.page");
        names::<Flavor>("compute.flavors.page");
    }

    /// The design asks for at least 20 queries of the cloud that updates keep live: each
    /// a registered query that some update type invalidates (the `changes` companions,
    /// which patch rather than invalidate, are not counted).
    #[test]
    fn at_least_twenty_live_queries_of_the_cloud() {
        let registry = registry();
        let mut live: Vec<&str> = INVALIDATION.iter().flat_map(|(_, paths)| paths.iter().copied()).collect();
        live.sort_unstable();
        live.dedup();
        assert!(live.iter().all(|p| registry.get(p).is_some_and(|q| q.kind == Kind::Query)));
        assert!(live.len() >= 20, "{} live queries: {live:?}", live.len());
        // Every query of the cloud is among them (only the stream's state is not, and the
        // caller's own session, which an `access` resync refreshes when it changes).
        for procedure in registry.iter().filter(|p| p.kind == Kind::Query) {
            let patched = domain::CHANGES.iter().any(|(_, changes)| *changes == procedure.path);
            let own = ["updates.state", "auth.me"].contains(&procedure.path);
            assert!(
                live.contains(&procedure.path) || patched || own,
                "{} is a query no update keeps live",
                procedure.path
            );
        }
    }

    #[test]
    fn every_update_type_has_an_invalidation_entry() {
        for kind in UpdateType::ALL {
            assert!(INVALIDATION.iter().filter(|(t, _)| *t == kind).count() == 1, "{kind}");
        }
    }
}
