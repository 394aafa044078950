//! The simulator's data: a small cloud of projects, servers, volumes, images and
//! networks in OpenStack's own JSON shapes, seeded the same way every time.

use std::time::SystemTime;

use serde_json::{Value, json};

/// Everything the simulated cloud holds.
#[derive(Debug, Clone)]
pub struct World {
    pub projects: Vec<Value>,
    pub servers: Vec<Value>,
    pub volumes: Vec<Value>,
    pub images: Vec<Value>,
    pub networks: Vec<Value>,
    /// Bytes of filler added to every volume's description, to make large payloads.
    pub volume_padding: usize,
    next_id: u64,
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

const PROJECTS: [(&str, &str, &str); 3] = [
    ("prj-admin", "admin", "Cloud administration"),
    ("prj-web", "web-team", "Public web front ends"),
    ("prj-data", "data-team", "Batch and analytics"),
];

const IMAGES: [(&str, &str, u64, u32); 5] = [
    ("img-ubuntu-24", "ubuntu-24.04", 2_361_393_152, 10),
    ("img-debian-13", "debian-13", 1_073_741_824, 8),
    ("img-cirros", "cirros-0.6.3", 21_430_272, 1),
    ("img-fedora-42", "fedora-42", 1_610_612_736, 10),
    ("img-windows", "windows-server-2025", 21_474_836_480, 40),
];

const FLAVORS: [&str; 4] = ["m1.small", "m1.medium", "m1.large", "c1.xlarge"];

impl World {
    /// The seeded cloud: 3 projects, 5 images, 4 networks, 24 servers, 36 volumes.
    pub fn seeded() -> Self {
        let created = now();
        let projects = PROJECTS
            .iter()
            .map(|(id, name, description)| {
                json!({"id": id, "name": name, "description": description, "enabled": true, "domain_id": "default"})
            })
            .collect();
        let images = IMAGES
            .iter()
            .map(|(id, name, size, min_disk)| {
                json!({"id": id, "name": name, "status": "active", "visibility": "public", "size": size,
                       "min_disk": min_disk, "owner": "prj-admin", "disk_format": "qcow2"})
            })
            .collect();
        let mut networks: Vec<Value> = PROJECTS
            .iter()
            .map(|(id, name, _)| {
                json!({"id": format!("net-{name}"), "name": format!("{name}-net"), "project_id": id,
                       "tenant_id": id, "status": "ACTIVE", "shared": false,
                       "subnets": [format!("subnet-{name}")], "admin_state_up": true})
            })
            .collect();
        networks.push(json!({"id": "net-public", "name": "public", "project_id": "prj-admin", "tenant_id": "prj-admin",
                             "status": "ACTIVE", "shared": true, "subnets": ["subnet-public"], "admin_state_up": true}));
        let mut world = World {
            projects,
            servers: Vec::new(),
            volumes: Vec::new(),
            images,
            networks,
            volume_padding: 0,
            next_id: 1,
        };
        for i in 0..24 {
            let project = PROJECTS[i % PROJECTS.len()].0;
            let status = if i % 5 == 4 { "SHUTOFF" } else { "ACTIVE" };
            let image = IMAGES[i % IMAGES.len()].0;
            let id = world.new_server(
                project,
                &format!("{}-{:02}", ["web", "db", "worker"][i % 3], i + 1),
                FLAVORS[i % FLAVORS.len()],
                Some(image),
                status,
            );
            if let Some(server) = world.servers.iter_mut().find(|s| s["id"] == id) {
                server["created"] = json!(created);
                server["updated"] = json!(created);
            }
        }
        for i in 0..36 {
            let project = PROJECTS[i % PROJECTS.len()].0;
            let id =
                world.new_volume(project, &format!("vol-{:02}", i + 1), 10 * (1 + (i as u32 % 8)), "", "available");
            // Every third volume is attached to a server of its project.
            if i % 3 == 0 {
                let server = world.servers.iter().find(|s| s["tenant_id"] == project).map(|s| s["id"].clone());
                if let (Some(server), Some(volume)) = (server, world.volumes.iter_mut().find(|v| v["id"] == id)) {
                    volume["status"] = json!("in-use");
                    volume["attachments"] = json!([{"server_id": server, "device": "/dev/vdb"}]);
                }
            }
        }
        world
    }

    fn next(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}-{:04}", self.next_id);
        self.next_id += 1;
        id
    }

    pub fn has_project(&self, id: &str) -> bool {
        self.projects.iter().any(|p| p["id"] == id)
    }

    /// Adds a server; answers its id.
    pub fn new_server(&mut self, project: &str, name: &str, flavor: &str, image: Option<&str>, status: &str) -> String {
        let id = self.next("srv");
        let network = self
            .networks
            .iter()
            .find(|n| n["project_id"] == project)
            .and_then(|n| n["name"].as_str())
            .unwrap_or("public")
            .to_owned();
        let host = self.next_id % 250 + 2;
        let now = now();
        self.servers.push(json!({
            "id": id, "name": name, "status": status, "tenant_id": project, "user_id": "admin",
            "flavor": {"original_name": flavor, "vcpus": 1, "ram": 2048},
            "image": image.map_or(json!(""), |i| json!({"id": i})),
            "addresses": {network: [{"addr": format!("10.0.0.{host}"), "version": 4, "OS-EXT-IPS:type": "fixed"}]},
            "created": now, "updated": now,
        }));
        id
    }

    /// Adds a volume; answers its id.
    pub fn new_volume(&mut self, project: &str, name: &str, size: u32, description: &str, status: &str) -> String {
        let id = self.next("vol");
        self.volumes.push(json!({
            "id": id, "name": name, "status": status, "size": size, "os-vol-tenant-attr:tenant_id": project,
            "attachments": [], "description": description, "created_at": now(), "volume_type": "standard",
            "bootable": "false",
        }));
        id
    }

    /// Sets a resource's status (and `updated`) if it exists.
    pub fn set_status(list: &mut [Value], id: &str, status: &str) -> bool {
        match list.iter_mut().find(|v| v["id"] == id) {
            Some(item) => {
                item["status"] = json!(status);
                if item.get("updated").is_some() {
                    item["updated"] = json!(now());
                }
                true
            }
            None => false,
        }
    }

    /// The volumes as served, with the configured padding in each description.
    pub fn volumes_for_listing(&self) -> Vec<Value> {
        self.volumes.iter().map(|v| self.padded(v)).collect()
    }

    /// One volume as served (the same representation as in the listing).
    pub fn volume_as_served(&self, id: &str) -> Option<Value> {
        self.volumes.iter().find(|v| v["id"] == id).map(|v| self.padded(v))
    }

    fn padded(&self, volume: &Value) -> Value {
        let mut volume = volume.clone();
        if self.volume_padding > 0 {
            let description =
                format!("{}{}", volume["description"].as_str().unwrap_or_default(), "x".repeat(self.volume_padding));
            volume["description"] = json!(description);
        }
        volume
    }
}
