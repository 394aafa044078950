"""A small real OpenStack on loopback, for Stalecast's real-services tests.

    python cloud.py start --dir DIR --stalecast BIN [--token-lifetime 60] [--volume-page-size 2]
    python cloud.py stop --dir DIR

``start`` runs the real Keystone, Glance and Cinder API (the PyPI packages pinned in
requirements.txt, in the virtualenv whose Python runs this script) under gunicorn on
free loopback ports, with sqlite databases, a file image store and Cinder without a
scheduler (``transport_url = fake://``: new volumes stay ``creating``). Nova and
Neutron are Stalecast's simulator (``stalecast sim --keystone URL``), which validates
the real Keystone's tokens and is registered in its catalog. It then seeds the cloud
and writes ``DIR/cloud.json``: the URLs, the users, the projects and the process ids.
``stop`` ends those processes (by the ids in ``cloud.json``, never by name).

Everything lives in DIR: configuration, databases, keys, images, logs.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
BIN = os.path.dirname(os.path.abspath(sys.executable))

ADMIN_PASSWORD = "stalecast"
# Users besides admin: name -> (password, [(project, role)]).
USERS = {
    "alice": ("alice", [("web-team", "member")]),
    "bob": ("bob", [("data-team", "reader")]),
    "carol": ("carol", [("web-team", "member"), ("data-team", "member")]),
}
PROJECTS = {
    "web-team": "Public web front ends",
    "data-team": "Batch and analytics",
    "small-team": "A project with a 1 GB volume quota",
}
IMAGES = 32
VOLUMES = 3
REGION = "RegionOne"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def log(message):
    print(f"[cloud] {message}", file=sys.stderr, flush=True)


def http(method, url, body=None, token=None, ok=(200, 201, 202, 204)):
    """One JSON request; answers (status, headers, parsed body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    if status not in ok:
        raise RuntimeError(f"{method} {url}: {status}: {raw[:500]!r}")
    return status, headers, (json.loads(raw) if raw else None)


def wait_until_up(name, url, process, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see its log")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer at {url} within {seconds} s")


def run(args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def gunicorn(service, port, args, d):
    env = dict(os.environ, STALECAST_WSGI_SERVICE=service, STALECAST_WSGI_ARGS=args)
    env.update({"OS_KEYSTONE_CONFIG_FILES": f"{d}/keystone.conf", "OS_GLANCE_CONFIG_DIR": f"{d}/glance"})
    out = open(f"{d}/{service}.log", "ab")
    return subprocess.Popen(
        [f"{BIN}/gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8",
         "--timeout", "120", "--chdir", HERE, "wsgi_app:application"],
        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )


def authtoken(keystone, user):
    return f"""[keystone_authtoken]
www_authenticate_uri = {keystone}
auth_url = {keystone}
auth_type = password
user_domain_name = Default
project_domain_name = Default
project_name = service
username = {user}
password = {user}
"""


def configure(d, ports, token_lifetime, volume_page_size):
    keystone = f"http://127.0.0.1:{ports['keystone']}"
    os.makedirs(f"{d}/glance", exist_ok=True)
    for sub in ("fernet-keys", "credential-keys", "images", "staging", "tasks", "cinder", "locks"):
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    write(f"{d}/keystone.conf", f"""[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///{d}/keystone.db
[token]
provider = fernet
expiration = {token_lifetime}
[fernet_tokens]
key_repository = {d}/fernet-keys
[credential]
key_repository = {d}/credential-keys
""")
    write(f"{d}/glance/glance-api.conf", f"""[DEFAULT]
use_stderr = true
enabled_backends = fs:file
worker_self_reference_url = http://127.0.0.1:{ports['glance']}
[database]
connection = sqlite:///{d}/glance.db
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {d}/images
[os_glance_staging_store]
filesystem_store_datadir = {d}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {d}/tasks
[paste_deploy]
flavor = keystone
config_file = {VENV}/etc/glance/glance-api-paste.ini
{authtoken(keystone, "glance")}""")
    write(f"{d}/cinder.conf", f"""[DEFAULT]
use_stderr = true
transport_url = fake://
auth_strategy = keystone
api_paste_config = {VENV}/etc/cinder/api-paste.ini
state_path = {d}/cinder
osapi_max_limit = {volume_page_size}
[database]
connection = sqlite:///{d}/cinder.db
[oslo_concurrency]
lock_path = {d}/locks
{authtoken(keystone, "cinder")}""")


class Keystone:
    """Just enough of Keystone's API, as admin, to seed the cloud."""

    def __init__(self, url, token_lifetime):
        self.url = url
        self.lifetime = token_lifetime
        self._token, self._issued = None, 0.0

    @property
    def token(self):
        """An admin token, new once a third of its lifetime has gone (seeding on a busy
        machine may take longer than a short-lived token lives)."""
        if self._token is None or time.monotonic() - self._issued > self.lifetime / 3:
            self._token, self._issued = self.issue("admin", ADMIN_PASSWORD, "admin"), time.monotonic()
        return self._token

    def issue(self, user, password, project):
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        _, headers, answer = http("POST", f"{self.url}/v3/auth/tokens", body)
        return headers["X-Subject-Token"]

    def post(self, path, body):
        return http("POST", f"{self.url}/v3{path}", body, self.token)[2]

    def get(self, path):
        return http("GET", f"{self.url}/v3{path}", token=self.token)[2]

    def put(self, path):
        http("PUT", f"{self.url}/v3{path}", token=self.token)

    def find(self, kind, name):
        return self.get(f"/{kind}?name={name}")[kind][0]["id"]

    def service(self, kind, name, urls):
        """Registers a service with an endpoint per (region, interface, url)."""
        service = self.post("/services", {"service": {"type": kind, "name": name}})["service"]["id"]
        for region, interface, url in urls:
            self.post("/endpoints", {"endpoint": {
                "service_id": service, "interface": interface, "region_id": region, "url": url}})


def seed_identity(ks, ports, sim_port):
    roles = {name: ks.find("roles", name) for name in ("admin", "member", "reader")}
    admin = ks.find("users", "admin")
    projects = {"admin": ks.find("projects", "admin")}
    for name, description in list(PROJECTS.items()) + [("service", "Service users")]:
        projects[name] = ks.post("/projects", {"project": {
            "name": name, "description": description, "domain_id": "default"}})["project"]["id"]
        ks.put(f"/projects/{projects[name]}/users/{admin}/roles/{roles['admin']}")
    # A project where nobody has a role: an admin sees it, but cannot get a token for it.
    projects["unassigned"] = ks.post("/projects", {"project": {
        "name": "unassigned", "description": "No role assignments", "domain_id": "default"}})["project"]["id"]
    users = {"admin": admin}
    for name, (password, grants) in list(USERS.items()) + [("glance", ("glance", [("service", "admin")])),
                                                          ("cinder", ("cinder", [("service", "admin")]))]:
        users[name] = ks.post("/users", {"user": {
            "name": name, "password": password, "domain_id": "default"}})["user"]["id"]
        for project, role in grants:
            ks.put(f"/projects/{projects[project]}/users/{users[name]}/roles/{roles[role]}")
    # A region whose endpoints lead nowhere: a client that ignores the region it is told
    # may pick them.
    ks.post("/regions", {"region": {"id": "RegionTwo"}})
    dead = f"http://127.0.0.1:{free_port()}"
    glance = f"http://127.0.0.1:{ports['glance']}"
    cinder = f"http://127.0.0.1:{ports['cinder']}/v3/%(project_id)s"
    both = lambda url: [(REGION, "public", url), (REGION, "internal", url)]  # noqa: E731
    # Real Glance registers its unversioned root, with the region that does not work first.
    ks.service("image", "glance", [("RegionTwo", "public", dead)] + both(glance))
    for kind in ("block-storage", "volumev3"):
        ks.service(kind, "cinderv3" if kind == "volumev3" else "cinder", both(cinder))
    if sim_port:
        sim = f"http://127.0.0.1:{sim_port}"
        ks.service("compute", "nova", both(f"{sim}/compute/v2.1"))
        # Neutron registers its unversioned root too.
        ks.service("network", "neutron", both(f"{sim}/network"))
    return projects, users


def seed_images(ks, glance):
    for n in range(1, IMAGES + 1):
        http("POST", f"{glance}/v2/images", {
            "name": f"seed-image-{n:02}", "disk_format": "qcow2", "container_format": "bare",
            "visibility": "public" if n % 2 else "private", "min_disk": n % 5}, ks.token)


def seed_volumes(ks, cinder, project):
    for n in range(1, VOLUMES + 1):
        http("POST", f"{cinder}/v3/{project}/volumes", {"volume": {
            "name": f"seed-volume-{n}", "size": 1, "description": "seeded"}}, ks.token)


def seed_quota(ks, cinder, admin_project, project):
    http("PUT", f"{cinder}/v3/{admin_project}/os-quota-sets/{project}", {"quota_set": {"gigabytes": 1}}, ks.token)


def start(d, stalecast, token_lifetime, volume_page_size):
    started = time.monotonic()
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    ports = {name: free_port() for name in ("keystone", "glance", "cinder", "sim")}
    configure(d, ports, token_lifetime, volume_page_size)
    keystone = f"http://127.0.0.1:{ports['keystone']}"
    glance = f"http://127.0.0.1:{ports['glance']}"
    cinder = f"http://127.0.0.1:{ports['cinder']}"
    sim = f"http://127.0.0.1:{ports['sim']}" if stalecast else None
    manage = ["--config-file", f"{d}/keystone.conf"]
    run([f"{BIN}/keystone-manage", *manage, "db_sync"])
    run([f"{BIN}/keystone-manage", *manage, "fernet_setup", "--keystone-user", str(os.getuid()),
         "--keystone-group", str(os.getgid())])
    run([f"{BIN}/keystone-manage", *manage, "credential_setup", "--keystone-user", str(os.getuid()),
         "--keystone-group", str(os.getgid())])
    run([f"{BIN}/keystone-manage", *manage, "bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
         "--bootstrap-region-id", REGION, "--bootstrap-public-url", keystone,
         "--bootstrap-internal-url", keystone])
    pids = {}
    state = {"dir": d, "pids": pids}

    def save():
        write(f"{d}/cloud.json.partial", json.dumps(state, indent=2))
        os.replace(f"{d}/cloud.json.partial", f"{d}/cloud.json")

    procs = {"keystone": gunicorn("keystone", ports["keystone"], "", d)}
    pids["keystone"] = procs["keystone"].pid
    save()
    # The databases of Glance and Cinder while Keystone starts.
    run([f"{BIN}/glance-manage", "--config-file", f"{d}/glance/glance-api.conf", "db_sync"])
    run([f"{BIN}/cinder-manage", "--config-file", f"{d}/cinder.conf", "db", "sync"])
    wait_until_up("keystone", f"{keystone}/v3", procs["keystone"])
    ks = Keystone(keystone, token_lifetime)
    projects, users = seed_identity(ks, ports, ports["sim"] if stalecast else None)
    procs["glance"] = gunicorn("glance", ports["glance"], "", d)
    procs["cinder"] = gunicorn("cinder", ports["cinder"], f"--config-file {d}/cinder.conf", d)
    if stalecast:
        out = open(f"{d}/sim.log", "ab")
        procs["sim"] = subprocess.Popen(
            [stalecast, "sim", "--port", str(ports["sim"]), "--keystone", keystone],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pids.update({name: p.pid for name, p in procs.items()})
    save()
    wait_until_up("glance", glance, procs["glance"])
    wait_until_up("cinder", cinder, procs["cinder"])
    if sim:
        wait_until_up("sim", f"{sim}/compute", procs["sim"])
    seed_images(ks, glance)
    seed_volumes(ks, cinder, projects["admin"])
    seed_quota(ks, cinder, projects["admin"], projects["small-team"])
    state.update({
        "keystone": keystone, "glance": glance, "cinder": cinder, "sim": sim, "region": REGION,
        "tokenLifetimeSeconds": token_lifetime, "volumePageSize": volume_page_size,
        "images": IMAGES, "volumes": VOLUMES, "projects": projects, "users": users,
        "passwords": {"admin": ADMIN_PASSWORD, **{name: p for name, (p, _) in USERS.items()}},
        "startSeconds": round(time.monotonic() - started, 1),
    })
    save()
    log(f"up in {state['startSeconds']} s: keystone {keystone}, glance {glance}, cinder {cinder}, sim {sim}")


def stop(d):
    try:
        with open(f"{os.path.abspath(d)}/cloud.json", encoding="utf-8") as f:
            pids = json.load(f)["pids"]
    except FileNotFoundError:
        return
    for name, pid in pids.items():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 15
    for name, pid in pids.items():
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            # A child of ours (we started it in this process) must also be reaped.
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
                log(f"{name} ({pid}) ignored SIGTERM; killed")
            except ProcessLookupError:
                pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--stalecast", help="the stalecast binary (its simulator plays Nova and Neutron)")
    parser.add_argument("--token-lifetime", type=int, default=60, help="Keystone token lifetime, seconds")
    parser.add_argument("--volume-page-size", type=int, default=2, help="Cinder's osapi_max_limit")
    args = parser.parse_args()
    if args.command == "start":
        try:
            start(args.dir, args.stalecast, args.token_lifetime, args.volume_page_size)
        except Exception:
            stop(args.dir)
            raise
    else:
        stop(args.dir)


if __name__ == "__main__":
    main()
