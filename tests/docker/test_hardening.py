"""The container hardening of docs/security.md is really applied: read back from the daemon and
from inside."""

from __future__ import annotations

import json

import docker
import pytest

from engine.core.backends.docker.spec import GVISOR_HOST_PIDS, GVISOR_PIDS_PER_PROC
from engine.core.session import Session
from tests.conftest import TEST_LIMITS, on_gvisor
from tests.docker.conftest import containers_of, keepers_of, workdir_volume

pytestmark = pytest.mark.docker
MIB = 1 << 20

INTROSPECT = r"""
import json, os, resource
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
def first(*paths):
    for path in paths:
        try:
            return open(path).read().strip()
        except OSError:
            pass
mounts = {line.split()[1]: line.split()[3].split(',') for line in open('/proc/mounts')}
print(json.dumps({
    'uid': os.getuid(), 'gid': os.getgid(), 'cwd': os.getcwd(),
    'CapEff': status['CapEff'].strip(), 'CapPrm': status['CapPrm'].strip(),
    'NoNewPrivs': status.get('NoNewPrivs', '').strip(), 'Seccomp': status['Seccomp'].strip(),
    'root_options': mounts['/'], 'tmp_options': mounts['/tmp'],
    'workspace_writable': os.access('/workspace', os.W_OK),
    'interfaces': sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]),
    'pids_max': first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'),
    'memory_max': first('/sys/fs/cgroup/memory.max',
                        '/sys/fs/cgroup/memory/memory.limit_in_bytes'),
    'core': resource.getrlimit(resource.RLIMIT_CORE),
    'nofile': resource.getrlimit(resource.RLIMIT_NOFILE),
    'nproc': resource.getrlimit(resource.RLIMIT_NPROC), 'release': os.uname().release,
    'init': open('/proc/1/cmdline').read().split('\0')[0],
    'oom_score_adj': open('/proc/self/oom_score_adj').read().strip(),
    'visible_pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
}))
"""


async def test_container_configuration_as_the_daemon_reports_it(
    docker_session: Session, docker_client: docker.DockerClient
) -> None:
    [container] = containers_of(docker_client, docker_session)
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["ReadonlyRootfs"] is True
    assert host["NetworkMode"] == "none"
    assert host["Init"] is True
    ulimits = {u["Name"]: u for u in host["Ulimits"]}
    if on_gvisor(docker_session):
        # The host's cgroup holds gVisor's kernel too: the exact limit is RLIMIT_NPROC inside.
        backstop = GVISOR_HOST_PIDS + GVISOR_PIDS_PER_PROC * TEST_LIMITS.max_procs
        assert host["PidsLimit"] == backstop
        assert ulimits["nproc"]["Soft"] == ulimits["nproc"]["Hard"] == TEST_LIMITS.max_procs
    else:
        assert host["PidsLimit"] == TEST_LIMITS.max_procs
        assert "nproc" not in ulimits  # on the host kernel it would count other sandboxes too
    assert host["Memory"] == host["MemorySwap"] == TEST_LIMITS.memory_mb * MIB
    assert host["OomScoreAdj"] == 1000
    assert host["IpcMode"] == "private"
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}}
    assert "/tmp" in host["Tmpfs"] and "size=" in host["Tmpfs"]["/tmp"]
    # Volumes only, nothing from the engine's filesystem: the workdir, and the agent unless
    # the image has it built in.
    binds = {b.split(":")[1]: b for b in host["Binds"]}
    assert binds.keys() <= {"/workspace", "/mnt/data", "/home/user", "/opt/lci-agent"}
    assert all(not b.startswith("/") for b in binds.values())
    assert ":ro" in binds.get("/opt/lci-agent", ":ro")
    volume = docker_client.volumes.get(workdir_volume(container))
    assert volume.attrs["Options"]["type"] == "tmpfs"
    assert f"size={TEST_LIMITS.disk_mb}m" in volume.attrs["Options"]["o"]
    assert volume.attrs["Labels"]["lci.session"] == docker_session.id
    assert ulimits["core"]["Hard"] == 0
    assert ulimits["fsize"]["Hard"] == TEST_LIMITS.disk_mb * MIB
    assert config["User"] == "1000:1000"
    assert config["Labels"]["lci.session"] == docker_session.id
    assert config["Labels"]["lci.owner"].count(".") == 1  # "<pid>.<start time>"
    # The keeper that holds the volume is hardened the same way, with small limits.
    [keeper] = keepers_of(docker_client, docker_session)
    keeper_host = keeper.attrs["HostConfig"]
    assert keeper_host["CapDrop"] == ["ALL"] and keeper_host["ReadonlyRootfs"] is True
    assert "no-new-privileges:true" in keeper_host["SecurityOpt"]
    assert keeper_host["NetworkMode"] == "none" and keeper.attrs["Config"]["User"] == "1000:1000"
    keeper_limits = {u["Name"]: u["Hard"] for u in keeper_host["Ulimits"]}
    assert 0 < keeper_limits.get("nproc", keeper_host["PidsLimit"]) <= 16
    assert keeper_host["Memory"] == (64 + TEST_LIMITS.disk_mb) * MIB
    assert workdir_volume(keeper) == volume.name


async def test_confinement_seen_from_inside(docker_session: Session) -> None:
    result = await docker_session.execute(INTROSPECT)
    assert result.ok, result.error
    seen = json.loads(result.stdout)
    assert (seen["uid"], seen["gid"], seen["cwd"]) == (1000, 1000, "/workspace")
    assert int(seen["CapEff"], 16) == 0 and int(seen["CapPrm"], 16) == 0
    assert "ro" in seen["root_options"]
    assert "noexec" in seen["tmp_options"]
    assert seen["workspace_writable"]
    assert seen["interfaces"] == ["lo"]
    assert seen["core"] == [0, 0]
    assert seen["nofile"] == [TEST_LIMITS.open_files] * 2
    assert seen["init"].endswith("docker-init")
    if on_gvisor(docker_session):
        # gVisor's own kernel: its version, not the host's; no host cgroup files, no
        # no_new_privs or seccomp line in its /proc (the host's filter is on gVisor itself).
        assert seen["release"] == "4.4.0", seen["release"]
        assert seen["nproc"] == [TEST_LIMITS.max_procs] * 2
        return
    assert seen["NoNewPrivs"] == "1"
    assert seen["Seccomp"] == "2"  # the daemon's default seccomp filter
    assert {"nosuid", "nodev", "noexec"} <= set(seen["tmp_options"])
    assert int(seen["pids_max"]) == TEST_LIMITS.max_procs
    assert int(seen["memory_max"]) == TEST_LIMITS.memory_mb * MIB
    assert seen["oom_score_adj"] == "1000"
    # Its own pid namespace: docker-init, the agent and this cell's children only.
    assert seen["visible_pids"][0] == 1 and len(seen["visible_pids"]) <= 4


async def test_isolation_report(docker_session: Session) -> None:
    isolation = docker_session.info().isolation
    assert isolation.pid_namespace and isolation.mount_namespace and isolation.network_namespace
    assert isolation.separate_user and isolation.private_filesystem
    assert (isolation.memory_limit, isolation.process_limit) == ("exact", "exact")
    assert docker_session.info().workdir == "/workspace"
