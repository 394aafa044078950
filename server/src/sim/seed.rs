//! Realistic data at scale for the simulator: a batch of servers, volumes, volume
//! snapshots, images, networks and subnets that reads like a real cloud's listings — UUID ids, names drawn from teams,
//! services, roles, environments and regions, descriptions of varying length, metadata,
//! timestamps spread over the last two years, a realistic mix of statuses — so that
//! payload sizes and compression ratios measured against the simulator mean something
//! (one repeated character compresses a hundredfold; real Cinder JSON five to ten times).
//!
//! A batch is a pure function of a [`Context`] (what the world already holds, taken
//! under its lock in a moment) and a [`Seed`] (counts and the rng seed), so it can be
//! generated outside the lock while the simulator keeps answering, and is the same for
//! the same seed every run. Each batch mixes its sequence number into the rng seed, so
//! seeding twice with the same seed adds new records rather than the same ids again.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::cidr::Cidr;

/// How many records of each kind to add, and the rng seed: the body of `POST
/// /_sim/seed` and the value of `--sim-seed volumes=36000,servers=2000`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub servers: u64,
    #[serde(default)]
    pub volumes: u64,
    #[serde(default)]
    pub images: u64,
    #[serde(default)]
    pub networks: u64,
    /// Snapshots of volumes (this batch's and the world's), besides none.
    #[serde(default)]
    pub snapshots: u64,
    /// Subnets added to networks (this batch's and the world's), besides the one to
    /// three each new network comes with.
    #[serde(default)]
    pub subnets: u64,
    /// The rng seed; absent: [`DEFAULT_RNG_SEED`], so that runs repeat by default.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The most records of one kind one request (or flag) may add. 200,000 volumes are
/// some 300 MB of JSON values in the simulator and as many again in the store: more than
/// any test or benchmark needs, less than a laptop holds.
pub const MAX_PER_KIND: u64 = 200_000;

/// The rng seed when none is given.
pub const DEFAULT_RNG_SEED: u64 = 0x5741_1eca_5700_0001;

impl Seed {
    /// Adds nothing.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
    }

    pub fn rng_seed(&self) -> u64 {
        self.seed.unwrap_or(DEFAULT_RNG_SEED)
    }

    /// Refuses a count over [`MAX_PER_KIND`], naming its field.
    pub fn check(&self) -> Result<(), String> {
        for (field, count) in self.counts() {
            if count > MAX_PER_KIND {
                return Err(format!("{field} must be at most {MAX_PER_KIND} (asked for {count})"));
            }
        }
        Ok(())
    }

    fn counts(&self) -> [(&'static str, u64); 6] {
        [
            ("servers", self.servers),
            ("volumes", self.volumes),
            ("images", self.images),
            ("networks", self.networks),
            ("snapshots", self.snapshots),
            ("subnets", self.subnets),
        ]
    }
}

impl FromStr for Seed {
    type Err = String;

    /// `volumes=36000,servers=2000[,images=N][,networks=N][,snapshots=N][,subnets=N][,seed=N]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut seed = Seed::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("`{part}` is not key=number"))?;
            let value: u64 =
                value.trim().parse().map_err(|e| format!("{}: `{}` is not a number: {e}", key.trim(), value.trim()))?;
            match key.trim() {
                "servers" => seed.servers = value,
                "volumes" => seed.volumes = value,
                "images" => seed.images = value,
                "networks" => seed.networks = value,
                "snapshots" => seed.snapshots = value,
                "subnets" => seed.subnets = value,
                "seed" => seed.seed = Some(value),
                other => {
                    return Err(format!(
                        "unknown key `{other}`: expected servers, volumes, images, networks, snapshots, subnets or seed"
                    ));
                }
            }
        }
        seed.check()?;
        Ok(seed)
    }
}

/// What a batch needs to know of the world it joins.
#[derive(Clone, Debug)]
pub struct Context {
    /// Project ids; the first is the administrators' (owner of public images).
    pub projects: Vec<String>,
    pub images: Vec<ImageRef>,
    /// `(id, project)` of every server.
    pub servers: Vec<(String, String)>,
    /// `(name, project)` of every network.
    pub networks: Vec<(String, String)>,
    /// `(id, project, CIDRs of its subnets)` of every network.
    pub network_ids: Vec<(String, String, Vec<String>)>,
    /// `(id, project, size)` of every volume.
    pub volumes: Vec<(String, String, u64)>,
    /// This batch's sequence number in its world.
    pub batch: u64,
    /// Timestamps fall in the two years before this.
    pub now: SystemTime,
}

/// An image a server may boot from or a volume may be made of.
#[derive(Clone, Debug)]
pub struct ImageRef {
    pub id: String,
    pub name: String,
    pub min_disk: u64,
}

/// New records in OpenStack's JSON shapes, and the volumes they attach to servers that
/// were already there (`(server id, volume id)`), for the servers' side of it.
#[derive(Debug, Default)]
pub struct Batch {
    pub servers: Vec<Value>,
    pub volumes: Vec<Value>,
    pub images: Vec<Value>,
    pub networks: Vec<Value>,
    pub snapshots: Vec<Value>,
    pub subnets: Vec<Value>,
    pub attached_to_existing: Vec<(String, String)>,
    /// Subnets added to networks that were already there (`(network id, subnet id)`).
    pub subnets_of_existing: Vec<(String, String)>,
}

