//! The simulator's data: a small cloud of projects, servers, volumes, volume snapshots,
//! images, networks and subnets in OpenStack's own JSON shapes, seeded the same way every time, and grown
//! to any size with realistic records by [`World::populate`] (see [`super::seed`]).

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value, json};

use super::records::Records;
use super::seed::{self, Batch, Context, ImageRef, Seed};

/// Everything the simulated cloud holds.
#[derive(Debug, Clone)]
pub struct World {
    pub projects: Records,
    pub servers: Records,
    pub volumes: Records,
    pub images: Records,
    pub networks: Records,
    pub snapshots: Records,
    pub subnets: Records,
    next_id: u64,
    /// Batches of seeded records added so far (each batch's rng seed mixes its number in).
    seed_batches: u64,
}

/// How many records of each kind the world holds: the answer of `POST /_sim/seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub servers: usize,
    pub volumes: usize,
    pub images: usize,
    pub networks: usize,
    pub snapshots: usize,
    pub subnets: usize,
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The projects of the seeded world: id, name, description.
pub const PROJECTS: [(&str, &str, &str); 3] = [
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

/// A flavor: `(id, name, vcpus, RAM in MiB, disk in GB)`.
pub type Flavor = (&'static str, &'static str, u64, u64, u64);

/// The cloud's flavors (Nova's `GET /flavors`), with ids as a real cloud's default set
/// has them: short numbers and names.
pub const FLAVORS: [Flavor; 10] = [
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
    ("c1", "c1.xlarge", 8, 8192, 80),
    ("c2", "c1.2xlarge", 16, 16384, 80),
    ("r1", "r1.large", 4, 32768, 80),
    ("r2", "r1.2xlarge", 8, 65536, 160),
    ("g1", "g1.gpu-a100", 16, 131072, 200),
    ("1", "t1.nano", 1, 512, 10),
];

/// The flavor named `name`.
pub fn flavor_by(name: &str) -> Option<&'static Flavor> {
    FLAVORS.iter().find(|f| f.1 == name)
}

/// The flavor with id `id`.
pub fn flavor_by_id(id: &str) -> Option<&'static Flavor> {
    FLAVORS.iter().find(|f| f.0 == id)
}

/// A server's `flavor` as Nova 2.47 embeds it, with its id (shown to older versions).
pub fn embedded_flavor(flavor: &Flavor) -> Value {
    let (id, name, vcpus, ram, disk) = *flavor;
    json!({"id": id, "original_name": name, "vcpus": vcpus, "ram": ram, "disk": disk, "ephemeral": 0, "swap": 0,
           "extra_specs": {}})
}

/// The flavors the seeded servers take turns with.
const SEEDED_FLAVORS: [&str; 4] = ["m1.small", "m1.medium", "m1.large", "c1.xlarge"];

