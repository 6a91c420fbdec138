"""A local stand-in for the part of `gcloud compute tpus` that launch/ calls: a TPU-VM simulator for tests.

State lives under $FAKE_GCLOUD_STATE: one directory per TPU VM (node.json and a home directory per worker)
and one JSON file per queued resource. `tpu-vm ssh --worker=all` runs the command as one local process per
worker (in parallel, each in its own session so that a preemption can kill it with everything it started),
with the worker's own HOME and the environment in node.json; `scp` copies into the workers' homes. Queued
resources go WAITING_FOR_RESOURCES → $FAKE_GCLOUD_QUEUED_OUTCOME (default ACTIVE, which creates their node; or
FAILED, SUSPENDED) after $FAKE_GCLOUD_QUEUED_DESCRIBES describes (default 2). Runtime versions are checked against
the accelerator generation as Google documents them.
`tpu-vm describe` fails as an expired login does for its first $FAKE_GCLOUD_DESCRIBE_FAILURES calls ("always":
every call), and `queued-resources describe` every time $FAKE_GCLOUD_QUEUED_DESCRIBE_FAILS is set; one of a VM that
does not exist says NOT_FOUND as Google's does. $FAKE_GCLOUD_SSH=skip makes `ssh`
record its command and run nothing (tests of the scripts' decisions, not of what runs on the workers).
Every call is appended to calls.jsonl. `preempt(state, name, worker)` plays a spot preemption for tests.

The test puts an executable `gcloud` on PATH that runs this file (see tests/test_launch.py).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import xla_flags

# Runtime versions per accelerator generation (https://cloud.google.com/tpu/docs/runtimes); a VM created with
# another is refused, as Google refuses an image that does not support the chip.
RUNTIMES = {
  "v2": "tpu-ubuntu2204-base",
  "v3": "tpu-ubuntu2204-base",
  "v4": "tpu-ubuntu2204-base",
  "v5litepod": "v2-alpha-tpuv5-lite",
  "v5p": "v2-alpha-tpuv5",
  "v6e": "v2-alpha-tpuv6e",
}


def hosts_of(accelerator: str) -> tuple[int, int]:
  """(hosts, chips per host) of an accelerator type such as v4-16 (cores) or v5litepod-8 (chips)."""
  generation, _, size = accelerator.rpartition("-")
  if generation not in RUNTIMES or not size.isdigit():
    raise SystemExit(f"ERROR: (gcloud.compute.tpus) INVALID_ARGUMENT: unknown accelerator type {accelerator}")
  chips = int(size) // 2 if generation in ("v2", "v3", "v4", "v5p") else int(size)
  per_host = chips if chips <= 8 and generation in ("v5litepod", "v6e") else min(chips, 4)
  return max(chips // per_host, 1), per_host


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Cloud:
  """The simulated project: TPU VMs and queued resources under one state directory."""

  def __init__(self, root: str, zone: str = "us-central2-b"):
    self.root = root
    self.zone = zone
    os.makedirs(os.path.join(root, "nodes"), exist_ok=True)
    os.makedirs(os.path.join(root, "queued"), exist_ok=True)

  def node_dir(self, name: str) -> str:
    return os.path.join(self.root, "nodes", name)

  def node(self, name: str) -> dict:
    path = os.path.join(self.node_dir(name), "node.json")
    if not os.path.exists(path):
      raise SystemExit(
        f"ERROR: (gcloud.compute.tpus.tpu-vm) NOT_FOUND: Resource 'projects/fake-project/locations/"
        f"{self.zone}/nodes/{name}' was not found"
      )
    with open(path) as f:
      return json.load(f)

  def save_node(self, name: str, node: dict) -> None:
    with open(os.path.join(self.node_dir(name), "node.json"), "w") as f:
      json.dump(node, f)

  def home(self, name: str, worker: int) -> str:
    return os.path.join(self.node_dir(name), f"worker-{worker}", "home")

  def create_node(self, name: str, accelerator: str, version: str, spot: bool) -> None:
    if os.path.exists(self.node_dir(name)):
      raise SystemExit(f"ERROR: (gcloud.compute.tpus.tpu-vm.create) ALREADY_EXISTS: nodes/{name}")
    generation = accelerator.rpartition("-")[0]
    hosts, chips = hosts_of(accelerator)
    if RUNTIMES[generation] != version:
      raise SystemExit(
        f"ERROR: (gcloud.compute.tpus.tpu-vm.create) INVALID_ARGUMENT: runtime version {version} "
        f"does not support {accelerator} (use {RUNTIMES[generation]})"
      )
    for worker in range(hosts):
      os.makedirs(self.home(name, worker))
    self.save_node(
      name,
      dict(
        state="READY",
        accelerator=accelerator,
        version=version,
        spot=spot,
        hosts=hosts,
        chips_per_host=chips,
        coordinator=f"127.0.0.1:{_free_port()}",
      ),
    )

  def worker_env(self, name: str, node: dict, worker: int) -> dict:
    """What a process on the worker sees: its own HOME, the image's PATH, and where the other hosts are."""
    env = json.loads(os.environ.get("FAKE_GCLOUD_WORKER_ENV", "{}"))
    return {
      **env,
      "HOME": self.home(name, worker),
      "USER": os.environ.get("USER", "tpu"),
      "TPU_WORKER_ID": str(worker),
      "TPU_ACCELERATOR_TYPE": node["accelerator"],
      # On a real TPU VM, JAX finds these itself (metadata server); the CPU stand-in is told them.
      "JAX_COORDINATOR_ADDRESS": node["coordinator"],
      "JAX_NUM_PROCESSES": str(node["hosts"]),
      "JAX_PROCESS_ID": str(worker),
      "JAX_PLATFORMS": "cpu",
      "XLA_FLAGS": xla_flags.for_tests(devices=node["chips_per_host"]),
    }

  def workers(self, node: dict, spec: str) -> list[int]:
    if spec == "all":
      return list(range(node["hosts"]))
    if not spec.isdigit() or int(spec) >= node["hosts"]:
      raise SystemExit(f"ERROR: (gcloud.compute.tpus.tpu-vm.ssh) invalid --worker={spec}")
    return [int(spec)]

  def ssh(self, name: str, worker_spec: str, command: str) -> int:
    node = self.node(name)
    if node["state"] != "READY":
      raise SystemExit(f"ERROR: (gcloud.compute.tpus.tpu-vm.ssh) {name} is {node['state']}")
    if os.environ.get("FAKE_GCLOUD_SSH") == "skip":
      return 0
    processes = []
    for worker in self.workers(node, worker_spec):
      process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=self.home(name, worker),
        env=self.worker_env(name, node, worker),
        start_new_session=True,
      )
      with open(self.sessions_path(name, worker), "a") as f:
        f.write(f"{process.pid}\n")
      processes.append(process)
    return max(p.wait() for p in processes)

  def scp(self, source: str, destination: str, worker_spec: str) -> None:
    name, _, path = destination.partition(":")
    node = self.node(name)
    for worker in self.workers(node, worker_spec):
      shutil.copy(source, os.path.join(self.home(name, worker), path))

  def sessions_path(self, name: str, worker: int) -> str:
    """The process groups (one per ssh command) started on a worker, one leader pid a line."""
    return os.path.join(self.node_dir(name), f"worker-{worker}", "sessions")

  def _signal(self, name: str, workers, signum: int) -> int:
    """Sends `signum` to every process group started on `workers`; returns how many still existed."""
    reached = 0
    for worker in workers:
      path = self.sessions_path(name, worker)
      for pid in open(path).read().split() if os.path.exists(path) else ():
        try:
          os.killpg(int(pid), signum)
          reached += 1
        except ProcessLookupError:
          pass
    return reached

  def kill(self, name: str, workers=None) -> None:
    """SIGKILLs every process the workers' commands started (each ssh command is its own session)."""
    self._signal(name, workers if workers is not None else range(self.node(name)["hosts"]), signal.SIGKILL)

  def busy(self, name: str) -> bool:
    """Whether any process started on the VM's workers still runs."""
    return self._signal(name, range(self.node(name)["hosts"]), 0) > 0

  def describe_fails(self) -> bool:
    """Whether this describe fails as an expired login makes it fail ($FAKE_GCLOUD_DESCRIBE_FAILURES)."""
    failures = os.environ.get("FAKE_GCLOUD_DESCRIBE_FAILURES", "0")
    if failures == "always":
      return True
    path = os.path.join(self.root, "describe_failures")
    done = int(open(path).read()) if os.path.exists(path) else 0
    if done >= int(failures):
      return False
    with open(path, "w") as f:
      f.write(str(done + 1))
    return True

  def describe(self, name: str, format_: str | None) -> str:
    if self.describe_fails():
      raise SystemExit(
        "ERROR: (gcloud.compute.tpus.tpu-vm.describe) There was a problem refreshing your current auth tokens: "
        "Reauthentication failed. Please run:\n\n  $ gcloud auth login"
      )
    node = self.node(name)
    if format_ == "value(state)":
      return node["state"]
    if format_ == "value(networkEndpoints[].ipAddress)":  # gcloud's value format joins a list with ;
      return ";".join(f"10.130.0.{worker + 2}" for worker in range(node["hosts"]))
    return json.dumps(node)

  def delete_node(self, name: str) -> None:
    self.node(name)
    self.kill(name)
    shutil.rmtree(self.node_dir(name))

  def queued_path(self, name: str) -> str:
    return os.path.join(self.root, "queued", name + ".json")

  def queued(self, name: str) -> dict:
    if not os.path.exists(self.queued_path(name)):
      raise SystemExit(f"ERROR: (gcloud.compute.tpus.queued-resources) NOT_FOUND: queuedResources/{name}")
    with open(self.queued_path(name)) as f:
      return json.load(f)

  def save_queued(self, name: str, resource: dict) -> None:
    with open(self.queued_path(name), "w") as f:
      json.dump(resource, f)

  def describe_queued(self, name: str) -> str:
    if os.environ.get("FAKE_GCLOUD_QUEUED_DESCRIBE_FAILS"):
      raise SystemExit(
        "ERROR: (gcloud.compute.tpus.queued-resources.describe) There was a problem refreshing your current auth "
        "tokens: Reauthentication failed."
      )
    resource = self.queued(name)
    resource["describes"] += 1
    if resource["state"] == "WAITING_FOR_RESOURCES" and resource["describes"] >= resource["settles_after"]:
      if resource["outcome"] == "ACTIVE":
        self.create_node(resource["node_id"], resource["accelerator"], resource["version"], resource["spot"])
      resource["state"] = resource["outcome"]
    self.save_queued(name, resource)
    return resource["state"]


