"""Plug-ins: the example package installed from examples/ becomes `difflab sample` commands, a local
file by --plugin, user scores measured against their reference; bad plug-ins give one line and
write nothing; target files and run files never run code by themselves."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov

from difflab.maths import exact
from difflab.run.io import read_run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """The example plug-in package pip-installed into a folder of its own (not into the test
    environment); processes that put it on PYTHONPATH see its entry points."""
    where = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(where),
                        str(EXAMPLES / "difflab-extras")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return where


def difflab(*args, cwd, path=None):
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-m", "difflab", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.mark.system
def test_the_installed_package_adds_commands(installed, tmp_path):
    out = difflab("sample", "--help", cwd=tmp_path, path=installed).stdout
    assert "rmla" in out and "langevin-heun" in out
    helped = difflab("sample", "rmla", "--help", cwd=tmp_path, path=installed).stdout
    assert "--step-size" in helped and "Randomized-midpoint" in helped
    r = difflab("sample", "rmla", "-t", "gmm", "-n", "300", "--steps", "50", "--set", "step_size=0.05", "-q",
                "-o", "rmla.h5", cwd=tmp_path, path=installed)
    assert r.returncode == 0, r.stderr
    assert difflab("sample", "mala", "-n", "300", "--steps", "50", "-q", "-o", "mala.h5", cwd=tmp_path).returncode == 0
    table = difflab("compare", "rmla.h5", "mala.h5", "--csv", cwd=tmp_path)  # no plug-in needed to read
    assert table.returncode == 0 and "rmla" in table.stdout and "mala" in table.stdout
    rec = read_run(tmp_path / "rmla.h5")
    assert rec.params["step_size"] == 0.05 and rec.summary["nfe"] == 100.0


def _heun_law(h: float, steps: int, m0, c0):
    """The stochastic-Heun step on N(m, P^-1) written out: x' - m = A (x - m) + N xi with
    A = I - h P + h^2 P^2 / 2 and N = sqrt(2 h) (I - h P / 2)."""
    m = np.array([0.0, 1.0])
    S = np.array([[1.0, 0.5], [0.5, 2.0]])
    P = np.linalg.inv(S)
    A = np.eye(2) - h * P + 0.5 * h * h * P @ P
    N = np.sqrt(2 * h) * (np.eye(2) - 0.5 * h * P)
    mean, cov = m0 - m, c0
    for _ in range(steps):
        mean, cov = A @ mean, A @ cov @ A.T + N @ N.T
    stationary = solve_discrete_lyapunov(A, N @ N.T)
    return mean + m, cov, stationary, S, m


@pytest.mark.system
def test_a_plugin_declaring_an_affine_step_gets_the_exact_law(installed, tmp_path):
    r = difflab("sample", "langevin-heun", "-t", "gaussian", "-n", "200", "--steps", "30", "--step-size", "0.2",
                "--init", "normal", "-q", "-o", "heun.h5", cwd=tmp_path, path=installed)
    assert r.returncode == 0, r.stderr
    mean, cov, stationary, S, m = _heun_law(0.2, 30, np.zeros(2), np.eye(2))
    rec = read_run(tmp_path / "heun.h5")
    assert rec.summary["exact_kl"] == pytest.approx(exact.gaussian_kl(mean, cov, m, S), rel=1e-10)
    # and its bias is second order: the stationary covariance is S (I + O(h^2))
    ratios = [np.abs(_heun_law(h, 1, m, S)[2] - S).max() for h in (0.05, 0.1)]
    assert 3.5 < ratios[1] / ratios[0] < 4.5


PLUGIN = '''
from dataclasses import dataclass
import numpy as np
from difflab.contracts import STEPS, Capabilities, Option, SamplerEntry, init_option

@dataclass(frozen=True)
class State:
    xt: np.ndarray
    @property
    def x(self):
        return self.xt.T

@dataclass(frozen=True)
class Drift:
    target: object
    step_size: float
    capabilities = Capabilities(per_particle=True)
    n_steps = None
    def init(self, x0):
        return State(np.ascontiguousarray(x0.T))
    def step(self, rng, state):
        MODE
        xt = state.xt + self.step_size * self.target.score_t(state.xt) + np.sqrt(2 * self.step_size) * rng.standard_normal(state.xt.shape)
        return State(xt), {"nfe": 1.0}

ENTRY = SamplerEntry("drift", "A local plug-in: ULA written out.", options=(Option("step_size", 0.05, float, "Step size h."),),
                     build=lambda t, p: Drift(t, p["step_size"]), steps=STEPS,
                     init=init_option("normal", "target", help="Initial state."), mcmc=True)
'''


def _local(tmp_path, mode="pass", extra=""):
    (tmp_path / "drift.py").write_text(PLUGIN.replace("MODE", mode) + extra)
    return "drift.py"


@pytest.mark.system
def test_a_local_file_plugin_runs_like_ula(tmp_path):
    """--plugin FILE.py registers its entries; the written-out ULA equals the built-in one bit for bit."""
    plug = _local(tmp_path)
    r = difflab("--plugin", plug, "sample", "drift", "-t", "gaussian", "-n", "300", "--steps", "20", "-q",
                "-o", "d.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert difflab("sample", "ula", "-t", "gaussian", "-n", "300", "--steps", "20", "--step-size", "0.05", "-q",
                   "-o", "u.h5", cwd=tmp_path).returncode == 0
    d, u = read_run(tmp_path / "d.h5", samples=True), read_run(tmp_path / "u.h5", samples=True)
    np.testing.assert_array_equal(d.samples, u.samples)
    assert d.attrs["sampler"] == "drift"


@pytest.mark.parametrize("mode, extra, message", [
    ("pass", "\nDrift.step = None\n", "lacks step"),
    ("return State(state.xt[:, :5]), {}", "", "returned a state whose x has shape (5, 2)"),
    ("CALLS.append(1)\n        if len(CALLS) > 2: return State(np.hstack([state.xt, state.xt[:, :6]])), {}",
     "\nCALLS = []\n", "step 3 returned a state whose x has shape (56, 2)"),  # a shape change after step 1
    ("pass", "\nDrift.n_steps = -3\n", "has n_steps -3; expected an integer >= 1"),
    ("raise RuntimeError('boom')", "", "sampler drift (plug-in): its run raised RuntimeError: boom"),
    ("return State(state.xt), {'nfe': 'one'}", "", "expected a mapping of names to numbers"),
    ("pass", "\nraise ImportError('no such thing')\n", "--plugin drift.py: importing it raised ImportError"),
    ("pass", "\nimport sys\nsys.exit(0)\n", "--plugin drift.py: importing it raised SystemExit"),
    ("pass", "\nENTRY2 = SamplerEntry('mala', 'x', options=(), build=None, steps=STEPS, init=init_option('normal', "
             "help='x'))\n", "'mala' is a built-in sampler's name"),
])
@pytest.mark.system
def test_bad_plugins_give_one_line_and_write_nothing(tmp_path, mode, extra, message):
    plug = _local(tmp_path, mode, extra)
    r = difflab("--plugin", plug, "sample", "drift", "-t", "gaussian", "-n", "50", "--steps", "5", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_plugins_from_python_raise_difflab_errors(tmp_path):
    import difflab as dl
    from difflab.contracts import STEPS, Capabilities, SamplerEntry, init_option

    class NoStep:
        capabilities, n_steps = Capabilities(), None

        def init(self, x0):
            return x0

    entry = SamplerEntry("nostep-api", "x", options=(), build=lambda t, p: NoStep(), steps=STEPS,
                         init=init_option("normal", help="x"))
    with pytest.raises(dl.DifflabError, match="lacks step"):
        dl.sample(entry, target="gaussian", particles=10, steps=2)


SCORE_MODULE = '''
import pathlib
pathlib.Path("IMPORTED").write_text("yes")  # a side effect: shows whether difflab imported this file
import difflab
_exact = difflab.load_target("gaussian")

def score(x, alpha, sigma):
    return 1.1 * _exact.noised_score(x, alpha, sigma)
'''
SCORE_TARGET = "kind: score\nname: mine\nscore: myscore:score\nreference: gaussian\n"


@pytest.mark.system
def test_target_and_run_files_never_import_code(tmp_path):
    (tmp_path / "myscore.py").write_text(SCORE_MODULE)
    (tmp_path / "mine.yaml").write_text(SCORE_TARGET)
    r = difflab("sample", "ddpm", "-t", "mine.yaml", "-n", "50", "--steps", "5", cwd=tmp_path)
    assert r.returncode == 2 and "is code, which difflab runs only when you name it: pass --plugin myscore" in r.stderr
    assert not (tmp_path / "IMPORTED").exists() and not (tmp_path / "runs").exists()
    r = difflab("--plugin", "myscore.py", "sample", "ddpm", "-t", "mine.yaml", "-n", "50", "--steps", "5", "-q",
                "-o", "m.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "IMPORTED").unlink()
    for cmd in (["show", "m.h5"], ["compare", "m.h5", "--csv"], ["export", "m.h5"], ["plot", "m.h5", "-o", "m.png"]):
        assert difflab(*cmd, cwd=tmp_path).returncode == 0, cmd  # reading a run imports no code
    assert not (tmp_path / "IMPORTED").exists()


@pytest.mark.system
def test_a_user_score_is_measured_against_its_reference(tmp_path):
    """1.1 times the exact score: a score error of known size. score_mse at every step equals an
    independent computation on the saved states; the run is judged against the exact reference,
    and a sampler that needs more than a score is refused."""
    (tmp_path / "myscore.py").write_text(SCORE_MODULE)
    (tmp_path / "mine.yaml").write_text(SCORE_TARGET)
    r = difflab("--plugin", "myscore.py", "sample", "ddpm", "-t", "mine.yaml", "-n", "40", "--steps", "10",
                "--trajectory-particles", "40", "--save-every", "1", "-q", "-o", "m.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = read_run(tmp_path / "m.h5", trajectory=True, series=True)
    from difflab.maths.schedules import ddpm_grid, make_schedule
    from difflab.targets.files import load_target

    exact_target = load_target("gaussian")[1]
    alphas, sigmas, _ = ddpm_grid(make_schedule(rec.params), 10)
    for k in range(10):
        x, a, s = rec.trajectory[k], float(alphas[k]), float(sigmas[k])
        err = 0.1 * exact_target.noised_score(x, a, s)
        assert rec.per_step["score_mse"][k] == pytest.approx(np.mean(np.sum(err**2, axis=1)), rel=1e-10)
    assert rec.summary["score_error_term"] > 0 and "kl_prior" in rec.summary
    assert "exact_kl" not in rec.summary  # a user's score declares no affine step
    r = difflab("--plugin", "myscore.py", "sample", "mala", "-t", "mine.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "mala needs a log density; mine.yaml gives a score alone" in r.stderr


@pytest.mark.slow
def test_the_learned_ring_score_example(tmp_path):
    """The shipped learned score: its per-step score_mse equals an independent computation with the
    example's own function, and its samples are worse than the exact score's at the same cost."""
    import difflab as dl

    ring_score = dl.load_plugin(str(EXAMPLES / "learned_score" / "ring_score.py"))
    learned = dl.sample("ddpm", target=str(EXAMPLES / "learned_score" / "ring-learned.yaml"), particles=2000,
                        steps=50, trajectory_particles=2000, save_every=1, seed=3)
    exact_run = dl.sample("ddpm", target="gmm", particles=2000, steps=50, seed=3)
    from difflab.maths.schedules import VPLinear, ddpm_grid

    ring = dl.load_target("gmm")
    alphas, sigmas, _ = ddpm_grid(VPLinear(), 50)
    for k in (0, 25, 49):
        x, a, s = learned.trajectory[k], float(alphas[k]), float(sigmas[k])
        diff = ring_score.score(x, a, s) - ring.noised_score(x, a, s)
        assert learned.per_step["score_mse"][k] == pytest.approx(np.mean(np.sum(diff**2, axis=1)), rel=1e-9)
    assert learned.summary["sliced_w2"] > 1.5 * exact_run.summary["sliced_w2"]


@pytest.mark.system
def test_a_sweep_runs_a_plugin_sampler_on_worker_processes(tmp_path):
    plug = _local(tmp_path)
    (tmp_path / "s.yaml").write_text("sampler: drift\nset: {target: gaussian, particles: 50, steps: 5}\n"
                                     "grid: {seed: [0, 1, 2]}\n")
    r = difflab("--plugin", plug, "sweep", "s.yaml", "--jobs", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "runs").glob("drift-gaussian-*.h5"))
    assert len(files) == 3 and all(read_run(f).attrs["status"] == "complete" for f in files)


@pytest.mark.system
def test_the_installed_package_adds_a_target_kind(installed, tmp_path):
    """kind: banana, from the example package's entry point (group difflab.targets), runs through
    difflab sample, compare and plot (no marginals declared: samples without contours) and the Python
    API; its closed forms hold (score by central differences, exact draws' moments within 4 SE)."""
    banana = EXAMPLES / "difflab-extras" / "banana.yaml"
    r = difflab("sample", "mala", "-t", banana, "-n", "300", "--steps", "50", "-q", "-o", "b.h5", cwd=tmp_path,
                path=installed)
    assert r.returncode == 0, r.stderr
    rec = read_run(tmp_path / "b.h5")
    assert rec.attrs["target"] == "banana" and rec.attrs["status"] == "complete" and "floor_mean_error" in rec.summary
    assert difflab("compare", "b.h5", "--csv", cwd=tmp_path, path=installed).returncode == 0
    r = difflab("plot", "b.h5", "-o", "b.png", cwd=tmp_path, path=installed)
    assert r.returncode == 0 and (tmp_path / "b.png").stat().st_size > 0, r.stderr
    refused = difflab("sample", "ddpm", "-t", banana, "-o", "d.h5", cwd=tmp_path, path=installed)
    assert refused.returncode == 2 and "closed-form noised law" in refused.stderr and not (tmp_path / "d.h5").exists()
    unknown = difflab("sample", "mala", "-t", banana, "-o", "u.h5", cwd=tmp_path)  # without the package
    assert unknown.returncode == 2 and "kind: unknown kind" in unknown.stderr and "got 'banana'" in unknown.stderr
    code = f"""
import numpy as np, difflab
t = difflab.load_target({str(banana)!r})
x = np.random.default_rng(0).standard_normal((20, 2)) * 2
h = 1e-5
fd = np.stack([(t.log_prob(x + h * e) - t.log_prob(x - h * e)) / (2 * h) for e in np.eye(2)], axis=1)
assert np.abs(t.score(x) - fd).max() < 1e-6
n = 100_000
y = t.sample(np.random.default_rng(1), n)
se_mean, se_var = np.sqrt(np.diag(t.cov) / n), np.diag(t.cov) * np.sqrt(2 / n)
assert np.all(np.abs(y.mean(0)) < 4 * se_mean)
assert abs(y[:, 0].var() - t.cov[0, 0]) < 4 * se_var[0]
run = difflab.sample("mala", target={{"kind": "banana", "b": 0.3}}, particles=200, steps=30)
print(run.status, run.attrs["target"])
"""
    env = dict(os.environ, PYTHONPATH=str(installed))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["complete", "target"], r.stderr[-2000:]


@pytest.mark.system
def test_a_target_kind_from_a_plugin_file(tmp_path):
    """--plugin FILE registers the file's TargetKind records as it does its SamplerEntry records."""
    plugin = EXAMPLES / "difflab-extras" / "difflab_extras" / "banana.py"
    (tmp_path / "t.yaml").write_text("kind: banana\nb: 0.2\n")
    r = difflab("--plugin", plugin, "sample", "ula", "-t", "t.yaml", "-n", "100", "--steps", "20", "-q", "-o", "u.h5",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert read_run(tmp_path / "u.h5").attrs["target"] == "t"


def _broken_install(where: Path, body: str) -> Path:
    """An installed distribution (dist-info with entry points, on PYTHONPATH) whose sampler module
    fails on import with ``body``."""
    where.mkdir()
    (where / "broken_plugin.py").write_text(body)
    info = where / "brokenplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[difflab.samplers]\nbroken = broken_plugin:ENTRY\n")
    return where


@pytest.mark.system
@pytest.mark.parametrize("body", ["raise ImportError('no such thing')\n", "import sys\nsys.exit(0)\n"])
def test_a_broken_installed_plugin_costs_one_warning_line(tmp_path, body):
    """A plug-in that raises on import (or calls sys.exit(0)) leaves every built-in command working:
    `difflab sample`, its --help, --spec, a mistyped name each print one warning line naming it; a
    built-in sampler's command does not even load it; asking for it is one error line, exit 2."""
    from difflab.samplers import SAMPLERS

    site = _broken_install(tmp_path / "site", body)
    for args in (["sample", "--help"], ["sample"]):
        r = difflab(*args, cwd=tmp_path, path=site)
        assert r.returncode == 0 and "mala" in r.stdout, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "warning: sampler broken" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    (tmp_path / "spec.yaml").write_text("sampler: mala\nparticles: 40\nsteps: 3\n")
    r = difflab("sample", "--spec", "spec.yaml", "-q", "-o", "s.h5", cwd=tmp_path, path=site)
    assert r.returncode == 0 and (tmp_path / "s.h5").is_file(), r.stderr
    r = difflab("sample", "mlaa", cwd=tmp_path, path=site)
    assert r.returncode == 2 and "No such command 'mlaa'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 2  # the warning and the error
    r = difflab("sample", "broken", "-n", "5", cwd=tmp_path, path=site)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "could not be loaded" in r.stderr, r.stderr
    for name in SAMPLERS.table:  # every built-in sampler's command, with the broken plug-in installed
        r = difflab("sample", name, "--help", cwd=tmp_path, path=site)
        assert r.returncode == 0 and not r.stderr and "--seed" in r.stdout, (name, r.stderr)
    r = difflab("sample", "mala", "-n", "40", "--steps", "3", "-q", "-o", "m.h5", cwd=tmp_path, path=site)
    assert r.returncode == 0 and "broken" not in r.stderr and (tmp_path / "m.h5").is_file(), r.stderr


@pytest.mark.system
def test_a_score_reference_is_found_beside_its_file_and_stored_inline(tmp_path):
    """`reference: ref.yaml` in a/mine.yaml is a/ref.yaml, not the current folder's ref.yaml; the run
    file stores the reference inline, so plot draws the run against it after the file is gone, and
    a run file whose stored target names a file is refused in one line (plot reads no file it names)."""
    import h5py
    import yaml

    (tmp_path / "a").mkdir()
    (tmp_path / "myscore.py").write_text(SCORE_MODULE)
    (tmp_path / "a" / "ref.yaml").write_text("kind: gaussian\nmean: [3.0, -1.0]\ncov: [[1.0, 0.0], [0.0, 1.0]]\n")
    (tmp_path / "ref.yaml").write_text("kind: gaussian\nmean: [-5.0, 5.0]\ncov: [[1.0, 0.0], [0.0, 1.0]]\n")  # decoy
    (tmp_path / "a" / "mine.yaml").write_text("kind: score\nname: mine\nscore: myscore:score\nreference: ref.yaml\n")
    r = difflab("--plugin", "myscore.py", "sample", "ddpm", "-t", "a/mine.yaml", "-n", "50", "--steps", "5", "-q",
                "-o", "m.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = read_run(tmp_path / "m.h5")
    assert yaml.safe_load(rec.target_yaml)["reference"]["mean"] == [3.0, -1.0]
    (tmp_path / "a" / "ref.yaml").unlink()
    (tmp_path / "ref.yaml").unlink()
    from difflab.results.plot import _target

    np.testing.assert_allclose(_target(rec).mean, [3.0, -1.0])
    assert difflab("plot", "m.h5", "-o", "m.png", cwd=tmp_path).returncode == 0
    # a run file whose stored target names a local file: refused, the file never read
    (tmp_path / "elsewhere.yaml").write_text("kind: gaussian\nmean: [7.0, 7.0]\ncov: [[1.0, 0.0], [0.0, 1.0]]\n")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        f["config"].attrs["target_yaml"] = (f"kind: score\nname: mine\nscore: myscore:score\n"
                                           f"reference: {tmp_path / 'elsewhere.yaml'}\n")
    r = difflab("plot", "m.h5", "-o", "n.png", cwd=tmp_path)
    assert r.returncode == 2 and "names no file" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "n.png").exists()


@pytest.mark.system
def test_a_score_that_writes_into_its_input_fails_in_one_line(tmp_path):
    """A user score that writes into the particles it is given (x *= 0) used to zero the run
    silently (status complete): it gets a read-only view, and the run fails in one line, exit 2,
    nothing written. Negative control: the same score on a copy runs."""
    body = ("import difflab\n_exact = difflab.load_target('gaussian')\n"
            "def score(x, alpha, sigma):\n    X\n    return _exact.noised_score(x, alpha, sigma)\n")
    (tmp_path / "inplace.py").write_text(body.replace("X", "x *= 0.0"))
    (tmp_path / "copying.py").write_text(body.replace("X", "x = x * 0.0 + x"))
    for module, code in (("inplace", 2), ("copying", 0)):
        (tmp_path / f"{module}.yaml").write_text(f"kind: score\nscore: {module}:score\nreference: gaussian\n")
        r = difflab("--plugin", f"{module}.py", "sample", "ddpm", "-t", f"{module}.yaml", "-n", "30", "--steps", "4",
                    "-q", "-o", f"{module}.h5", cwd=tmp_path)
        assert r.returncode == code, (module, r.stderr)
        assert (tmp_path / f"{module}.h5").exists() == (code == 0)
    r = difflab("--plugin", "inplace.py", "sample", "ddpm", "-t", "inplace.yaml", "-n", "30", "--steps", "4", "-q",
                "-o", "inplace.h5", cwd=tmp_path)
    assert "score inplace:score: raised ValueError" in r.stderr and "read-only" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