/// Generates the batch `seed` asks for, deterministically from `context` and its seed.
pub fn generate(context: &Context, seed: &Seed) -> Batch {
    let mixed = seed.rng_seed() ^ context.batch.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut g = Gen {
        rng: StdRng::seed_from_u64(mixed),
        now: context.now,
        projects: context.projects.clone(),
        users: Vec::new(),
        hosts: Vec::new(),
    };
    g.users = (0..48).map(|_| g.hex(32)).collect();
    g.hosts =
        (0..64).map(|i| (format!("cmp-{}-r{:02}-{:02}", g.pick(&REGIONS), i / 8 + 1, i % 8 + 1), g.hex(56))).collect();
    let mut batch = Batch::default();

    let mut images = context.images.clone();
    for _ in 0..seed.images {
        let (record, reference) = g.image();
        images.push(reference);
        batch.images.push(record);
    }
    let mut networks = context.networks.clone();
    for _ in 0..seed.networks {
        let record = g.network();
        networks.push((str_of(&record["name"]), str_of(&record["project_id"])));
        batch.networks.push(record);
    }
    for _ in 0..seed.servers {
        batch.servers.push(g.server(&images, &networks));
    }

    // In-use volumes attach to servers of their project: this batch's first, then those
    // the world already had.
    let mut by_project: HashMap<&str, (Vec<usize>, Vec<&str>)> = HashMap::new();
    for (i, server) in batch.servers.iter().enumerate() {
        if let Some(project) = server["tenant_id"].as_str() {
            by_project.entry(project).or_default().0.push(i);
        }
    }
    for (id, project) in &context.servers {
        by_project.entry(project).or_default().1.push(id);
    }
    let mut devices: HashMap<String, u8> = HashMap::new();
    let mut attachments: Vec<(usize, String)> = Vec::new();
    for _ in 0..seed.volumes {
        let project = g.project();
        let candidates = by_project.get(project.as_str());
        let server = candidates.and_then(|(new, old)| {
            if !new.is_empty() {
                let i = new[g.rng.random_range(0..new.len())];
                Some((Some(i), str_of(&batch.servers[i]["id"])))
            } else if !old.is_empty() {
                Some((None, old[g.rng.random_range(0..old.len())].to_owned()))
            } else {
                None
            }
        });
        let volume = g.volume(&project, server.as_ref().map(|(_, id)| id.as_str()), &images, &mut devices);
        if volume["status"] == "in-use"
            && let Some((index, server_id)) = server
        {
            let volume_id = str_of(&volume["id"]);
            match index {
                Some(i) => attachments.push((i, volume_id)),
                None => batch.attached_to_existing.push((server_id, volume_id)),
            }
        }
        batch.volumes.push(volume);
    }
    for (i, volume_id) in attachments {
        if let Some(list) = batch.servers[i]["os-extended-volumes:volumes_attached"].as_array_mut() {
            list.push(json!({"id": volume_id, "delete_on_termination": false}));
        }
    }
    // Subnets and snapshots come last, so that the records above are the same with or
    // without them for a seed.
    subnets(&mut g, context, seed, &mut batch);
    let volumes: Vec<(String, String, u64)> =
        context
            .volumes
            .iter()
            .cloned()
            .chain(batch.volumes.iter().map(|v| {
                (str_of(&v["id"]), str_of(&v["os-vol-tenant-attr:tenant_id"]), v["size"].as_u64().unwrap_or(1))
            }))
            .collect();
    if !volumes.is_empty() {
        for _ in 0..seed.snapshots {
            let (volume, project, size) = &volumes[g.rng.random_range(0..volumes.len())];
            batch.snapshots.push(g.snapshot(volume, project, *size));
        }
    }
    batch
}

/// The subnets of this batch's networks (the ids each network already lists), then
/// `seed.subnets` more on networks old and new, each with a range that overlaps no other
/// subnet of its network.
fn subnets(g: &mut Gen, context: &Context, seed: &Seed, batch: &mut Batch) {
    let mut networks: Vec<(String, String, Vec<Cidr>, bool)> = context
        .network_ids
        .iter()
        .map(|(id, project, cidrs)| {
            (id.clone(), project.clone(), cidrs.iter().filter_map(|c| Cidr::parse(c)).collect(), false)
        })
        .collect();
    let mut listed: Vec<(usize, String)> = Vec::new();
    for network in &batch.networks {
        let index = networks.len();
        networks.push((str_of(&network["id"]), str_of(&network["project_id"]), Vec::new(), true));
        for id in network["subnets"].as_array().into_iter().flatten() {
            listed.push((index, str_of(id)));
        }
    }
    for (index, id) in listed {
        let record = g.subnet(&id, &mut networks[index]);
        batch.subnets.push(record);
    }
    if networks.is_empty() {
        return;
    }
    for _ in 0..seed.subnets {
        let index = g.rng.random_range(0..networks.len());
        let id = g.uuid();
        let record = g.subnet(&id, &mut networks[index]);
        let (network, _, _, new) = &networks[index];
        if *new {
            let position = batch.networks.iter().position(|n| n["id"] == network.as_str());
            if let Some(list) = position.and_then(|i| batch.networks[i]["subnets"].as_array_mut()) {
                list.push(json!(id));
            }
        } else {
            batch.subnets_of_existing.push((network.clone(), id));
        }
        batch.subnets.push(record);
    }
}

fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

