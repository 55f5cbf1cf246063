"""What the tool refuses rather than lose data or leave debris: --overwrite of a folder that
holds the input or is not one of its outputs, `--out .`, two runs writing one output at once,
outputs it cannot write (a file where a folder should be, /proc); and what it cleans up:
temporaries that a killed run left. Outputs get the user's umask, not 0700."""

import os
import subprocess
import sys

import pytest
from bad_inputs import no_leftovers, refused, run, tiny_dir, write_target

from edgecore.outputs import MARKER, claim_output

PRUNE = ["prune", "--method", "magnitude", "-s", 0.2, "--align", 8]


@pytest.fixture
def model(tmp_path):
    return tiny_dir(tmp_path / "w" / "model")


def test_overwrite_refuses_a_folder_that_holds_the_input(model):
    work = model.parent
    refused(run(*PRUNE, "-m", model, "--out", work, "--overwrite"), "holds the input")
    assert (model / "model.safetensors").is_file()


@pytest.mark.parametrize("command", ["prune", "build"])
def test_overwrite_refuses_a_folder_that_is_not_ours(tmp_path, model, command):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    args = ([*PRUNE, "-m", model] if command == "prune"
            else ["build", "--target", write_target(tmp_path / "t.json"), "-m", model])
    refused(run(*args, "--out", precious, "--overwrite"), "not an output of gprune-edge")
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_overwrite_replaces_its_own_output(tmp_path, model):
    out = tmp_path / "out"
    assert run(*PRUNE, "-m", model, "--out", out).exit_code == 0
    assert (out / MARKER).is_file()
    result = run(*PRUNE, "-m", model, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_out_dot_is_refused_without_debris(tmp_path, model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(run(*PRUNE, "-m", model, "--out", ".", "--overwrite"), "cannot be an output")
    assert not [p for p in tmp_path.parent.iterdir() if p.name.startswith("..")]


def test_a_second_run_on_the_same_output_fails_before_its_work(tmp_path, model):
    out = tmp_path / "out.gguf"
    with claim_output(out):  # a run in progress (flock: another open file conflicts like another process)
        refused(run("export", model, "--format", "gguf", "--dtype", "f16", "--out", out),
                "is writing", str(out))
    assert not out.exists()


def test_a_second_process_on_the_same_output_fails(tmp_path, model):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom edgecore.outputs import claim_output\n"
                               f"with claim_output({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused(run(*PRUNE, "-m", model, "--out", out), f"(pid {holder.pid}) is writing")
    finally:
        holder.kill()
        holder.wait()
    assert run(*PRUNE, "-m", model, "--out", out).exit_code == 0  # the lock went with the process


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_temporaries_of_a_killed_run_are_cleaned_and_a_live_ones_kept(tmp_path, model):
    out = tmp_path / "out"
    stale = tmp_path / f".out.tmp-{dead_pid()}-abcd1234"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".out.tmp-{live.pid}-efgh5678"
        busy.mkdir()
        assert run(*PRUNE, "-m", model, "--out", out).exit_code == 0
        assert not stale.exists() and busy.exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("where, needle", [("file/out", "is a file, not a directory"),
                                           ("/proc/gprune-edge-out", "not writable")])
def test_an_output_that_cannot_be_written_fails_before_the_work(tmp_path, model, where, needle):
    (tmp_path / "file").write_text("")
    out = tmp_path / where if not where.startswith("/") else where
    refused(run(*PRUNE, "-m", model, "--out", out), needle)


def test_outputs_follow_the_umask(tmp_path, model):
    old = os.umask(0o027)  # not the usual 022: the result must come from the umask, not a default
    try:
        assert run(*PRUNE, "-m", model, "--out", tmp_path / "out").exit_code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    for name in ("config.json", "model.safetensors"):  # safetensors' writer alone would leave 0600
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o640, name
    no_leftovers(tmp_path / "nothing")