def preempt(state: str, name: str, worker: int) -> None:
  """A spot preemption as the test plays it: worker `worker`'s processes die at once and the VM is PREEMPTED
  (the other workers' processes live on until the VM is deleted, as a collective waits on a lost peer)."""
  cloud = Cloud(state)
  node = cloud.node(name)
  cloud.kill(name, [worker])
  node["state"] = "PREEMPTED"
  cloud.save_node(name, node)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="gcloud")
  parser.add_argument("group", choices=["compute"])
  parser.add_argument("service", choices=["tpus"])
  parser.add_argument("kind", choices=["tpu-vm", "queued-resources"])
  parser.add_argument("verb", choices=["create", "describe", "list", "delete", "ssh", "scp"])
  parser.add_argument("names", nargs="*")
  parser.add_argument("--zone", required=True)
  parser.add_argument("--project")
  parser.add_argument("--accelerator-type")
  parser.add_argument("--version")
  parser.add_argument("--runtime-version")
  parser.add_argument("--node-id")
  parser.add_argument("--spot", action="store_true")
  parser.add_argument("--worker", default="0")
  parser.add_argument("--command")
  parser.add_argument("--format")
  parser.add_argument("--quiet", action="store_true")
  parser.add_argument("--force", action="store_true")
  return parser


