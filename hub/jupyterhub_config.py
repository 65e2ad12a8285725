"""JupyterHub for a class on one machine: `make hub` (hub/README.md has the real-server and cluster notes).

What it sets up, all from this checkout, on loopback by default:

* JupyterHub with configurable-http-proxy from the npm registry (``hub/node_modules``, ``make hub`` installs it);
* one single-user JupyterLab per student, started from this checkout's ``.venv`` (so the kernel is
  ftlab's, "Python 3 (ftlab)"), in the student's own home folder ``<homes>/<name>``, which gets the
  student copies of the lessons (``ftlab student``) on the first login and is never written over after;
* per-student limits: ``FTLAB_HUB_MEM`` (default 5G, the largest lesson's measured peak plus room) and
  ``FTLAB_HUB_CPUS`` (default 2) — enforced by Linux cgroups when the hub runs as root on a machine
  whose cgroup file system is writable (else only announced to the server as ``MEM_LIMIT`` / ``CPU_LIMIT``;
  The Littlest JupyterHub's systemd spawner and Kubernetes enforce them themselves); the kernels get
  ``OMP_NUM_THREADS`` = the CPU limit;
* a **shared, read-only cache**: ``FTLAB_SHARED_CACHE`` (default ``<checkout>/data/cache``, the cache the
  teacher's own ``make lessons`` filled) is where every student's ftlab looks first, so ELPV is decoded
  and the lessons' features are extracted once for the class; each student's new entries go to
  ``~/.cache/ftlab`` in their home.

Settings come from the environment: ``FTLAB_HUB_URL`` (default http://127.0.0.1:8000; the hub's own API and the
proxy's on ``FTLAB_HUB_API_PORT`` / ``FTLAB_HUB_PROXY_API_PORT``, default 8081 / 8001), ``FTLAB_HUB_HOMES``,
``FTLAB_HUB_STATE`` (the hub's database and secrets), ``FTLAB_HUB_PASSWORD`` (the class password, at least 8
characters, of JupyterHub's SharedPasswordAuthenticator: any allowed name with it logs in; use your school's
login — OAuth, LDAP, PAM — on a real server) and
``FTLAB_HUB_USERS`` (comma-separated names allowed; empty: anyone with the password); ``FTLAB_HUB_SERVER_ARGS``
adds options to every student's server (the test exposes JupyterLab's app object to the browser with it).

This spawner runs every student's server as the hub's own Unix user: separate homes and limits, not
separate accounts. That is enough for a classroom machine the teacher controls; for accounts of their own,
use The Littlest JupyterHub (PAM users, systemd limits) or Zero to JupyterHub (a pod per student).
"""
import os
import shutil
import sys
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = REPO / ".venv" / "bin"
STATE = Path(os.environ.get("FTLAB_HUB_STATE", HERE / "state")).resolve()
HOMES = Path(os.environ.get("FTLAB_HUB_HOMES", STATE / "homes")).resolve()
SHARED = Path(os.environ.get("FTLAB_SHARED_CACHE", REPO / "data" / "cache")).resolve()
MEM, CPUS = os.environ.get("FTLAB_HUB_MEM", "5G"), float(os.environ.get("FTLAB_HUB_CPUS", "2"))
CGROUPS = Path("/sys/fs/cgroup")
STATE.mkdir(parents=True, exist_ok=True)
HOMES.mkdir(parents=True, exist_ok=True)


def _bytes(size: str) -> int:
    units = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}
    return int(float(size[:-1]) * units[size[-1].upper()]) if size[-1].upper() in units else int(size)


def _limit(user: str, pid: int) -> list[str]:
    """Put ``pid`` into the user's memory and CPU cgroups (v1 or v2); the limits that took effect."""
    done = []
    if (CGROUPS / "cgroup.controllers").exists():                  # cgroup v2: one tree
        group = CGROUPS / "ftlab-hub" / user
        group.mkdir(parents=True, exist_ok=True)
        (CGROUPS / "ftlab-hub" / "cgroup.subtree_control").write_text("+memory +cpu")
        (group / "memory.max").write_text(str(_bytes(MEM)))
        (group / "cpu.max").write_text(f"{int(CPUS * 100000)} 100000")
        (group / "cgroup.procs").write_text(str(pid))
        return ["memory", "cpu"]
    for controller, files in (("memory", {"memory.limit_in_bytes": str(_bytes(MEM))}),
                              ("cpu", {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(int(CPUS * 100000))})):
        group = CGROUPS / controller / "ftlab-hub" / user
        group.mkdir(parents=True, exist_ok=True)
        for name, value in files.items():
            (group / name).write_text(value)
        (group / "cgroup.procs").write_text(str(pid))
        done.append(controller)
    return done


class ClassroomSpawner(SimpleLocalProcessSpawner):
    """A home folder per student with the lessons' student copies, limits by cgroup, the shared cache."""

    def make_preexec_fn(self, name):
        parent = super().make_preexec_fn(name)
        user = self.user.name

        def preexec():
            parent()
            try:
                _limit(user, os.getpid())
            except OSError:                  # not root, or no writable cgroups: the limits are only announced
                pass

        return preexec

    def user_env(self, env):
        env = super().user_env(env)
        env.update(FTLAB_CACHE=str(Path(self.home_dir) / ".cache" / "ftlab"), FTLAB_SHARED_CACHE=str(SHARED),
                   OMP_NUM_THREADS=str(max(1, int(CPUS))), PATH=f"{VENV}:{env.get('PATH', os.defpath)}")
        return env


def lessons_for(spawner):
    """First login: the student copies of the lessons in the home folder (never over what is there)."""
    home = Path(spawner.home_dir)
    target = home / "lessons"
    if not target.exists():
        sys.path.insert(0, str(REPO))
        from ftlab.lab.grading import write_student_copies
        from ftlab.lab.lessons import lesson_paths

        staged = home / ".lessons.new"
        shutil.rmtree(staged, ignore_errors=True)
        write_student_copies(lesson_paths(), staged)
        staged.rename(target)


c = get_config()  # noqa: F821 - JupyterHub's config loader provides it
c.JupyterHub.bind_url = os.environ.get("FTLAB_HUB_URL", "http://127.0.0.1:8000")
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("FTLAB_HUB_API_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('FTLAB_HUB_PROXY_API_PORT', '8001')}"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.ConfigurableHTTPProxy.command = [str(HERE / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
PASSWORD = os.environ.get("FTLAB_HUB_PASSWORD", "")
if len(PASSWORD) < 8:
    raise SystemExit("Set FTLAB_HUB_PASSWORD to the class password (at least 8 characters) before starting the hub.")
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = PASSWORD
users = {u.strip() for u in os.environ.get("FTLAB_HUB_USERS", "").split(",") if u.strip()}
if users:
    c.Authenticator.allowed_users = users
else:
    c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = ClassroomSpawner
c.ClassroomSpawner.home_dir_template = str(HOMES / "{username}")
c.Spawner.cmd = [str(VENV / "jupyterhub-singleuser")]
c.Spawner.args = (["--allow-root"] if os.geteuid() == 0 else []) + os.environ.get("FTLAB_HUB_SERVER_ARGS", "").split()
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.mem_limit = MEM
c.Spawner.cpu_limit = CPUS
c.Spawner.pre_spawn_hook = lessons_for
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 120
