//! The nodes a run drives, as the load tool's clients see them: each node's URL, the
//! session cookie valid there, and whether it is up; and the rules that spread the load
//! over them.
//!
//! Sign-in sessions are kept by the node that made them, so every node has its own
//! cookie, and a node that restarts forgets its sessions: the coordinator signs in
//! again and hands the new cookie to whoever talks to that node. Client `i` lives on
//! node `i mod N` (round robin) and, when its stream ends, reconnects to the next node in
//! its list, as a browser's `EventSource` behind a balancer that skips a stopped node
//! would; mutations go round robin over the nodes that are up.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The node client `index` first connects to.
pub fn home_node(index: usize, nodes: usize) -> usize {
    index % nodes.max(1)
}

/// The node a client whose stream on `current` ended tries next: the next one in its
/// list (its home first, then the following ones, wrapping), so that the clients of a
/// stopped node land on the others and never on the one that just went away.
pub fn next_node(current: usize, nodes: usize) -> usize {
    (current + 1) % nodes.max(1)
}

/// The first node at or after `start` (wrapping) that is up.
pub fn first_up(start: usize, up: &[bool]) -> Option<usize> {
    (0..up.len()).map(|k| (start + k) % up.len()).find(|&i| up[i])
}

/// One node: where it listens, the cookie of a session there, whether to use it.
struct Slot {
    addr: SocketAddr,
    cookie: Mutex<String>,
    up: AtomicBool,
}

/// Every node of the run, shared by the coordinator, the mutation driver and the
/// rolling restart.
pub struct Nodes {
    slots: Vec<Slot>,
    /// Round-robin position of the mutations.
    next: AtomicUsize,
}

impl Nodes {
    /// `nodes`: each node's address and the cookie of a session there.
    pub fn new(nodes: Vec<(SocketAddr, String)>) -> Nodes {
        let slots = nodes
            .into_iter()
            .map(|(addr, cookie)| Slot { addr, cookie: Mutex::new(cookie), up: AtomicBool::new(true) })
            .collect();
        Nodes { slots, next: AtomicUsize::new(0) }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn base(&self, node: usize) -> String {
        format!("http://{}", self.slots[node].addr)
    }

    pub fn cookie(&self, node: usize) -> String {
        self.slots[node].cookie.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn cookies(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.cookie(i)).collect()
    }

    pub fn set_cookie(&self, node: usize, cookie: String) {
        *self.slots[node].cookie.lock().unwrap_or_else(|p| p.into_inner()) = cookie;
    }

    /// Takes a node out of (or back into) the mutations' rotation.
    pub fn set_up(&self, node: usize, up: bool) {
        self.slots[node].up.store(up, Ordering::Release);
    }

    fn up(&self) -> Vec<bool> {
        self.slots.iter().map(|s| s.up.load(Ordering::Acquire)).collect()
    }

    /// The next node for a mutation (round robin over those up), with its base URL and
    /// cookie; `None` while every node is down.
    pub fn pick(&self) -> Option<(usize, String, String)> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.len().max(1);
        let node = first_up(start, &self.up())?;
        Some((node, self.base(node), self.cookie(node)))
    }

    /// Some node that is up (the first), for the coordinator's own questions.
    pub fn any(&self) -> Option<(String, String)> {
        let node = first_up(0, &self.up())?;
        Some((self.base(node), self.cookie(node)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_spread_round_robin_and_reconnect_to_the_next_node() {
        let homes: Vec<usize> = (0..7).map(|i| home_node(i, 3)).collect();
        assert_eq!(homes, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(home_node(5, 1), 0);
        assert_eq!(home_node(5, 0), 0, "no division by zero");
        // The clients of a node that stops go to the next one, and on round the list.
        assert_eq!((next_node(0, 3), next_node(1, 3), next_node(2, 3)), (1, 2, 0));
        assert_eq!(next_node(0, 1), 0, "one node: back to it once it is up again");
    }

    #[test]
    fn mutations_skip_nodes_that_are_down() {
        assert_eq!(first_up(1, &[true, true, true]), Some(1));
        assert_eq!(first_up(1, &[true, false, true]), Some(2));
        assert_eq!(first_up(2, &[true, false, false]), Some(0));
        assert_eq!(first_up(0, &[false, false]), None);
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let nodes = Nodes::new(vec![(addr(1), "a=1".into()), (addr(2), "a=2".into()), (addr(3), "a=3".into())]);
        let picks: Vec<usize> = (0..6).filter_map(|_| nodes.pick()).map(|(n, _, _)| n).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        nodes.set_up(1, false);
        let picks: Vec<usize> = (0..6).filter_map(|_| nodes.pick()).map(|(n, _, _)| n).collect();
        assert!(!picks.contains(&1) && picks.contains(&0) && picks.contains(&2), "{picks:?}");
        nodes.set_cookie(1, "a=new".into());
        nodes.set_up(1, true);
        assert_eq!(nodes.cookie(1), "a=new");
        assert_eq!(nodes.any().map(|(base, _)| base), Some(String::from("http://127.0.0.1:1")));
    }
}
