//! Who may hear of an update: each changed resource's [`Owner`] (its project, or every
//! signed-in user for a public image or a shared network), and each listener's [`Room`]
//! (the projects one signed-in user may see).
//!
//! The store names the owner of every record it publishes; the update keeps them beside
//! its ids ([`Published`](super::Published), never on the wire). A stream writes an
//! update only when its room sees one of the owners, with only the ids it may see: the
//! [`Published::frame_for`](super::Published::frame_for) answer, computed once per update
//! and room however many streams share the room. Queries judge records by the same two
//! types, so what a list shows and what the stream announces cannot disagree.
//!
//! Rooms are interned ([`Rooms`]): users who may see the same projects share one room and
//! its id, which is what answers and frames are shared under.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Who may see a resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// Every signed-in user: a public or community image, a shared network, or a change
    /// published without an owner (tests and tools that publish by hand).
    Everyone,
    /// Those who may see this project.
    Project(Arc<str>),
    /// Nobody: a private image that belongs to no project.
    Nobody,
}

impl Owner {
    pub fn project(id: &str) -> Owner {
        Owner::Project(Arc::from(id))
    }
}

/// The projects one listener may see, sorted; shared by every listener who may see the
/// same ones.
#[derive(Debug, PartialEq, Eq)]
pub struct Room {
    id: u64,
    projects: Box<[Arc<str>]>,
}

impl Room {
    /// A number no other room of this process has (while this one lives, and after).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The projects, sorted.
    pub fn projects(&self) -> &[Arc<str>] {
        &self.projects
    }

    pub fn sees_project(&self, project: &str) -> bool {
        self.projects.binary_search_by(|p| (**p).cmp(project)).is_ok()
    }

    pub fn sees(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Everyone => true,
            Owner::Project(project) => self.sees_project(project),
            Owner::Nobody => false,
        }
    }
}

/// A set of projects, sorted and without repeats.
type ProjectSet = Box<[Arc<str>]>;

/// Every room in use, by its projects: the same set of projects is the same room.
#[derive(Debug, Default)]
pub struct Rooms {
    next_id: AtomicU64,
    rooms: Mutex<HashMap<ProjectSet, Weak<Room>>>,
}

impl Rooms {
    /// The room of `projects` (in any order, repeats ignored).
    pub fn room<S: AsRef<str>>(&self, projects: impl IntoIterator<Item = S>) -> Arc<Room> {
        let mut projects: Vec<Arc<str>> = projects.into_iter().map(|p| Arc::from(p.as_ref())).collect();
        projects.sort_unstable();
        projects.dedup();
        let projects = projects.into_boxed_slice();
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(room) = rooms.get(&projects).and_then(Weak::upgrade) {
            return room;
        }
        // Forget the rooms nobody holds any more, so the map stays as small as the rooms in use.
        rooms.retain(|_, room| room.strong_count() > 0);
        let room = Arc::new(Room { id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1, projects: projects.clone() });
        rooms.insert(projects, Arc::downgrade(&room));
        room
    }

    /// Rooms in use right now.
    pub fn len(&self) -> usize {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|r| r.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_project_sets_share_one_room_and_others_do_not() {
        let rooms = Rooms::default();
        let a = rooms.room(["prj-web", "prj-data"]);
        let b = rooms.room(["prj-data", "prj-web", "prj-web"]);
        assert!(Arc::ptr_eq(&a, &b));
        let c = rooms.room(["prj-web"]);
        assert_ne!(a.id(), c.id());
        assert_eq!(rooms.len(), 2);
        drop((a, b));
        // A set asked for again after its room was dropped gets a new id: an id always
        // names one set of projects.
        let again = rooms.room(["prj-web", "prj-data"]);
        assert!(again.id() > c.id());
        assert_eq!(rooms.len(), 2);
    }

    #[test]
    fn a_room_sees_its_projects_and_everyone_s_things() {
        let rooms = Rooms::default();
        let room = rooms.room(["prj-web"]);
        assert!(room.sees(&Owner::project("prj-web")));
        assert!(!room.sees(&Owner::project("prj-data")));
        assert!(room.sees(&Owner::Everyone));
        assert!(!room.sees(&Owner::Nobody));
        assert!(!rooms.room(Vec::<String>::new()).sees(&Owner::project("prj-web")));
    }
}
