"""The neuron path end to end on an emulated inf2.xlarge (1 device, 2 NeuronCores) with the stand-in SDK.

The tests in tests/neuron/inf2/host_*.py run once, in one pytest process started in a private mount
namespace whose /dev holds `neuron0` (standin_sdk.emulated_inf2); each test here reports one of those
files. Skipped where the namespace cannot be made (not root, no unshare). Budget: ~5 minutes.
"""

import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from standin_sdk import emulated_inf2, emulation_problem

from support import ROOT

HOST_TESTS = Path(__file__).resolve().parent / "inf2"
FILES = sorted(path.name for path in HOST_TESTS.glob("host_*.py"))
TIMEOUT_S = 1800
# Outside the default suite (~2 min more): .ci/run runs it on torch 2.13 and in the torch 2.9 job (-m inf2_host).
pytestmark = pytest.mark.inf2_host


@pytest.fixture(scope="module")
def inf2_results(standin, tmp_path_factory):
    """{file: [(test, outcome, message)]} of one pytest run of the host tests on the emulated inf2 host."""
    problem = emulation_problem()
    if problem:
        pytest.skip(problem)
    report = tmp_path_factory.mktemp("inf2-host") / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-q", str(HOST_TESTS), "-o", "python_files=host_*.py", f"--junitxml={report}",
               "-o", "junit_family=xunit1", "-W", "ignore::DeprecationWarning"]
    done = emulated_inf2(command, standin, capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT_S)
    results: dict[str, list] = {}
    if report.is_file():
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
            outcome = "passed" if problem is None else problem.tag
            message = "" if problem is None else f"{problem.get('message', '')}\n{(problem.text or '')[-3000:]}"
            results.setdefault(Path(case.get("file", "")).name, []).append((case.get("name"), outcome, message))
    return results, done


@pytest.mark.timeout(TIMEOUT_S)  # the first one waits for the whole run
@pytest.mark.parametrize("file", FILES)
def test_on_an_emulated_inf2_host(inf2_results, file):
    results, done = inf2_results
    cases = results.get(file)
    assert cases, f"no results for {file} (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    failed = [f"{name}: {outcome}: {message}" for name, outcome, message in cases if outcome != "passed"]
    assert not failed, "\n\n".join(failed)
