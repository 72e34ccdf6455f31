"""`neuron-export sweep PLAN.yaml` with the local executor: a bad plan is one line naming the entry
(exit 2, nothing run); a failing entry does not stop the next and makes the exit code 1; asking for
Ray without Ray installed is one line naming the install. (The Ray executor: test_ray_farm.py.)

Budget: ~15 s (one tiny torchscript export).
"""

from __future__ import annotations

import signal
import sys

import pytest

from neuron_export import read_manifest
from neuron_export.cli import main

@pytest.fixture(autouse=True)
def sigterm_handler_kept():
    """main() installs the CLI's SIGTERM handler: give pytest its own back."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


GOOD = "{model: demo:tiny-bert, output: OUT/a, backend: torchscript, sequence_length: 8}"


@pytest.mark.parametrize("plan, message", [
    ("exports: []", "top-level `exports:` list"),
    ("models: [demo:tiny-bert]", "top-level `exports:` list"),
    ("exports: [{output: OUT/x}]", "entry 1: `model` is missing"),
    (f"exports: [{GOOD}, {{model: demo:tiny-bert, output: OUT/b, sequence_lenght: 8}}]", "entry 2 (demo:tiny-bert): unknown option 'sequence_lenght'"),
    (f"exports: [{GOOD}, {{model: demo:tiny-bert, output: OUT/b, backend: tpu}}]", "entry 2 (demo:tiny-bert): argument --backend: invalid choice"),
    (f"exports: [{GOOD}, {{model: demo:tiny-bert, output: OUT/b, disable_validation: yes please}}]", "entry 2 (demo:tiny-bert): disable_validation is true or false"),
    (f"exports: [{GOOD}, {GOOD}]", "entry 2 (demo:tiny-bert): output OUT/a is also the output of entry 1"),
    ("exports: [unclosed", "is not valid YAML"),
])
def test_bad_plan_is_one_line_naming_the_entry_and_runs_nothing(tmp_path, capsys, plan, message):
    path = tmp_path / "plan.yaml"
    path.write_text(plan.replace("OUT", str(tmp_path)))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.replace("OUT", str(tmp_path)) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"]


def test_failing_entry_does_not_stop_the_others(tmp_path, capsys):
    path = tmp_path / "plan.yaml"
    path.write_text(f"""exports:
  - {{model: demo:tiny-bert, output: {tmp_path}/bad, backend: torchscript, task: image-classification}}
  - {{model: demo:tiny-bert, output: {tmp_path}/good, backend: torchscript, sequence_length: 8, no_cache: true}}
""")
    assert main(["sweep", str(path)]) == 1
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:1] in "12"]
    assert "failed" in rows[0] and "image-classification" in rows[0] and " ok " in rows[1]
    assert not (tmp_path / "bad").exists() and read_manifest(tmp_path / "good").validation.passed is True


def test_ray_executor_without_ray_names_the_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    path = tmp_path / "plan.yaml"
    path.write_text(f"exports: [{GOOD.replace('OUT', str(tmp_path))}]")
    assert main(["sweep", str(path), "--executor", "ray"]) == 2
    assert main(["export", "--model", "demo:tiny-bert", str(tmp_path / "x"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all('pip install "neuron_export[ray]"' in line for line in err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "x").exists()
