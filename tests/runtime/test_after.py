"""After training: `archc eval`, `predict`, `submit`, `export` and runtime.after.inference.

One tiny run (tests/fixtures/tiny.arch, two epochs on ~120 synthetic 32 px images) is trained
once for the module; every test reads it, and tests that damage a run work on a copy.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from rich.console import Console
from typer.testing import CliRunner

from runtime.after import verbs as after
from runtime.after.inference import InferenceError, load_trained, predict_images
from runtime.data.folders import load_images, load_unlabelled
from runtime.data.synth import write_synthetic
from runtime.training.run import load_split

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "tests" / "fixtures" / "tiny.arch"
N_TEST = 12  # >= 10, so numeric and text order of the ids differ (2 < 10 but "10" < "2")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """ARCHC_CACHE in a temp folder for the whole module (training and eval read it)."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("ARCHC_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Kaggle layout: train/cat.N.jpg, dog.N.jpg and test1/1.jpg ... 12.jpg."""
    root = tmp_path_factory.mktemp("data")
    write_synthetic(root, n=120, seed=0, test_n=N_TEST)
    return root


@pytest.fixture(scope="module")
def run(cache, data, tmp_path_factory) -> Path:
    """A trained run folder (batch-norm variant, so eval mode matters)."""
    from runtime.training.train import TrainRequest, train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = train(TrainRequest(spec=SPEC, data=data / "train", run=run_dir,
                                settings={"epochs": 2, "seed": 0},
                                console=Console(quiet=True)))
    assert result.stopped_reason == "done"
    return run_dir


@pytest.fixture(scope="module")
def trained(run):
    return load_trained(run)


@pytest.fixture
def cli(cache):
    """Invoke the after-training verbs in-process: (exit code, stdout, stderr, exception)."""
    app = typer.Typer()
    after.register(app)
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _fails_cleanly(result, *fragments: str) -> str:
    """Exit code 1, an `error:` line naming the problem, no traceback; returns the output."""
    text = result.output
    assert result.exit_code == 1, text
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text
    assert "error: " in result.stderr
    for fragment in fragments:
        assert fragment in text, text
    return text


# --------------------------------------------------------------------------- inference


def test_load_trained_rebuilds_from_the_run_folder(run, trained):
    assert trained.checkpoint == "best"
    assert trained.classes == ["cat", "dog"]
    assert trained.image_size == 32 and trained.decode_size == 32
    assert not trained.model.training
    best = json.loads((run / "best.json").read_text())
    assert trained.epoch == best["epoch"]
    # a checkpoint path, with or without the suffix, picks that checkpoint
    assert load_trained(run / "last.safetensors").checkpoint == "last"
    assert load_trained(run / "last").checkpoint == "last"
    assert load_trained(run, "last").epoch == 2


def test_predict_images_matches_the_trainers_validation(run, trained, data):
    """Eval on the validation split reproduces the val accuracy and log loss the loop logged."""
    images = load_images(data / "train", size=trained.decode_size,
                         cache_dir=Path(os.environ["ARCHC_CACHE"]))
    _, val = load_split(run)
    probs = predict_images(trained, images.images[val])
    assert probs.shape == (len(val), 2)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-12)
    record = json.loads((run / "best.json").read_text())["metrics"]
    labels = images.labels[val]
    assert (probs.argmax(1) == labels).mean() == pytest.approx(record["val_acc"])
    p_true = np.clip(probs[np.arange(len(val)), labels], 1e-15, 1 - 1e-15)
    assert -np.log(p_true).mean() == pytest.approx(record["val_logloss"], rel=1e-5)


def test_tta_averages_with_the_flipped_image(trained, data):
    u8, _, _ = load_unlabelled(sorted((data / "test1").iterdir()), trained.decode_size)
    plain = predict_images(trained, u8)
    flipped = predict_images(trained, u8[:, :, ::-1])  # mirror left-right by hand
    tta = predict_images(trained, u8, tta=True, batch_size=5)  # batches of 5 + 5 + 2
    assert tta.shape == plain.shape == (N_TEST, 2)
    np.testing.assert_allclose(tta, (plain + flipped) / 2, atol=1e-12)
    assert not np.allclose(plain, flipped)  # the flip really changes something


def test_bad_image_arrays_are_inference_errors(trained):
    with pytest.raises(InferenceError, match="uint8"):
        predict_images(trained, np.zeros((2, 32, 32, 3), dtype=np.float32))
    with pytest.raises(InferenceError, match=r"\(N, H, W, 3\)"):
        predict_images(trained, np.zeros((2, 32, 32), dtype=np.uint8))


def test_outputs_that_overflow_are_refused_not_reported_as_nan(run):
    """Finite weights can still overflow on some input (issue 11, item 8): the verbs must not
    print or submit NaN probabilities."""
    import torch

    overflowing = load_trained(run)
    fc = [m for m in overflowing.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        fc.weight.fill_(3e38)  # finite, but the logits overflow to inf (softmax: NaN)
    with pytest.raises(InferenceError, match="not finite"):
        predict_images(overflowing, np.full((2, 32, 32, 3), 255, dtype=np.uint8))


# --------------------------------------------------------------------------- eval


def _independent_scores(trained, run, data):
    """Accuracy, log loss, confusion, precision and recall computed here with numpy."""
    images = load_images(data / "train", size=trained.decode_size,
                         cache_dir=Path(os.environ["ARCHC_CACHE"]))
    _, val = load_split(run)
    probs, labels = predict_images(trained, images.images[val]), images.labels[val]
    predicted = probs.argmax(1)
    confusion = np.array([[np.sum((labels == t) & (predicted == p)) for p in range(2)]
                          for t in range(2)])
    precision = [np.sum((predicted == c) & (labels == c)) / np.sum(predicted == c)
                 if np.sum(predicted == c) else None for c in range(2)]
    recall = [np.sum((predicted == c) & (labels == c)) / np.sum(labels == c) for c in range(2)]
    log_loss = -np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1)))
    return confusion, precision, recall, log_loss


def test_eval_json_is_consistent(cli, run, trained, data):
    result = cli("eval", run, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    confusion = np.array(report["confusion"])
    assert report["n"] == confusion.sum() == len(load_split(run)[1])
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / report["n"])
    expected_cm, precision, recall, log_loss = _independent_scores(trained, run, data)
    np.testing.assert_array_equal(confusion, expected_cm)
    assert report["log_loss"] == pytest.approx(log_loss)
    for c, name in enumerate(report["classes"]):
        got = report["per_class"][name]
        for key, want in (("precision", precision[c]), ("recall", recall[c])):
            # None: no image predicted as (precision) or labelled as (recall) this class
            assert got[key] is None if want is None else got[key] == pytest.approx(want)
        assert got["support"] == expected_cm[c].sum()
    assert report["split"] == "the run's validation split"
    plot = Path(report["plot"])
    assert plot.parent == run / "eval" and plot.name.endswith("-val.png") and plot.stat().st_size


def test_eval_table_on_given_data_and_plot_path(cli, run, data, tmp_path):
    plot = tmp_path / "cm.png"
    result = cli("eval", run, "--data", data / "train", "--plot", plot, "--tta")
    assert result.exit_code == 0, result.output
    for word in ("accuracy", "log loss", "precision", "recall", "confusion matrix", "cat", "dog"):
        assert word in result.stdout
    assert "120 images" in result.stdout
    assert "note: this is the data the run trained on" in result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- predict


def test_predict_files_and_a_directory(cli, run, trained, data):
    test1 = data / "test1"
    files = [test1 / "10.jpg", test1 / "2.jpg"]
    result = cli("predict", run, *files, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    u8, _, _ = load_unlabelled(files, trained.decode_size)
    expected = predict_images(trained, u8)
    got = [[p["probabilities"][c] for c in ("cat", "dog")] for p in report["predictions"]]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert [p["file"] for p in report["predictions"]] == [str(f) for f in files]
    assert report["skipped"] == []

    folder = cli("predict", run, test1, "--json")
    assert folder.exit_code == 0, folder.output
    names = [Path(p["file"]).name for p in json.loads(folder.stdout)["predictions"]]
    assert names == [f"{i}.jpg" for i in range(1, N_TEST + 1)]  # natural order

    table = cli("predict", run, files[0], "--tta", env={"COLUMNS": "250"})  # no folded paths
    assert table.exit_code == 0 and "10.jpg" in table.stdout and "p(dog)" in table.stdout


def test_predict_tta_matches_the_api(cli, run, trained, data):
    file = data / "test1" / "3.jpg"
    report = json.loads(cli("predict", run, file, "--json", "--tta").stdout)
    u8, _, _ = load_unlabelled([file], trained.decode_size)
    expected = predict_images(trained, u8, tta=True)[0]
    assert [report["predictions"][0]["probabilities"][c] for c in ("cat", "dog")] == \
        pytest.approx(expected.tolist(), abs=1e-12)


def test_predict_skips_unreadable_files_and_exits_1(cli, run, data, tmp_path):
    shutil.copy(data / "test1" / "1.jpg", tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = cli("predict", run, tmp_path, tmp_path / "missing.jpg", "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert [Path(p["file"]).name for p in report["predictions"]] == ["good.jpg"]
    reasons = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"broken.jpg", "missing.jpg"}
    assert reasons["missing.jpg"] == "no such file"
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr


def test_predict_with_nothing_readable_fails(cli, run, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    _fails_cleanly(cli("predict", run, tmp_path / "broken.jpg"), "no image could be read")


# --------------------------------------------------------------------------- submit


def test_submit_writes_the_kaggle_format(cli, run, trained, data, tmp_path):
    out = tmp_path / "sub" / "submission.csv"
    result = cli("submit", run, "--test", data / "test1", "-o", out, "--tta")
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == N_TEST + 1
    ids = [int(line.split(",")[0]) for line in lines[1:]]
    assert ids == list(range(1, N_TEST + 1))  # numeric order: 2 before 10
    values = np.array([float(line.split(",")[1]) for line in lines[1:]])
    assert values.min() >= 0.005 and values.max() <= 0.995
    files = [data / "test1" / f"{i}.jpg" for i in ids]
    u8, _, _ = load_unlabelled(files, trained.decode_size)
    p_dog = predict_images(trained, u8, tta=True)[:, trained.classes.index("dog")]
    np.testing.assert_allclose(values, np.clip(p_dog, 0.005, 0.995), atol=1e-6)


def test_submit_clip_and_positive_options(cli, run, data, tmp_path):
    raw, cat = tmp_path / "raw.csv", tmp_path / "cat.csv"
    assert cli("submit", run, "--test", data / "test1", "-o", raw, "--clip", "0").exit_code == 0
    assert cli("submit", run, "--test", data / "test1", "-o", cat, "--clip", "0",
               "--positive", "cat").exit_code == 0
    p_dog = np.loadtxt(raw, delimiter=",", skiprows=1)[:, 1]
    p_cat = np.loadtxt(cat, delimiter=",", skiprows=1)[:, 1]
    np.testing.assert_allclose(p_dog + p_cat, 1, atol=2e-6)  # 6 significant digits each
    _fails_cleanly(cli("submit", run, "--test", data / "test1", "-o", raw, "--positive", "horse"),
                   "no class 'horse'", "--positive")
    _fails_cleanly(cli("submit", run, "--test", data / "test1", "--clip", "0.7"), "--clip")


def test_submit_refuses_bad_test_folders(cli, run, data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails_cleanly(cli("submit", run, "--test", empty, "-o", tmp_path / "s.csv"), "no test images")
    _fails_cleanly(cli("submit", run, "--test", tmp_path / "nope"), "not found")
    named = tmp_path / "named"
    named.mkdir()
    shutil.copy(data / "test1" / "1.jpg", named / "cat.1.jpg")
    _fails_cleanly(cli("submit", run, "--test", named), "numeric id", "cat.1.jpg")
    broken = tmp_path / "broken"
    shutil.copytree(data / "test1", broken)
    (broken / "5.jpg").write_bytes(b"truncated")
    out = tmp_path / "b.csv"
    _fails_cleanly(cli("submit", run, "--test", broken, "-o", out), "5.jpg", "--fill")
    assert not out.exists()
    assert cli("submit", run, "--test", broken, "-o", out, "--fill", "0.5").exit_code == 0
    assert "5,0.5" in out.read_text().splitlines()


# --------------------------------------------------------------------------- export


def _probe(trained, batch=4):
    seeded = torch.Generator().manual_seed(7)
    return torch.randn((batch, *trained.network.input_shape), generator=seeded)


def test_export_onnx_matches_torch(cli, run, trained, tmp_path):
    pytest.importorskip("archc.backends.onnx", reason="the ONNX backend is not in this tree")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    result = cli("export", run, "--to", "onnx", "-o", out)
    assert result.exit_code == 0, result.output
    x = _probe(trained)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = trained.model(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_export_torchscript_reloads_equal(cli, run, trained, tmp_path):
    out = tmp_path / "tiny.pt"
    result = cli("export", run, "--to", "torchscript", "-o", out)
    assert result.exit_code == 0, result.output
    assert "normalised with mean" in result.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        loaded = torch.jit.load(str(out))
    x = _probe(trained, batch=5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained.model(x), atol=1e-5, rtol=1e-5)


def test_export_python_is_standalone(cli, run, trained, tmp_path):
    out = tmp_path / "tiny_model.py"
    result = cli("export", run, "--to", "python", "-o", out)
    assert result.exit_code == 0, result.output
    weights = out.with_suffix(".safetensors")
    assert weights.exists()
    spec = importlib.util.spec_from_file_location("tiny_model", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from safetensors.torch import load_file

    model = module.Tiny()
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    x = _probe(trained)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained.model(x), atol=1e-6, rtol=1e-6)


def test_export_rejects_an_unknown_format(cli, run, tmp_path):
    _fails_cleanly(cli("export", run, "--to", "tflite", "-o", tmp_path / "x"), "--to must be")


# --------------------------------------------------------------------------- bad runs


def test_missing_run_folder(cli, tmp_path):
    for verb in (("eval",), ("predict", tmp_path / "x.jpg"), ("export", "--to", "python", "-o",
                                                            tmp_path / "m.py")):
        _fails_cleanly(cli(verb[0], tmp_path / "no-such-run", *verb[1:]), "no-such-run",
                       "not found")
    with pytest.raises(InferenceError, match="not found"):
        load_trained(tmp_path / "no-such-run")


def test_folder_that_is_not_a_run(cli, tmp_path):
    _fails_cleanly(cli("eval", tmp_path), "is not a run folder", "spec.arch")


def test_corrupt_checkpoint(cli, run, data, tmp_path):
    copy = _copy(run, tmp_path)
    weights = copy / "best.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    text = _fails_cleanly(cli("predict", copy, data / "test1" / "1.jpg"), "best", "corrupt")
    assert "best.safetensors" in text and "still intact: last" in text
    with pytest.raises(InferenceError, match="corrupt"):
        load_trained(copy)
    assert load_trained(copy, "last").checkpoint == "last"  # the other checkpoint still works


def test_edited_spec_no_longer_matching_the_weights(cli, run, data, tmp_path):
    copy = _copy(run, tmp_path)
    spec = copy / "spec.arch"
    text = spec.read_text()
    assert "conv3-16 bn relu maxpool" in text
    spec.write_text(text.replace("conv3-16 bn relu maxpool", "conv3-24 bn relu maxpool", 1))
    out = _fails_cleanly(cli("submit", copy, "--test", data / "test1", "-o", tmp_path / "s.csv"),
                         "do not fit", "shape conflicts", "features.4.weight")
    assert "(24, 8, 3, 3)" in out and "(16, 8, 3, 3)" in out


def test_spec_that_no_longer_checks(cli, run, tmp_path):
    copy = _copy(run, tmp_path)
    (copy / "spec.arch").write_text("network tiny(:\n")
    _fails_cleanly(cli("export", copy, "--to", "torchscript", "-o", tmp_path / "m.pt"),
                   "no longer checks")


def test_the_real_command_line_reports_without_traceback(tmp_path):
    """One end-to-end check through the installed `archc` script (a fresh interpreter)."""
    archc = Path(sys.executable).with_name("archc")
    command = [str(archc)] if archc.exists() else [sys.executable, "-m", "archc"]
    done = subprocess.run([*command, "eval", str(tmp_path / "missing-run")],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "missing-run" in done.stderr