def main(argv: list[str]) -> int:
  state = os.environ["FAKE_GCLOUD_STATE"]
  with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(argv) + "\n")
  args = _parser().parse_args(argv)
  cloud = Cloud(state, args.zone)
  name = args.names[0] if args.names else None
  if args.kind == "tpu-vm":
    if args.verb == "create":
      if not (args.accelerator_type and args.version):
        raise SystemExit("ERROR: (gcloud.compute.tpus.tpu-vm.create) --accelerator-type and --version are required")
      cloud.create_node(name, args.accelerator_type, args.version, args.spot)
    elif args.verb == "describe":
      print(cloud.describe(name, args.format))
    elif args.verb == "list":
      print("\n".join(sorted(os.listdir(os.path.join(state, "nodes")))))
    elif args.verb == "delete":
      cloud.delete_node(name)
    elif args.verb == "ssh":
      return cloud.ssh(name, args.worker, args.command)
    elif args.verb == "scp":
      cloud.scp(args.names[0], args.names[1], args.worker)
    return 0
  if args.verb == "create":
    if os.path.exists(cloud.queued_path(name)):
      raise SystemExit(f"ERROR: (gcloud.compute.tpus.queued-resources.create) ALREADY_EXISTS: {name}")
    cloud.save_queued(
      name,
      dict(
        state="WAITING_FOR_RESOURCES",
        describes=0,
        node_id=args.node_id,
        accelerator=args.accelerator_type,
        version=args.runtime_version,
        spot=args.spot,
        settles_after=int(os.environ.get("FAKE_GCLOUD_QUEUED_DESCRIBES", "2")),
        outcome=os.environ.get("FAKE_GCLOUD_QUEUED_OUTCOME", "ACTIVE"),
      ),
    )
  elif args.verb == "describe":
    state_now = cloud.describe_queued(name)
    print(state_now if args.format == "value(state.state)" else json.dumps(cloud.queued(name)))
  elif args.verb == "delete":
    resource = cloud.queued(name)
    if os.path.exists(cloud.node_dir(resource["node_id"])):
      cloud.delete_node(resource["node_id"])
    os.remove(cloud.queued_path(name))
  else:
    raise SystemExit(f"ERROR: (gcloud) queued-resources {args.verb} is not simulated")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
