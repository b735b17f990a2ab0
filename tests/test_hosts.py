"""Host lists: how they are read, where ranks go, what mpiexec is told, and the grader's
messages for options that cannot work together."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from parakit.backends.ipp_launch import remote_engines
from parakit.backends.mpi import host_flags
from parakit.controller.processes import proctree
from parakit.controller.processes.hosts import Hosts, HostsError
from parakit.controller.processes.probe import MARK
from parakit.controller.processes.srun_shell import main as srun_main
from parakit.controller.processes.srun_shell import srun_argv, tasks_argv
from parakit.controller.session.backend import BackendError
from tests.helpers import run_grader


def test_hosts_are_read_from_the_option_and_from_a_hostfile(tmp_path):
    assert Hosts.parse("a:2,b").slots == (("a", 2), ("b", 1))
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# the lab\nnode1:4\n\nnode2  # the slow one\n")
    hosts = Hosts.parse(hostfile=str(hostfile), remote_shell="ssh -p 2222")
    assert hosts.slots == (("node1", 4), ("node2", 1))
    assert hosts.hostfile == str(hostfile.resolve())
    assert hosts.command("node1", ["python", "-c", "print('hi there')"]) == [
        "ssh", "-p", "2222", "node1", "--", "python -c 'print('\"'\"'hi there'\"'\"')'"]
    assert not Hosts.parse().several


@pytest.mark.parametrize(("hosts", "words"), [
    ("a:0", "SLOTS must be 1 or more"), ("a:x", "SLOTS must be a whole number"),
    ("a,,b", "is not HOST or HOST:SLOTS"), (",", "is not HOST or HOST:SLOTS")])
def test_a_bad_host_list_is_named(hosts, words):
    with pytest.raises(HostsError, match=words):
        Hosts.parse(hosts)


def test_a_missing_or_empty_hostfile_is_named(tmp_path):
    with pytest.raises(HostsError, match="No such file"):
        Hosts.parse(hostfile=str(tmp_path / "nope"))
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(HostsError, match="no host named"):
        Hosts.parse(hostfile=str(tmp_path / "empty"))
    with pytest.raises(HostsError, match="not both"):
        Hosts.parse("a", str(tmp_path / "empty"))


def test_the_hosts_of_a_slurm_allocation_are_its_nodes_with_their_tasks(monkeypatch, tmp_path):
    # scontrol expands Slurm's node list; here a stand-in prints what it would
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\necho gpu7; echo gpu8; echo gpu9\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    allocation = {"SLURM_JOB_ID": "41", "SLURM_JOB_NODELIST": "gpu[7-9]",
                  "SLURM_TASKS_PER_NODE": "2(x2),1"}
    monkeypatch.setattr(os, "environ", {**os.environ, **allocation})
    hosts = Hosts.parse("slurm")
    assert hosts.slots == (("gpu7", 2), ("gpu8", 2), ("gpu9", 1))
    assert Path(hosts.remote_shell[0]).name == "parakit-srun-shell"
    assert hosts.placement(5) == ["gpu7", "gpu7", "gpu8", "gpu8", "gpu9"]
    assert hosts.slurm_job == "41" and Hosts.parse("gpu7:2").slurm_job == ""
    # a remote shell of the user's own still wins
    assert Hosts.parse("slurm", remote_shell="my-shell").remote_shell == ("my-shell",)


def test_slurm_hosts_outside_an_allocation_are_refused(monkeypatch):
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if not k.startswith("SLURM_")})
    with pytest.raises(HostsError, match="not inside a Slurm allocation"):
        Hosts.parse("slurm")


def test_the_srun_shell_runs_a_command_on_a_node_as_ssh_would():
    argv = srun_argv(["-x", "node2", "--", "hydra_pmi_proxy", "--control-port", "node1:5"],
                     {"PARAKIT_SLURM_JOB_ID": "41"})
    assert argv[:2] == ["srun", "--jobid=41"] and "--nodelist=node2" in argv
    assert "--overlap" in argv  # beside the ranks it starts, never waiting for their CPUs
    assert argv[-3:] == ["/bin/sh", "-c", "hydra_pmi_proxy --control-port node1:5"]
    with pytest.raises(ValueError, match="not inside a Slurm allocation"):
        srun_argv(["node2", "true"], {})
    with pytest.raises(ValueError, match="no command to run on node2"):
        srun_argv(["node2", "--"], {"SLURM_JOB_ID": "41"})
    assert srun_main(["node2"]) == 255  # ssh's status for a host it cannot reach


def test_the_srun_shell_starts_many_tasks_as_one_step_placed_by_a_node_file(tmp_path,
                                                                            monkeypatch):
    # ipyparallel's MPI launcher calls it as mpiexec: MPI_CMD -n N PROGRAM...
    nodefile = tmp_path / "engine-nodes"
    nodefile.write_text("node1\nnode1\nnode2\n")
    job = {"SLURM_JOB_ID": "41"}
    argv = tasks_argv(str(nodefile), ["-n", "3", "python", "-m", "ipyparallel.engine"], job)
    assert argv[:3] == ["srun", "--jobid=41", "--overlap"]
    assert {"--ntasks=3", "--nodes=2", "--distribution=arbitrary"} <= set(argv)
    assert argv[-3:] == ["python", "-m", "ipyparallel.engine"]  # no shell: srun runs it
    with pytest.raises(ValueError, match="3 node.s. for 4 tasks"):
        tasks_argv(str(nodefile), ["-n", "4", "x"], job)
    with pytest.raises(ValueError, match="No such file"):
        tasks_argv(str(tmp_path / "none"), ["-n", "1", "x"], job)
    with pytest.raises(ValueError, match="usage"):
        tasks_argv(str(nodefile), ["x"], job)
    for var in ("SLURM_JOB_ID", "PARAKIT_SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    assert srun_main(["--tasks", str(nodefile), "-n", "1", "true"]) == 255  # as ssh would


class _Nodes:
    """Hosts of an allocation whose probe answers as given (``find``: what each node has)."""

    slurm_job = "41"

    def __init__(self, found: dict[str, list[dict]]):
        self.found = found

    def probe_all(self, *args: str) -> dict[str, list[dict]]:
        assert args[0] == "find"
        return self.found


def test_engines_of_a_slurm_step_are_those_it_started_and_no_other():
    since = 1000.0
    engine = "/venv/bin/python -m ipyparallel.engine --profile-dir /w/ipython"
    nodes = _Nodes({"node1": [{"pid": 7, "cmdline": engine, "started": since + 2},
                              {"pid": 8, "cmdline": "python -m parakit.worker", "started": 1e4},
                              # the step's srun, whose command line names the engine too
                              {"pid": 6, "cmdline": "srun --jobid=41 --overlap " + engine,
                               "started": since + 1}],
                    "node2": [{"pid": 7, "cmdline": engine, "started": since + 3},
                              # left by an earlier run, named like an engine: never a worker
                              {"pid": 5, "cmdline": engine, "started": since - 60}]})
    assert remote_engines(None, nodes, 2, since) == [("node1", 7), ("node2", 7)]
    with pytest.raises(ValueError, match="2 engine processes found on the nodes for the 3"):
        remote_engines(None, nodes, 3, since)
    nodes.found["node2"].append({"pid": 9, "cmdline": engine, "started": since + 4})
    with pytest.raises(ValueError, match="3 engine processes found .* for the 2 started"):
        remote_engines(None, nodes, 2, since)  # one more than started: the grader's own fail


def test_ranks_fill_each_host_then_go_round_again():
    hosts = Hosts.parse("a:2,b:1")
    assert hosts.placement(2) == ["a", "a"]
    assert hosts.placement(5) == ["a", "a", "b", "a", "a"]
    assert hosts.counts(4) == {"a": 3, "b": 1}


def test_mpiexec_is_told_the_hosts_and_the_remote_shell():
    hosts = Hosts.parse("a:2,b:2", remote_shell="/x/rsh")
    assert host_flags("mpich", hosts) == ["-hosts", "a:2,b:2", "-launcher", "ssh",
                                          "-launcher-exec", "/x/rsh"]
    assert host_flags("openmpi", hosts) == ["--host", "a:2,b:2", "--mca", "plm_rsh_agent",
                                            "/x/rsh"]
    assert host_flags("mpich", Hosts.parse("a:2")) == ["-hosts", "a:2"]
    assert host_flags("", Hosts()) == []
    with pytest.raises(BackendError, match="srun"):
        host_flags("", hosts)
    with pytest.raises(BackendError, match="wrap it in a script"):
        host_flags("mpich", Hosts.parse("a", remote_shell="ssh -p 22"))


@pytest.mark.parametrize(("args", "words"), [
    (["--hosts", "a:2"], "give --workdir, a folder every host sees"),
    (["--hosts", "a:0", "--workdir", "."], "SLOTS must be 1 or more"),
    (["--hosts", "a", "--workdir", "/no/such/folder"], "no such folder"),
    (["--hosts", "a", "--workdir", ".", "--run-as", "nobody"], "cannot be combined with --hosts"),
])
def test_the_grader_refuses_placements_that_cannot_work(tmp_path, args, words):
    run = run_grader(tmp_path, *args)
    assert run.returncode == 4 and words in run.output, run.output[-2000:]


def test_each_host_keeps_one_probe_that_answers_every_question(tmp_path):
    # A remote shell that runs the command here, after a login banner on stdout and a forged
    # answer (as graded code on that host, the same user, could write into the probe's pipe):
    # only the line with the question's nonce is the answer.
    rsh = tmp_path / "rsh"
    forged = MARK + json.dumps({"host": "forged", "nonce": "0", "answer": {}})
    rsh.write_text('#!/bin/sh\nshift; [ "$1" = "--" ] && shift\necho "Welcome to node1"\n'
                   f"echo '{forged}'\n" 'exec /bin/sh -c "$*"\n')
    rsh.chmod(0o755)
    hosts = Hosts.parse("node1", remote_shell=str(rsh))
    try:
        me = str(os.getpid())
        name, answer = hosts.probe("node1", "cpu", me)
        assert name == proctree.HOST and answer[me][0] > 0 and answer[me][1] >= 0
        session = hosts._sessions["node1"]
        assert hosts.probe("node1", "cpu", me)[1][me][0] >= answer[me][0]
        assert hosts._sessions["node1"] is session  # the same remote shell, asked again
        assert session.popen.pid in proctree._spared_trees()  # never a job's process
        with pytest.raises(HostsError, match="could not answer nonsense"):
            hosts.probe("node1", "nonsense")
        # a probe that has ended is started again, once, and the question still answered
        for proc in psutil.Process(session.popen.pid).children(recursive=True):
            proc.send_signal(signal.SIGKILL)
        session.popen.wait(timeout=10)
        assert me in hosts.probe("node1", "cpu", me)[1]
        assert hosts._sessions["node1"] is not session
    finally:
        hosts.close()
    assert hosts._sessions == {}
    assert not [p for p in psutil.Process().children(recursive=True)
                if "parakit.controller.processes.probe" in " ".join(p.cmdline())]