impl World {
    /// The seeded cloud: 3 projects, 5 images, 4 networks with a subnet each, 24 servers,
    /// 36 volumes (the admin project's all attached), 4 snapshots.
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
        let mut networks: Records = PROJECTS
            .iter()
            .map(|(id, name, _)| {
                json!({"id": format!("net-{name}"), "name": format!("{name}-net"), "project_id": id,
                       "tenant_id": id, "status": "ACTIVE", "shared": false,
                       "subnets": [format!("subnet-{name}")], "admin_state_up": true})
            })
            .collect();
        networks.push(json!({"id": "net-public", "name": "public", "project_id": "prj-admin", "tenant_id": "prj-admin",
                             "status": "ACTIVE", "shared": true, "subnets": ["subnet-public"], "admin_state_up": true}));
        let mut subnets: Records = PROJECTS
            .iter()
            .enumerate()
            .map(|(i, (id, name, _))| {
                let cidr = format!("10.{i}.0.0/24");
                subnet_json(
                    &format!("subnet-{name}"),
                    &format!("{name}-subnet"),
                    &format!("net-{name}"),
                    id,
                    &cidr,
                    &created,
                )
            })
            .collect();
        subnets.push(subnet_json(
            "subnet-public",
            "public-subnet",
            "net-public",
            "prj-admin",
            "203.0.113.0/24",
            &created,
        ));
        let mut world = World {
            projects,
            servers: Records::default(),
            volumes: Records::default(),
            images,
            networks,
            snapshots: Records::default(),
            subnets,
            next_id: 1,
            seed_batches: 0,
        };
        for i in 0..24 {
            let project = PROJECTS[i % PROJECTS.len()].0;
            let status = if i % 5 == 4 { "SHUTOFF" } else { "ACTIVE" };
            let image = IMAGES[i % IMAGES.len()].0;
            let flavor = flavor_by(SEEDED_FLAVORS[i % SEEDED_FLAVORS.len()]).unwrap_or(&FLAVORS[1]);
            let id = world.new_server(
                project,
                "usr-admin",
                &format!("{}-{:02}", ["web", "db", "worker"][i % 3], i + 1),
                flavor,
                Some(image),
                status,
            );
            if let Some(server) = world.servers.get_mut(&id) {
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
                if let (Some(server), Some(volume)) = (server, world.volumes.get_mut(&id)) {
                    volume["status"] = json!("in-use");
                    volume["attachments"] = json!([{"server_id": server, "device": "/dev/vdb"}]);
                }
            }
        }
        // A nightly snapshot of each project's first two available volumes (the admin
        // project has none: its volumes are all attached).
        let mut snapshotted: Vec<(String, String, u64)> = Vec::new();
        for (project, _, _) in PROJECTS {
            let of_project = world.volumes.iter().filter(|v| v["status"] == "available");
            let of_project = of_project.filter(|v| v["os-vol-tenant-attr:tenant_id"] == project).take(2);
            snapshotted
                .extend(of_project.map(|v| (str_of(v, "id"), project.to_owned(), v["size"].as_u64().unwrap_or(1))));
        }
        for (volume, project, size) in snapshotted {
            let name = format!("{volume}-nightly");
            world.new_snapshot(&project, "usr-admin", &volume, size, &name, "Nightly snapshot.", "available");
        }
        world
    }

    /// A cloud with no records at all (beside a real Keystone, whose projects it does not
    /// know).
    pub fn empty() -> Self {
        World {
            projects: Records::default(),
            servers: Records::default(),
            volumes: Records::default(),
            images: Records::default(),
            networks: Records::default(),
            snapshots: Records::default(),
            subnets: Records::default(),
            next_id: 1,
            seed_batches: 0,
        }
    }

    /// Adds the realistic records `seed` asks for, timestamped in the two years before
    /// now; the same seed on the same world adds the same records.
    pub fn populate(&mut self, seed: &Seed) {
        self.populate_at(seed, SystemTime::now());
    }

    /// [`World::populate`] with timestamps in the two years before `now`.
    pub fn populate_at(&mut self, seed: &Seed, now: SystemTime) {
        let context = self.seed_context(now);
        let batch = seed::generate(&context, seed);
        self.absorb(batch);
    }

    /// What the next batch needs to know of this world (it takes that batch's number):
    /// taken under the lock, then the batch is generated without it.
    pub fn seed_context(&mut self, now: SystemTime) -> Context {
        let batch = self.seed_batches;
        self.seed_batches += 1;
        let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
        Context {
            projects: self.projects.iter().map(|p| text(p, "id")).collect(),
            images: self
                .images
                .iter()
                .map(|i| ImageRef {
                    id: text(i, "id"),
                    name: text(i, "name"),
                    min_disk: i["min_disk"].as_u64().unwrap_or(1),
                })
                .collect(),
            servers: self.servers.iter().map(|s| (text(s, "id"), text(s, "tenant_id"))).collect(),
            networks: self.networks.iter().map(|n| (text(n, "name"), text(n, "project_id"))).collect(),
            network_ids: self
                .networks
                .iter()
                .map(|n| {
                    let cidrs =
                        self.subnets.iter().filter(|s| s["network_id"] == n["id"]).map(|s| text(s, "cidr")).collect();
                    (text(n, "id"), text(n, "project_id"), cidrs)
                })
                .collect(),
            volumes: self
                .volumes
                .iter()
                .map(|v| (text(v, "id"), text(v, "os-vol-tenant-attr:tenant_id"), v["size"].as_u64().unwrap_or(1)))
                .collect(),
            batch,
            now,
        }
    }

    /// Adds a generated batch, and its volumes to the servers it attached them to.
    pub fn absorb(&mut self, batch: Batch) {
        for (server, volume) in batch.attached_to_existing {
            let Some(server) = self.servers.get_mut(&server) else { continue };
            {
                if !server["os-extended-volumes:volumes_attached"].is_array() {
                    server["os-extended-volumes:volumes_attached"] = json!([]);
                }
                if let Some(list) = server["os-extended-volumes:volumes_attached"].as_array_mut() {
                    list.push(json!({"id": volume, "delete_on_termination": false}));
                }
            }
        }
        for (network, subnet) in batch.subnets_of_existing {
            if let Some(list) = self.networks.get_mut(&network).and_then(|n| n["subnets"].as_array_mut()) {
                list.push(json!(subnet));
            }
        }
        self.images.extend(batch.images);
        self.networks.extend(batch.networks);
        self.subnets.extend(batch.subnets);
        self.snapshots.extend(batch.snapshots);
        self.servers.extend(batch.servers);
        self.volumes.extend(batch.volumes);
    }

    pub fn totals(&self) -> Totals {
        Totals {
            servers: self.servers.len(),
            volumes: self.volumes.len(),
            images: self.images.len(),
            networks: self.networks.len(),
            snapshots: self.snapshots.len(),
            subnets: self.subnets.len(),
        }
    }

    fn next(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}-{:04}", self.next_id);
        self.next_id += 1;
        id
    }

    pub fn has_project(&self, id: &str) -> bool {
        self.projects.iter().any(|p| p["id"] == id)
    }

    /// Adds a server of `user`'s in `project`; answers its id.
    pub fn new_server(
        &mut self,
        project: &str,
        user: &str,
        name: &str,
        flavor: &Flavor,
        image: Option<&str>,
        status: &str,
    ) -> String {
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
            "id": id, "name": name, "status": status, "tenant_id": project, "user_id": user,
            "flavor": embedded_flavor(flavor),
            "image": image.map_or(json!(""), |i| json!({"id": i})),
            "addresses": {network: [{"addr": format!("10.0.0.{host}"), "version": 4, "OS-EXT-IPS:type": "fixed"}]},
            "metadata": {}, "created": now, "updated": now,
        }));
        id
    }

    /// Adds a volume; answers its id.
    pub fn new_volume(&mut self, project: &str, name: &str, size: u32, description: &str, status: &str) -> String {
        let id = self.next("vol");
        let now = now();
        self.volumes.push(json!({
            "id": id, "name": name, "status": status, "size": size, "os-vol-tenant-attr:tenant_id": project,
            "availability_zone": "nova", "encrypted": false, "multiattach": false, "snapshot_id": null,
            "source_volid": null, "user_id": "usr-admin", "replication_status": null, "consistencygroup_id": null,
            "attachments": [], "description": description, "created_at": now, "updated_at": now,
            "volume_type": "standard", "bootable": "false", "metadata": {},
        }));
        id
    }

    /// Adds a snapshot of `volume` (of `size` GB) in `project`; answers its id.
    #[allow(clippy::too_many_arguments)]
    pub fn new_snapshot(
        &mut self,
        project: &str,
        user: &str,
        volume: &str,
        size: u64,
        name: &str,
        description: &str,
        status: &str,
    ) -> String {
        let id = self.next("snap");
        let now = now();
        self.snapshots.push(json!({
            "id": id, "name": name, "description": description, "status": status, "size": size,
            "volume_id": volume, "os-extended-snapshot-attributes:project_id": project,
            "os-extended-snapshot-attributes:progress": if status == "available" { "100%" } else { "0%" },
            "user_id": user, "group_snapshot_id": null, "consumes_quota": true, "metadata": {},
            "created_at": now, "updated_at": null,
        }));
        id
    }

    /// The snapshots of volume `id`.
    pub fn snapshots_of(&self, id: &str) -> usize {
        self.snapshots.iter().filter(|s| s["volume_id"] == id).count()
    }

    /// Sets a resource's status (and `updated` or `updated_at`) if it exists.
    pub fn set_status(list: &mut Records, id: &str, status: &str) -> bool {
        match list.get_mut(id) {
            Some(item) => {
                item["status"] = json!(status);
                if item.get("os-extended-snapshot-attributes:progress").is_some() && status == "available" {
                    item["os-extended-snapshot-attributes:progress"] = json!("100%");
                }
                for key in ["updated", "updated_at"] {
                    if item.get(key).is_some() {
                        item[key] = json!(now());
                    }
                }
                true
            }
            None => false,
        }
    }
}

fn str_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

/// A subnet as Neutron shows it: DHCP on, the first address the gateway, the rest of the
/// range its allocation pool.
pub fn subnet_json(id: &str, name: &str, network: &str, project: &str, cidr: &str, at: &str) -> Value {
    let range = super::cidr::Cidr::parse(cidr);
    let (gateway, pool) = match &range {
        Some(range) => (json!(range.host(1)), json!([{"start": range.host(2), "end": range.last_host()}])),
        None => (Value::Null, json!([])),
    };
    let version = if range.as_ref().is_some_and(|r| r.v6) { 6 } else { 4 };
    json!({
        "id": id, "name": name, "network_id": network, "project_id": project, "tenant_id": project,
        "cidr": cidr, "ip_version": version, "gateway_ip": gateway, "enable_dhcp": true,
        "allocation_pools": pool, "dns_nameservers": [], "host_routes": [], "description": "",
        "ipv6_ra_mode": null, "ipv6_address_mode": null, "subnetpool_id": null, "service_types": [],
        "segment_id": null, "tags": [], "revision_number": 0, "created_at": at, "updated_at": at,
    })
}