const TEAMS: [&str; 24] = [
    "billing",
    "payments",
    "search",
    "identity",
    "platform",
    "data",
    "ml",
    "analytics",
    "checkout",
    "catalog",
    "growth",
    "infra",
    "security",
    "observability",
    "mobile",
    "ads",
    "logistics",
    "support",
    "finance",
    "media",
    "risk",
    "pricing",
    "messaging",
    "edge",
];
const SERVICES: [&str; 32] = [
    "pg",
    "mysql",
    "redis",
    "kafka",
    "elastic",
    "minio",
    "gitlab",
    "jenkins",
    "grafana",
    "prometheus",
    "loki",
    "vault",
    "consul",
    "etcd",
    "rabbitmq",
    "cassandra",
    "clickhouse",
    "spark",
    "airflow",
    "nginx",
    "haproxy",
    "k8s",
    "ci-runner",
    "jupyter",
    "mongo",
    "zookeeper",
    "keycloak",
    "harbor",
    "nexus",
    "trino",
    "flink",
    "opensearch",
];
const ROLES: [&str; 20] = [
    "data",
    "wal",
    "logs",
    "cache",
    "backup",
    "scratch",
    "replica",
    "primary",
    "archive",
    "snapshot",
    "tmp",
    "index",
    "media",
    "home",
    "root",
    "state",
    "queue",
    "spool",
    "artifacts",
    "export",
];
const ENVS: [&str; 7] = ["prod", "staging", "dev", "qa", "perf", "sandbox", "canary"];
const REGIONS: [&str; 12] = [
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
    "ap-southeast-2",
    "sa-east-1",
];
const PEOPLE: [&str; 26] = [
    "alice", "bob", "chen", "dmitri", "elena", "farah", "goran", "hana", "ivan", "jonas", "kenji", "lucia", "maria",
    "nils", "olga", "priya", "quentin", "rosa", "sven", "tariq", "uma", "viktor", "wei", "xavier", "yusuf", "zoe",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const PURPOSES: [&str; 16] = [
    "Nightly snapshot target",
    "Primary data disk",
    "Write-ahead log volume",
    "Scratch space",
    "Replica storage",
    "Build cache",
    "Long-term archive",
    "Log spool",
    "Object store backing disk",
    "Home directories",
    "Index shards",
    "Staging area for ETL jobs",
    "Boot disk",
    "Message broker journal",
    "Model checkpoints",
    "Temporary restore target",
];
const SYSTEMS: [&str; 14] = [
    "warehouse",
    "API cluster",
    "search index",
    "message queue",
    "CI fleet",
    "reporting database",
    "feature store",
    "metrics pipeline",
    "session store",
    "payment ledger",
    "recommendation service",
    "event bus",
    "customer portal",
    "batch scheduler",
];
const EVENTS: [&str; 6] =
    ["storage migration", "Black Friday load test", "quarterly capacity review", "incident", "audit", "re-platforming"];
const EXTRAS: [&str; 8] = [
    "Encrypted at rest.",
    "Do not detach while the service is running.",
    "Snapshots are taken by the backup operator.",
    "Performance tier chosen after the last latency review.",
    "Replicated to the secondary site every night.",
    "Kept for compliance; ask before deleting.",
    "Created by the provisioning pipeline.",
    "Mount options tuned for large sequential writes.",
];
const VOLUME_TYPES: [(&str, u32); 6] =
    [("__DEFAULT__", 20), ("ssd", 30), ("hdd", 15), ("nvme-replicated", 10), ("ceph-rbd", 20), ("standard", 5)];
const VOLUME_STATUSES: [(&str, u32); 9] = [
    ("available", 440),
    ("in-use", 480),
    ("error", 20),
    ("creating", 10),
    ("downloading", 5),
    ("backing-up", 15),
    ("extending", 5),
    ("error_deleting", 5),
    ("maintenance", 5),
];
const VOLUME_SIZES: [(u64, u32); 17] = [
    (1, 3),
    (5, 5),
    (10, 15),
    (20, 12),
    (30, 5),
    (40, 8),
    (50, 10),
    (80, 4),
    (100, 12),
    (150, 2),
    (200, 7),
    (250, 3),
    (500, 6),
    (750, 1),
    (1000, 4),
    (2000, 2),
    (4096, 1),
];
const SERVER_STATUSES: [(&str, u32); 7] = [
    ("ACTIVE", 850),
    ("SHUTOFF", 100),
    ("ERROR", 20),
    ("PAUSED", 10),
    ("SUSPENDED", 10),
    ("BUILD", 5),
    ("VERIFY_RESIZE", 5),
];
/// `(distribution, versions, variant, size range in MB, min_disk GB)`.
type Distro = (&'static str, &'static [&'static str], &'static str, (u64, u64), u64);
const DISTROS: [Distro; 9] = [
    ("ubuntu", &["20.04", "22.04", "24.04", "25.04"], "server-cloudimg-amd64", (550, 800), 10),
    ("debian", &["11", "12", "13"], "genericcloud-amd64", (300, 450), 8),
    ("rocky", &["8.10", "9.5", "9.6"], "GenericCloud-Base", (600, 1200), 10),
    ("almalinux", &["9.5", "10.0"], "GenericCloud", (500, 900), 10),
    ("fedora", &["41", "42"], "Cloud-Base-Generic", (400, 600), 5),
    ("centos-stream", &["9", "10"], "GenericCloud-x86_64", (1000, 1400), 10),
    ("windows-server", &["2019", "2022", "2025"], "std-eval", (9000, 22000), 40),
    ("flatcar", &["4152.2.3", "4230.1.0"], "stable-openstack", (450, 550), 8),
    ("cirros", &["0.6.2", "0.6.3"], "x86_64-disk", (20, 22), 1),
];
const METADATA_KEYS: [&str; 11] = [
    "owner",
    "backup",
    "cost-center",
    "env",
    "managed-by",
    "ticket",
    "app",
    "retention",
    "created-by",
    "snapshot-policy",
    "cinder.csi.openstack.org/cluster",
];
const SNAPSHOT_STATUSES: [(&str, u32); 6] =
    [("available", 920), ("creating", 20), ("error", 20), ("deleting", 10), ("error_deleting", 10), ("backing-up", 20)];
const SERVER_METADATA_KEYS: [&str; 7] =
    ["owner", "env", "app", "ansible-group", "monitoring", "ha-group", "k8s.io/role"];

/// The generator's state: the seeded rng and the pools records share (users create many
/// records each, and servers run on a few dozen hosts).
struct Gen {
    rng: StdRng,
    now: SystemTime,
    projects: Vec<String>,
    users: Vec<String>,
    hosts: Vec<(String, String)>,
}

impl Gen {
    fn pick<T: Copy>(&mut self, list: &[T]) -> T {
        list[self.rng.random_range(0..list.len())]
    }

    fn weighted<T: Copy>(&mut self, list: &[(T, u32)]) -> T {
        let total: u32 = list.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.random_range(0..total);
        for (item, weight) in list {
            if roll < *weight {
                return *item;
            }
            roll -= weight;
        }
        list[list.len() - 1].0
    }

    fn hex(&mut self, digits: usize) -> String {
        let mut out = String::with_capacity(digits);
        for _ in 0..digits {
            let _ = write!(out, "{:x}", self.rng.random_range(0..16u8));
        }
        out
    }

    /// A version 4 UUID (RFC 9562: random bits but the version nibble and the variant),
    /// from the seeded rng so that runs repeat.
    fn uuid(&mut self) -> String {
        let mut b: [u8; 16] = self.rng.random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }

    /// A project, the administrators' less often than the others.
    fn project(&mut self) -> String {
        let n = self.projects.len();
        if n == 0 {
            return "prj-admin".into();
        }
        // Weight 1 for the first (admin) project, 3 for each other.
        let roll = self.rng.random_range(0..(3 * n - 2));
        self.projects[if roll == 0 { 0 } else { (roll - 1) / 3 + 1 }].clone()
    }

    /// A moment in the two years before `now`, and one between it and `now` (weighted
    /// towards recent: most records were touched lately).
    fn times(&mut self) -> (SystemTime, SystemTime) {
        let two_years = 730 * 24 * 3600;
        let age = self.rng.random_range(3600..two_years);
        let created = self.now - Duration::from_secs(age);
        let since: f64 = self.rng.random();
        let updated = created + Duration::from_secs((age as f64 * (1.0 - since * since)) as u64);
        (created, updated)
    }

    fn date(t: SystemTime) -> String {
        humantime::format_rfc3339_seconds(t).to_string()[..10].replace('-', "")
    }

    fn volume_name(&mut self) -> Option<String> {
        let (svc, role, env, team) = (self.pick(&SERVICES), self.pick(&ROLES), self.pick(&ENVS), self.pick(&TEAMS));
        let n = self.rng.random_range(1..100);
        Some(match self.rng.random_range(0..100) {
            0 => return None,
            1..=20 => {
                let (region, role2) = (self.pick(&REGIONS), self.pick(&ROLES));
                format!("{svc}-{role}-{region}-{role2}-{n:02}")
            }
            21..=40 => format!("{svc}-{role}-{:04}", self.rng.random_range(0..10_000)),
            41..=58 => format!("{team}-{svc}-{env}-{role}-{n}"),
            59..=72 => format!("{svc}-{env}-{n:02}-{role}"),
            73..=82 => {
                let (created, _) = self.times();
                format!("vol-{team}-{}-{}", Self::date(created), self.hex(4))
            }
            83..=90 => format!("pvc-{}", self.uuid()),
            _ => {
                let (created, _) = self.times();
                format!("backup-{svc}-{env}-{}-{n}", Self::date(created))
            }
        })
    }

    fn server_name(&mut self) -> String {
        let (svc, env, team, region) = (self.pick(&SERVICES), self.pick(&ENVS), self.pick(&TEAMS), self.pick(&REGIONS));
        match self.rng.random_range(0..10) {
            0..=2 => format!("{svc}-{env}-{region}-{:02}", self.rng.random_range(1..100)),
            3..=4 => format!("{team}-{svc}-{}-{:03}", self.pick(&ROLES), self.rng.random_range(1..1000)),
            5..=6 => format!(
                "k8s-{env}-{}-{:03}",
                self.pick(&["worker", "master", "ingress", "gpu"]),
                self.rng.random_range(1..1000)
            ),
            7 => format!("ci-runner-{:04}", self.rng.random_range(0..10_000)),
            8 => format!("{team}-jumpbox-{:02}", self.rng.random_range(1..100)),
            _ => format!("{team}-{env}-{}", self.hex(6)),
        }
    }

    fn description(&mut self) -> Option<String> {
        if self.rng.random_bool(0.22) {
            return None;
        }
        let (purpose, team, system) = (self.pick(&PURPOSES), self.pick(&TEAMS), self.pick(&SYSTEMS));
        let mut text = format!("{purpose} for the {team} {system}");
        match self.rng.random_range(0..9) {
            0 => text += &format!(", retained {} days", self.pick(&[3, 7, 14, 30, 90, 365])),
            1 => text += ", rotated weekly",
            2 => {
                let (_, t) = self.times();
                text +=
                    &format!(", restored from backup on {}", &humantime::format_rfc3339_seconds(t).to_string()[..10]);
            }
            3 => text += &format!(", migrated from the old {} pool", self.pick(&REGIONS)),
            4 => text += &format!("; do not delete without asking #{team}-oncall"),
            5 => text += &format!(", resized in {} after the {}", self.pick(&MONTHS), self.pick(&EVENTS)),
            6 => text += &format!(", owned by {}", self.pick(&PEOPLE)),
            7 => {
                let project = self.pick(&["OPS", "INFRA", "DATA", "SEC", "PLAT"]);
                text += &format!(" (see {project}-{})", self.rng.random_range(100..10_000));
            }
            _ => {}
        }
        text.push('.');
        for _ in 0..self.rng.random_range(0..3) {
            text.push(' ');
            text += self.pick(&EXTRAS);
        }
        Some(text)
    }

    fn metadata(&mut self, keys: &[&'static str], most: usize, team: &str, env: &str) -> Map<String, Value> {
        let wanted = self.weighted(&[(0, 30), (1, 20), (2, 20), (3, 15), (4, 10), (5, 5)]).min(most);
        let mut map = Map::new();
        while map.len() < wanted {
            let key = self.pick(keys);
            let value = match key {
                "owner" => format!("team-{team}"),
                "backup" => self.pick(&["daily", "weekly", "hourly", "none"]).to_owned(),
                "cost-center" => format!("cc-{}", self.rng.random_range(1000..10_000)),
                "env" => env.to_owned(),
                "managed-by" => self.pick(&["terraform", "ansible", "heat", "manual", "k8s-csi"]).to_owned(),
                "ticket" => format!("{}-{}", self.pick(&["OPS", "INFRA", "DATA"]), self.rng.random_range(100..20_000)),
                "app" | "ansible-group" => self.pick(&SERVICES).to_owned(),
                "retention" => format!("{}d", self.pick(&[7, 14, 30, 90, 365])),
                "created-by" => self.pick(&PEOPLE).to_owned(),
                "snapshot-policy" => self.pick(&["gold", "silver", "bronze"]).to_owned(),
                "cinder.csi.openstack.org/cluster" => format!("k8s-{env}-{}", self.pick(&REGIONS)),
                "monitoring" => self.pick(&["enabled", "disabled"]).to_owned(),
                "ha-group" => format!("{team}-{}", self.rng.random_range(1..10)),
                _ => self.pick(&["worker", "control-plane", "ingress"]).to_owned(),
            };
            map.insert(key.to_owned(), json!(value));
        }
        map
    }

    fn image(&mut self) -> (Value, ImageRef) {
        let id = self.uuid();
        let (created, updated) = self.times();
        let (distro, versions, variant, (low, high), min_disk) = self.pick(&DISTROS);
        let version = self.pick(versions);
        let team = self.pick(&TEAMS);
        let (name, visibility, owner) = match self.rng.random_range(0..10) {
            0..=3 => (
                format!("{distro}-{version}-{variant}-{}", Self::date(created)),
                "public",
                self.projects.first().cloned(),
            ),
            4..=5 => (
                format!("{team}-{}-golden-v{}", self.pick(&SERVICES), self.rng.random_range(1..60)),
                "private",
                Some(self.project()),
            ),
            6..=7 => (
                format!("{team}-{distro}-{version}-hardened-{}", Self::date(created)),
                self.pick(&["shared", "private", "community"]),
                Some(self.project()),
            ),
            _ => (format!("snapshot-{}-{}", self.server_name(), Self::date(created)), "private", Some(self.project())),
        };
        let size = self.rng.random_range(low..=high) * 1_048_576 + self.rng.random_range(0..1_048_576);
        let status =
            self.weighted(&[("active", 930), ("queued", 20), ("saving", 10), ("deactivated", 20), ("importing", 20)]);
        let disk_format = self.weighted(&[("qcow2", 70), ("raw", 25), ("vmdk", 5)]);
        let tags: Vec<&str> = if self.rng.random_bool(0.3) {
            vec![self.pick(&["golden", "cis-level1", "gpu", "fips", "latest"])]
        } else {
            vec![]
        };
        let record = json!({
            "id": id, "name": name, "status": status, "visibility": visibility, "owner": owner,
            "size": if status == "queued" { None } else { Some(size) },
            "virtual_size": if status == "active" { Some(size * 3) } else { None },
            "min_disk": min_disk, "min_ram": if distro == "windows-server" { 4096 } else { 0 },
            "disk_format": disk_format, "container_format": "bare",
            "checksum": self.hex(32), "os_hash_algo": "sha512", "os_hash_value": self.hex(128),
            "created_at": humantime::format_rfc3339_seconds(created).to_string(),
            "updated_at": humantime::format_rfc3339_seconds(updated).to_string(),
            "tags": tags, "protected": visibility == "public", "os_hidden": false,
            "os_distro": distro, "os_version": version, "architecture": "x86_64", "hw_disk_bus": "virtio",
            "self": format!("/v2/images/{id}"), "file": format!("/v2/images/{id}/file"), "schema": "/v2/schemas/image",
        });
        (record, ImageRef { id, name, min_disk })
    }

    fn network(&mut self) -> Value {
        let id = self.uuid();
        let project = self.project();
        let (team, env, svc, region) = (self.pick(&TEAMS), self.pick(&ENVS), self.pick(&SERVICES), self.pick(&REGIONS));
        let name = match self.rng.random_range(0..6) {
            0..=1 => format!("{team}-{env}-net"),
            2 => format!("{team}-{svc}-{env}-{region}"),
            3 => format!("k8s-{env}-pods-{}", self.rng.random_range(1..50)),
            4 => format!("ci-isolated-{:04}", self.rng.random_range(0..10_000)),
            _ => format!("{env}-dmz-{region}"),
        };
        let (created, updated) = self.times();
        let shared = self.rng.random_bool(0.05);
        let subnets: Vec<String> = (0..self.weighted(&[(1, 70), (2, 25), (3, 5)])).map(|_| self.uuid()).collect();
        let description = if self.rng.random_bool(0.5) {
            format!("{} network for the {team} {}", env, self.pick(&SYSTEMS))
        } else {
            String::new()
        };
        let vxlan = self.rng.random_bool(0.85);
        json!({
            "id": id, "name": name, "tenant_id": project, "project_id": project,
            "status": self.weighted(&[("ACTIVE", 98), ("DOWN", 2)]), "shared": shared,
            "subnets": subnets, "admin_state_up": true, "mtu": if vxlan { 1450 } else { 1500 },
            "router:external": shared && self.rng.random_bool(0.5), "availability_zone_hints": [],
            "availability_zones": ["nova"], "ipv4_address_scope": null, "ipv6_address_scope": null,
            "description": description, "port_security_enabled": true, "l2_adjacency": true, "is_default": false,
            "qos_policy_id": null, "tags": [], "revision_number": self.rng.random_range(1..30),
            "provider:network_type": if vxlan { "vxlan" } else { "vlan" },
            "provider:physical_network": if vxlan { Value::Null } else { json!("physnet1") },
            "provider:segmentation_id": self.rng.random_range(100..16_000),
            "created_at": humantime::format_rfc3339_seconds(created).to_string(),
            "updated_at": humantime::format_rfc3339_seconds(updated).to_string(),
        })
    }

    /// A subnet of `network` (`(id, project, its ranges so far, new)`) with a range that
    /// overlaps none of them: mostly an IPv4 /24 to /27 of the private ranges, some IPv6
    /// /64s.
    fn subnet(&mut self, id: &str, network: &mut (String, String, Vec<Cidr>, bool)) -> Value {
        let (created, updated) = self.times();
        let cidr = loop {
            let text = if self.rng.random_bool(0.15) {
                format!("fd{}:{}:{}::/64", self.hex(2), self.hex(4), self.hex(4))
            } else {
                let prefix = self.weighted(&[(24u8, 70), (25, 10), (26, 10), (27, 5), (22, 5)]);
                let size = 1u32 << (32 - prefix);
                let base: u32 = match self.rng.random_range(0..10) {
                    0..=5 => 0x0a00_0000 | self.rng.random_range(0..0x00ff_ffff),
                    6..=8 => 0xac10_0000 | self.rng.random_range(0..0x000f_ffff),
                    _ => 0xc0a8_0000 | self.rng.random_range(0..0xffff),
                };
                format!("{}/{prefix}", std::net::Ipv4Addr::from(base / size * size))
            };
            let Some(cidr) = Cidr::parse(&text) else { continue };
            if !network.2.iter().any(|other| other.overlaps(&cidr)) {
                break cidr;
            }
        };
        let (team, env) = (self.pick(&TEAMS), self.pick(&ENVS));
        let name = match self.rng.random_range(0..5) {
            0 => String::new(),
            1 => format!("{team}-{env}-subnet"),
            2 => format!("{team}-{env}-{}", if cidr.v6 { "v6" } else { "v4" }),
            3 => format!("k8s-{env}-nodes-{}", self.rng.random_range(1..20)),
            _ => format!("{}-{}-{}", self.pick(&SERVICES), env, self.pick(&REGIONS)),
        };
        let mut record = super::world::subnet_json(
            id,
            &name,
            &network.0,
            &network.1,
            &cidr.canonical(),
            &humantime::format_rfc3339_seconds(created).to_string(),
        );
        record["updated_at"] = json!(humantime::format_rfc3339_seconds(updated).to_string());
        record["enable_dhcp"] = json!(self.rng.random_bool(0.9));
        record["revision_number"] = json!(self.rng.random_range(0..8));
        if self.rng.random_bool(0.6) {
            record["dns_nameservers"] =
                json!(if cidr.v6 { vec!["2001:4860:4860::8888"] } else { vec!["1.1.1.1", "8.8.8.8"] });
        }
        if cidr.v6 {
            record["ipv6_ra_mode"] = json!("slaac");
            record["ipv6_address_mode"] = json!("slaac");
        }
        network.2.push(cidr);
        record
    }

    /// A snapshot of volume `volume` of `project`, `size` GB.
    fn snapshot(&mut self, volume: &str, project: &str, size: u64) -> Value {
        let id = self.uuid();
        let (created, updated) = self.times();
        let status = self.weighted(&SNAPSHOT_STATUSES);
        let (svc, env, team) = (self.pick(&SERVICES), self.pick(&ENVS), self.pick(&TEAMS));
        let name = match self.rng.random_range(0..6) {
            0 => format!("nightly-{svc}-{env}-{}", Self::date(created)),
            1 => format!("pre-upgrade-{team}-{svc}-{}", self.rng.random_range(1..40)),
            2 => format!("{svc}-{}-{}-{}", self.pick(&ROLES), Self::date(created), self.hex(4)),
            3 => format!("snapshot-for-volume-{}", volume.chars().take(8).collect::<String>()),
            4 => format!("velero-{env}-{}", self.uuid()),
            _ => {
                let event = self.pick(&["migration", "resize", "patching", "restore", "audit"]);
                format!("{team}-{env}-before-{event}-{}", self.rng.random_range(1..1000))
            }
        };
        let description = if self.rng.random_bool(0.4) { Value::Null } else { json!(self.description()) };
        let metadata = self.metadata(&METADATA_KEYS, 3, team, env);
        json!({
            "id": id, "name": name, "description": description, "status": status, "size": size,
            "volume_id": volume, "os-extended-snapshot-attributes:project_id": project,
            "os-extended-snapshot-attributes:progress": if status == "creating" { "0%" } else { "100%" },
            "user_id": self.users[self.rng.random_range(0..self.users.len())].clone(),
            "group_snapshot_id": null, "consumes_quota": true, "metadata": metadata,
            "created_at": humantime::format_rfc3339_seconds(created).to_string(),
            "updated_at": humantime::format_rfc3339_seconds(updated).to_string(),
        })
    }

    fn server(&mut self, images: &[ImageRef], networks: &[(String, String)]) -> Value {
        let id = self.uuid();
        let project = self.project();
        let name = self.server_name();
        let (created, updated) = self.times();
        let (flavor_id, flavor, vcpus, ram, disk) = self.pick(&super::world::FLAVORS);
        let status = self.weighted(&SERVER_STATUSES);
        let (power, vm_state) = match status {
            "ACTIVE" => (1, "active"),
            "SHUTOFF" => (4, "stopped"),
            "PAUSED" => (3, "paused"),
            "SUSPENDED" => (4, "suspended"),
            "BUILD" => (0, "building"),
            "VERIFY_RESIZE" => (1, "resized"),
            _ => (0, "error"),
        };
        // A few boot from a volume: Nova then shows `"image": ""`.
        let image = if images.is_empty() || self.rng.random_bool(0.05) {
            json!("")
        } else {
            json!({"id": images[self.rng.random_range(0..images.len())].id})
        };
        let own: Vec<&str> = networks.iter().filter(|(_, p)| *p == project).map(|(n, _)| n.as_str()).collect();
        let network =
            if own.is_empty() { "public".to_owned() } else { own[self.rng.random_range(0..own.len())].to_owned() };
        let mac = format!("fa:16:3e:{}:{}:{}", self.hex(2), self.hex(2), self.hex(2));
        let mut addrs = vec![
            json!({"version": 4, "addr": format!("10.{}.{}.{}", self.rng.random_range(0..256), self.rng.random_range(0..256), self.rng.random_range(2..255)),
                                    "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac}),
        ];
        if self.rng.random_bool(0.2) {
            addrs.push(json!({"version": 4, "addr": format!("203.0.113.{}", self.rng.random_range(2..255)),
                              "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": mac}));
        }
        let (team, env) = (self.pick(&TEAMS), self.pick(&ENVS));
        let metadata = self.metadata(&SERVER_METADATA_KEYS, 4, team, env);
        let (host, host_id) = self.hosts[self.rng.random_range(0..self.hosts.len())].clone();
        let user = self.users[self.rng.random_range(0..self.users.len())].clone();
        let mut groups = vec![json!({"name": "default"})];
        if self.rng.random_bool(0.6) {
            groups.push(json!({"name": format!("{team}-{}", self.pick(&SERVICES))}));
        }
        let created = humantime::format_rfc3339_seconds(created).to_string();
        json!({
            "id": id, "name": name, "status": status, "tenant_id": project, "user_id": user,
            "metadata": metadata, "hostId": host_id, "image": image,
            "flavor": {"id": flavor_id, "original_name": flavor, "vcpus": vcpus, "ram": ram, "disk": disk, "ephemeral": 0, "swap": 0,
                       "extra_specs": {"hw_rng:allowed": "True"}},
            "created": created, "updated": humantime::format_rfc3339_seconds(updated).to_string(),
            "addresses": {network: addrs}, "accessIPv4": "", "accessIPv6": "",
            "key_name": if self.rng.random_bool(0.8) { json!(format!("{}-ed25519", self.pick(&PEOPLE))) } else { Value::Null },
            "OS-DCF:diskConfig": self.pick(&["MANUAL", "AUTO"]), "OS-EXT-AZ:availability_zone": self.pick(&["nova", "az1", "az2", "az3"]),
            "OS-EXT-SRV-ATTR:host": host, "OS-EXT-SRV-ATTR:hypervisor_hostname": format!("{host}.cloud.internal"),
            "OS-EXT-STS:power_state": power, "OS-EXT-STS:task_state": null, "OS-EXT-STS:vm_state": vm_state,
            "OS-SRV-USG:launched_at": if status == "BUILD" { Value::Null } else { json!(created) },
            "OS-SRV-USG:terminated_at": null, "security_groups": groups,
            "os-extended-volumes:volumes_attached": [], "progress": 0, "config_drive": "", "locked": false,
            "description": null, "tags": [],
        })
    }

    fn volume(
        &mut self,
        project: &str,
        server: Option<&str>,
        images: &[ImageRef],
        devices: &mut HashMap<String, u8>,
    ) -> Value {
        let id = self.uuid();
        let name = self.volume_name();
        let (created, updated) = self.times();
        let mut status = self.weighted(&VOLUME_STATUSES);
        if status == "in-use" && server.is_none() {
            status = "available";
        }
        let (team, env) = (self.pick(&TEAMS), self.pick(&ENVS));
        let metadata = self.metadata(&METADATA_KEYS, 5, team, env);
        let bootable = !images.is_empty() && self.rng.random_bool(0.25);
        let image = bootable.then(|| images[self.rng.random_range(0..images.len())].clone());
        let mut size = self.weighted(&VOLUME_SIZES);
        if let Some(image) = &image {
            size = size.max(image.min_disk);
        }
        let attachments = match (status, server) {
            ("in-use", Some(server)) => {
                let next = devices.entry(server.to_owned()).or_insert(b'b');
                let device = if bootable { "/dev/vda".to_owned() } else { format!("/dev/vd{}", *next as char) };
                *next = if *next >= b'z' { b'b' } else { *next + 1 };
                let (host, _) = self.hosts[self.rng.random_range(0..self.hosts.len())].clone();
                json!([{"server_id": server, "attachment_id": self.uuid(), "volume_id": id, "id": id,
                        "device": device, "host_name": host,
                        "attached_at": humantime::format_rfc3339_seconds(updated).to_string()}])
            }
            _ => json!([]),
        };
        let mut record = json!({
            "id": id, "name": name, "status": status, "size": size, "os-vol-tenant-attr:tenant_id": project,
            "user_id": self.users[self.rng.random_range(0..self.users.len())].clone(),
            "attachments": attachments, "description": self.description(),
            "created_at": humantime::format_rfc3339_seconds(created).to_string(),
            "updated_at": humantime::format_rfc3339_seconds(updated).to_string(),
            "volume_type": self.weighted(&VOLUME_TYPES), "bootable": if bootable { "true" } else { "false" },
            "metadata": metadata, "availability_zone": self.pick(&["nova", "az1", "az2", "az3"]),
            "encrypted": self.rng.random_bool(0.15), "multiattach": false, "snapshot_id": null,
            "source_volid": null, "consistencygroup_id": null, "group_id": null, "replication_status": null,
            "os-vol-host-attr:host": format!("cinder-{}@{}#pool-{}", self.rng.random_range(1..4), self.pick(&["ceph", "lvm", "netapp"]), self.rng.random_range(1..5)),
            "os-vol-mig-status-attr:migstat": null, "os-vol-mig-status-attr:name_id": null,
        });
        if let Some(image) = image {
            record["volume_image_metadata"] = json!({"image_id": image.id, "image_name": image.name,
                "min_disk": image.min_disk.to_string(), "min_ram": "0", "container_format": "bare",
                "disk_format": "qcow2", "checksum": self.hex(32)});
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::world::World;
    use super::*;

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    /// The world after `seed`, and what it held before.
    fn grown(seed: &Seed) -> (World, crate::sim::world::Totals) {
        let mut world = World::seeded();
        let before = world.totals();
        world.populate_at(seed, at());
        (world, before)
    }

    fn ids<'a>(list: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
        list.into_iter().map(|v| str_of(&v["id"])).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_records_and_another_seed_others() {
        let seed =
            Seed { servers: 40, volumes: 300, images: 12, networks: 8, snapshots: 50, subnets: 20, seed: Some(42) };
        let (a, before) = grown(&seed);
        let (b, _) = grown(&seed);
        assert_eq!(a.volumes.from(before.volumes), b.volumes.from(before.volumes));
        assert_eq!(a.servers.from(before.servers), b.servers.from(before.servers));
        assert_eq!(a.images.from(before.images), b.images.from(before.images));
        assert_eq!(a.networks.from(before.networks), b.networks.from(before.networks));
        assert_eq!(a.snapshots.from(before.snapshots), b.snapshots.from(before.snapshots));
        assert_eq!(a.subnets.from(before.subnets), b.subnets.from(before.subnets));
        assert_eq!(a.totals().volumes, before.volumes + 300);
        assert_eq!(a.totals().snapshots, before.snapshots + 50);
        // Each new network's one to three subnets, and 20 more.
        assert!(a.totals().subnets >= before.subnets + 8 + 20, "{:?}", a.totals());
        // Seeding snapshots and subnets leaves the other records as they were.
        let (plain, _) = grown(&Seed { snapshots: 0, subnets: 0, ..seed });
        assert_eq!(plain.volumes.from(before.volumes), a.volumes.from(before.volumes));
        assert_eq!(a.totals().servers, before.servers + 40);

        let (c, _) = grown(&Seed { seed: Some(43), ..seed });
        let theirs: HashSet<String> = ids(c.volumes.from(before.volumes)).into_iter().collect();
        assert!(ids(a.volumes.from(before.volumes)).iter().all(|id| !theirs.contains(id)), "another seed, other ids");

        // The same seed once more on the same world adds new records, not the same ids.
        let mut a = a;
        a.populate_at(&seed, at());
        let all = ids(a.volumes.iter());
        assert_eq!(all.len(), before.volumes + 600);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len(), "every volume id is unique");
    }

    #[test]
    fn seeded_volumes_look_like_a_cinder_listing() {
        let (world, before) = grown(&Seed {
            servers: 200,
            volumes: 3000,
            images: 30,
            networks: 20,
            snapshots: 0,
            subnets: 0,
            seed: None,
        });
        let volumes = world.volumes.from(before.volumes);
        let names: HashSet<&str> = volumes.iter().filter_map(|v| v["name"].as_str()).collect();
        assert!(names.len() * 10 >= volumes.len() * 9, "{} distinct names of {}", names.len(), volumes.len());
        let status = |s: &str| volumes.iter().filter(|v| v["status"] == s).count();
        assert!(status("available") + status("in-use") > volumes.len() * 85 / 100);
        assert!(status("in-use") > volumes.len() / 3 && status("error") > 0 && status("creating") > 0);
        let servers: HashMap<String, &Value> = world.servers.iter().map(|s| (str_of(&s["id"]), s)).collect();
        for volume in volumes.iter().filter(|v| v["status"] == "in-use") {
            let server = str_of(&volume["attachments"][0]["server_id"]);
            let server = servers.get(&server).expect("attached to a server that exists");
            assert_eq!(server["tenant_id"], volume["os-vol-tenant-attr:tenant_id"], "of its own project");
            let listed = server["os-extended-volumes:volumes_attached"].as_array().expect("attached list");
            assert!(listed.iter().any(|a| a["id"] == volume["id"]), "the server lists the volume");
        }
        let with_metadata = volumes.iter().filter(|v| v["metadata"].as_object().is_some_and(|m| !m.is_empty())).count();
        assert!(with_metadata > volumes.len() / 2 && with_metadata < volumes.len());
        let descriptions: HashSet<&str> = volumes.iter().filter_map(|v| v["description"].as_str()).collect();
        assert!(descriptions.len() > volumes.len() / 2, "{} distinct descriptions", descriptions.len());
        let projects: HashSet<String> = volumes.iter().map(|v| str_of(&v["os-vol-tenant-attr:tenant_id"])).collect();
        assert_eq!(projects.len(), world.projects.len(), "spread over every project");
        let two_years_ago = humantime::format_rfc3339_seconds(at() - Duration::from_secs(731 * 86_400)).to_string();
        assert!(
            volumes
                .iter()
                .all(|v| str_of(&v["created_at"]) > two_years_ago
                    && str_of(&v["updated_at"]) >= str_of(&v["created_at"]))
        );
    }

    #[test]
    fn the_flag_reads_counts_and_a_seed_and_refuses_what_the_endpoint_refuses() {
        let seed: Seed = "volumes=36000, servers=2000,seed=7".parse().expect("parses");
        assert_eq!(
            seed,
            Seed { servers: 2000, volumes: 36000, images: 0, networks: 0, snapshots: 0, subnets: 0, seed: Some(7) }
        );
        let more: Seed = "snapshots=500,subnets=40".parse().expect("snapshots and subnets");
        assert_eq!((more.snapshots, more.subnets), (500, 40));
        assert!("".parse::<Seed>().expect("empty").is_empty());
        let over = "volumes=10000000".parse::<Seed>().expect_err("over the cap");
        assert!(over.contains("volumes"), "{over}");
        assert!("disks=3".parse::<Seed>().expect_err("unknown").contains("disks"));
        assert!("volumes=many".parse::<Seed>().expect_err("not a number").contains("volumes"));
    }

    #[test]
    fn seeded_snapshots_and_subnets_belong_to_what_exists_and_subnets_do_not_overlap() {
        let seed = Seed { volumes: 400, networks: 30, snapshots: 600, subnets: 120, ..Seed::default() };
        let (world, before) = grown(&seed);
        let snapshots = world.snapshots.from(before.snapshots);
        assert_eq!(snapshots.len(), 600);
        for snapshot in &snapshots {
            let volume = world.volumes.get(&str_of(&snapshot["volume_id"])).expect("of a volume that exists");
            assert_eq!(snapshot["os-extended-snapshot-attributes:project_id"], volume["os-vol-tenant-attr:tenant_id"]);
            assert_eq!(snapshot["size"], volume["size"]);
        }
        let names: HashSet<&str> = snapshots.iter().filter_map(|s| s["name"].as_str()).collect();
        assert!(names.len() * 10 >= snapshots.len() * 9, "{} distinct names", names.len());
        let status = |s: &str| snapshots.iter().filter(|v| v["status"] == s).count();
        assert!(status("available") > snapshots.len() * 8 / 10 && status("available") < snapshots.len());

        let mut by_network: HashMap<String, Vec<Cidr>> = HashMap::new();
        for subnet in world.subnets.iter() {
            let network = world.networks.get(&str_of(&subnet["network_id"])).expect("of a network that exists");
            assert!(network["subnets"].as_array().expect("listed").contains(&subnet["id"]), "the network lists it");
            let cidr = Cidr::parse(&str_of(&subnet["cidr"])).expect("a valid CIDR");
            let others = by_network.entry(str_of(&network["id"])).or_default();
            assert!(others.iter().all(|o| !o.overlaps(&cidr)), "{} overlaps in its network", subnet["cidr"]);
            others.push(cidr);
        }
        let listed: usize = world.networks.iter().map(|n| n["subnets"].as_array().map_or(0, Vec::len)).sum();
        assert_eq!(listed, world.subnets.len(), "every listed subnet exists");
        assert!(
            world.subnets.iter().any(|s| s["ip_version"] == 6) && world.subnets.iter().any(|s| s["ip_version"] == 4)
        );
    }

    #[test]
    fn a_uuid_is_version_4() {
        let mut g = Gen {
            rng: StdRng::seed_from_u64(1),
            now: SystemTime::now(),
            projects: vec![],
            users: vec![],
            hosts: vec![],
        };
        for _ in 0..100 {
            let id = g.uuid();
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{id}");
            assert!(parts[2].starts_with('4'), "{id}");
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
        }
    }
}
