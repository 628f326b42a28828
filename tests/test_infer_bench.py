"""The inference benchmark's table (bench/bench_infer.py): which engine a row reports, and
when a target holds. The timings themselves live in bench/, never in tests."""
from __future__ import annotations

from bench import bench_infer


def _engine(speedup: float, error: float = 1e-7, agreement: float = 1.0) -> dict:
    return {"archc_min_s": 0.01, "torchvision_min_s": 0.01 * speedup, "speedup": speedup,
            "median_speedup": speedup, "error": error, "exact": error <= bench_infer.EXACT,
            "top1_agreement": agreement, "rounds": 5}


def test_fp32_rows_report_the_fastest_exact_engine():
    result = {"resnet18/b1": {"compile_s": 30.0, "compiled": _engine(2.0),
                              "onnxruntime": _engine(3.0, error=1e-2), "int8": _engine(2.6)},
              "resnet50/b32": {"compile_s": 60.0, "compiled": _engine(1.2),
                               "onnxruntime": _engine(1.4), "int8": _engine(2.0, 0.05, 0.97)}}
    rows = bench_infer.rows(result)
    assert [r.what.split(", ")[2] for r in rows] == [
        "fp32 (compiled) vs torchvision eager", "int8 (inexact int8) vs torchvision eager",
        "fp32 (onnxruntime) vs torchvision eager", "int8 (inexact int8) vs torchvision eager"]
    assert [r.ratio for r in rows] == [2.0, 2.6, 1.4, 2.0]
    assert [r.holds for r in rows] == [True, True, False, False]  # targets 1.5× and 2.5×
    assert "onnxruntime 3.00×" in rows[0].note  # the inexact one is shown, not judged
    assert "top-1 agreement with fp32 97%" in rows[3].note


def test_no_exact_engine_never_holds():
    result = {"resnet18/b1": {"compile_s": 1.0, "compiled": _engine(9.0, error=1.0),
                              "onnxruntime": _engine(9.0, error=1.0), "int8": _engine(9.0)}}
    fp32 = bench_infer.rows(result)[0]
    assert fp32.ratio == 9.0 and fp32.holds is False


def test_submit_row_names_the_engine_auto_picks():
    submit = {"images": 500, "first_run_s": 80.0, "ours_s": 10.0, "baseline_s": 25.0,
              "ours_ips": 50.0, "baseline_ips": 20.0, "speedup": 2.5, "rounds": 3,
              "max_probability_difference": 0.01,
              "engines": {"eager": {"setup_s": 0.0, "per_image_ms": 40.0, "exact": True},
                          "onnxruntime": {"setup_s": 1.0, "per_image_ms": 15.0, "exact": True}}}
    (row,) = bench_infer.rows({"submit": submit})
    assert row.id == "s" and row.ratio == 2.5 and row.holds is None
    assert "engine auto → onnxruntime" in row.note


def test_quick_rows_without_the_compiled_engine():
    result = {"resnet50/b1": {"compile_s": 0.0, "onnxruntime": _engine(1.6), "int8": _engine(3.0)}}
    fp32 = bench_infer.rows(result)[0]
    assert "fp32 (onnxruntime)" in fp32.what and fp32.holds is True
    assert "compiled not measured (--quick)" in fp32.note


def test_a_new_engine_of_the_registry_is_a_new_figure(monkeypatch):
    from runtime.after import engines

    def build(trained, batch):
        raise AssertionError("rows() builds nothing")

    monkeypatch.setitem(engines.KINDS, "turbo", engines.EngineKind("turbo", "exact, faster",
                                                                   build))
    monkeypatch.setitem(engines.KINDS, "int4", engines.EngineKind(
        "int4", "four bits", build, exact=False, precision="int4"))
    result = {"resnet18/b1": {"compile_s": 1.0, "compiled": _engine(2.0),
                              "onnxruntime": _engine(1.8), "turbo": _engine(4.0),
                              "int8": _engine(3.0), "int4": _engine(5.0, 0.2, 0.8)}}
    fp32, *inexact = bench_infer.rows(result)
    assert "fp32 (turbo)" in fp32.what and fp32.ratio == 4.0
    assert "compiled 2.00×" in fp32.note and "onnxruntime 1.80×" in fp32.note
    assert [r.what.split(", ")[2] for r in inexact] == [
        "int8 (inexact int8) vs torchvision eager", "int4 (inexact int4) vs torchvision eager"]
    assert inexact[1].holds is None and inexact[1].target == ""  # no target for int4 yet
