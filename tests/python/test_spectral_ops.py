"""DFT (opset 17 and 20 forms), STFT and MelWeightMatrix on the CPU (no CUDA kernels): DFT against
numpy.fft (fft, ifft, rfft, irfft) over axes, lengths (powers of two through the radix-2 FFT,
short odd ones through the direct sum, long odd ones through Bluestein's algorithm), padding and
truncation, batch dims and float32/float64, and against ONNX Runtime; STFT against a numpy
implementation, ONNX Runtime and torch.stft exported by the dynamo exporter; MelWeightMatrix
against ONNX's reference evaluator and ONNX Runtime. Bad inputs are errors naming the node and the
input; a CUDA build refuses the layers by name."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import kiln
from kiln_testing import run_ort

ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


def _model(op, feeds, consts=None, *, opset, name="spectral_node", inputs=None, **attrs):
    """One `op` node over graph inputs `feeds` and initializers `consts`; `inputs` orders them
    ("" for an absent one), by default feeds then consts."""
    consts = consts or {}
    if inputs is None:
        inputs = list(feeds) + list(consts)
    node = helper.make_node(op, inputs, ["y"], name=name, **attrs)
    graph_inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for k, v in feeds.items()]
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name="y")],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)  # ONNX Runtime 1.32 reads IR <= 10
    return model


def _run_kiln(model, feeds):
    return kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"]


def _as_complex(x):
    return x[..., 0] + 1j * x[..., 1] if x.shape[-1] == 2 else x[..., 0].astype(np.complex128)


def _as_pairs(z, dtype):
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


def _numpy_dft(x, *, axis, length, inverse, onesided):
    """ONNX DFT's meaning, through numpy.fft in double."""
    axis %= x.ndim  # ONNX counts the complex dim; numpy's complex array lacks it
    z = _as_complex(x.astype(np.float64))
    if inverse and onesided:
        return np.fft.irfft(z, n=length, axis=axis)[..., None].astype(x.dtype)
    if inverse:
        return _as_pairs(np.fft.ifft(z, n=length, axis=axis), x.dtype)
    if onesided:
        return _as_pairs(np.fft.rfft(z.real, n=length, axis=axis), x.dtype)
    return _as_pairs(np.fft.fft(z, n=length, axis=axis), x.dtype)


def _dft_model(x, *, axis, length, inverse, onesided, opset, length_as_input=False, axis_as_input=False):
    feeds = {"x": x}
    consts = {}
    attrs = {k: v for k, v in (("inverse", int(inverse)), ("onesided", int(onesided))) if v}
    if length is not None:
        (feeds if length_as_input else consts)["dft_length"] = np.array(length, dtype=np.int64)
    if opset >= 20:
        (feeds if axis_as_input else consts)["axis"] = np.array(axis, dtype=np.int64)
        inputs = ["x", "dft_length" if length is not None else "", "axis"]
    else:
        attrs["axis"] = axis
        inputs = ["x"] + (["dft_length"] if length is not None else [])
    return _model("DFT", feeds, consts, opset=opset, inputs=inputs, **attrs), feeds


def _tolerance(dtype, n):
    return (1e-9, 1e-9 * n) if dtype == np.float64 else (2e-5, 2e-6 * n)


DFT_CASES = [
    # (shape, axis, dft_length): lengths 8/16 (radix-2), 5/7/37 (direct), 100/1000 (Bluestein)
    ((2, 8, 1), 1, None),
    ((2, 8, 2), 1, None),
    ((3, 7, 4, 2), 1, None),
    ((3, 7, 4, 1), 2, None),
    ((3, 7, 4, 2), -2, 16),   # padded
    ((3, 7, 4, 1), 1, 5),     # truncated
    ((2, 37, 2), 1, None),
    ((4, 100, 1), 1, None),
    ((2, 3, 100, 2), 2, 64),  # truncated to a power of two
    ((1, 1000, 2), 1, None),
    ((1, 1000, 1), 1, 1024),
    ((2, 5, 3, 1), 0, 7),     # the batch dim itself
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inverse,onesided", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("shape,axis,length", DFT_CASES)
def test_dft_matches_numpy_fft(shape, axis, length, inverse, onesided, dtype):
    if onesided and not inverse and shape[-1] == 2:
        shape = (*shape[:-1], 1)  # a real-to-complex DFT takes real input
    if onesided and inverse and shape[-1] == 1:
        shape = (*shape[:-1], 2)  # a complex-to-real inverse takes complex input
    x = np.random.default_rng(len(shape) * 100 + shape[axis]).standard_normal(shape).astype(dtype)
    want = _numpy_dft(x, axis=axis, length=length, inverse=inverse, onesided=onesided)
    model, feeds = _dft_model(x, axis=axis, length=length, inverse=inverse, onesided=onesided, opset=20)
    got = _run_kiln(model, feeds)
    assert got.dtype == want.dtype and got.shape == want.shape
    n = length or shape[axis]
    rtol, atol = _tolerance(dtype, n if inverse == 0 else 1)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_a_4096_point_transform_is_fast_and_exact():
    import time

    x = np.random.default_rng(1).standard_normal((4, 4096, 2))
    model, feeds = _dft_model(x, axis=1, length=None, inverse=False, onesided=False, opset=20)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    start = time.perf_counter()
    got = engine.run(feeds)["y"]
    assert time.perf_counter() - start < 1.0  # a direct sum would take seconds
    np.testing.assert_allclose(got, _numpy_dft(x, axis=1, length=None, inverse=False, onesided=False),
                               rtol=1e-9, atol=1e-9)
    odd = np.random.default_rng(2).standard_normal((2, 4093, 1))  # prime: Bluestein
    model, feeds = _dft_model(odd, axis=1, length=None, inverse=True, onesided=False, opset=20)
    np.testing.assert_allclose(_run_kiln(model, feeds),
                               _numpy_dft(odd, axis=1, length=None, inverse=True, onesided=False),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("inverse,onesided,axis,length", [
    (0, 0, 1, None), (1, 0, 2, None), (0, 1, 1, 12), (1, 1, 1, None), (0, 0, -2, 6), (1, 1, 2, 9)])
def test_dft_opset17_axis_attribute_matches_opset20_and_onnxruntime(inverse, onesided, axis, length):
    shape = (2, 10, 6, 2 if (inverse or not onesided) else 1)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    model17, feeds = _dft_model(x, axis=axis, length=length, inverse=inverse, onesided=onesided, opset=17)
    model20, _ = _dft_model(x, axis=axis, length=length, inverse=inverse, onesided=onesided, opset=20)
    got = _run_kiln(model17, feeds)
    np.testing.assert_array_equal(got, _run_kiln(model20, feeds))
    np.testing.assert_allclose(got, _numpy_dft(x, axis=axis, length=length, inverse=inverse, onesided=onesided),
                               rtol=2e-5, atol=2e-5)
    # ONNX Runtime computes in float32: looser. Its complex-to-real inverse of an odd length
    # (n = 9) differs from numpy.fft.irfft's, which kiln matches (checked above).
    if not (inverse and onesided and length and length % 2):
        np.testing.assert_allclose(got, run_ort(model17, feeds)["y"], rtol=1e-4, atol=1e-4)


def test_dft_default_axis_of_each_opset():
    x = np.random.default_rng(3).standard_normal((2, 4, 6, 1)).astype(np.float32)
    m17 = _model("DFT", {"x": x}, opset=17)  # axis 1
    m20 = _model("DFT", {"x": x}, opset=20)  # axis -2 (dim 2)
    np.testing.assert_allclose(_run_kiln(m17, {"x": x}), _as_pairs(np.fft.fft(x[..., 0], axis=1), np.float32),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_run_kiln(m20, {"x": x}), _as_pairs(np.fft.fft(x[..., 0], axis=2), np.float32),
                               rtol=1e-5, atol=1e-5)


def test_dft_length_and_axis_given_at_run_time():
    x = np.random.default_rng(4).standard_normal((3, 9, 5, 2))
    model, _ = _dft_model(x, axis=1, length=12, inverse=False, onesided=False, opset=20, length_as_input=True,
                          axis_as_input=True)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    for axis, length in ((1, 12), (2, 3), (-3, 9), (0, 4)):
        feeds = {"x": x, "dft_length": np.array(length, dtype=np.int64), "axis": np.array(axis, dtype=np.int64)}
        got = engine.run(feeds)["y"]
        np.testing.assert_allclose(got, _numpy_dft(x, axis=axis, length=length, inverse=False, onesided=False),
                                   rtol=1e-9, atol=1e-9)


# ---- STFT --------------------------------------------------------------------------------------


def _numpy_stft(signal, step, window, frame_length, onesided):
    z = _as_complex(signal.astype(np.float64))
    frames = (z.shape[1] - frame_length) // step + 1
    w = np.ones(frame_length) if window is None else window.astype(np.float64)
    framed = np.stack([z[:, f * step:f * step + frame_length] * w for f in range(frames)], axis=1)
    spectrum = np.fft.fft(framed, axis=-1)
    if onesided:
        spectrum = spectrum[..., : frame_length // 2 + 1]
    return _as_pairs(spectrum, signal.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("length,step,frame_length,use_window,onesided,parts", [
    (128, 8, 16, True, 1, 1),
    (128, 8, 16, False, 1, 1),
    (100, 7, 25, True, 0, 2),   # odd frame length, complex signal
    (300, 50, 128, True, 1, 1),
    (1000, 300, 300, False, 0, 1),  # Bluestein frames
    (16, 16, None, False, 1, 1),  # frame_length defaults to the signal's length
])
def test_stft_matches_numpy_and_onnxruntime(length, step, frame_length, use_window, onesided, parts, dtype):
    rng = np.random.default_rng(length + step)
    signal = rng.standard_normal((2, length, parts)).astype(dtype)
    window = np.hanning(frame_length).astype(dtype) if use_window else None
    feeds = {"signal": signal}
    consts = {"frame_step": np.array(step, dtype=np.int64)}
    inputs = ["signal", "frame_step", "", ""]
    if window is not None:
        consts["window"] = window
        inputs[2] = "window"
    if frame_length is not None and (window is None or step % 2 == 0):  # both given: they must agree
        consts["frame_length"] = np.array(frame_length, dtype=np.int64)
        inputs[3] = "frame_length"
    model = _model("STFT", feeds, consts, opset=17, inputs=inputs, onesided=onesided)
    got = _run_kiln(model, feeds)
    want = _numpy_stft(signal, step, window, frame_length or length, onesided)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-9 if dtype == np.float64 else 2e-5 * np.sqrt(frame_length or length)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # ONNX Runtime's STFT takes real signals only, and needs a window or frame_length. It computes
    # in float32: errors up to 1e-4 of the spectrum's largest value.
    if parts == 1 and inputs[2:] != ["", ""]:
        np.testing.assert_allclose(got, run_ort(model, feeds)["y"], rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_stft_frame_step_at_run_time():
    signal = np.random.default_rng(5).standard_normal((1, 64, 1)).astype(np.float32)
    feeds = {"signal": signal, "frame_step": np.array(4, dtype=np.int64)}
    model = _model("STFT", feeds, {"frame_length": np.array(16, dtype=np.int64)}, opset=17,
                   inputs=["signal", "frame_step", "", "frame_length"])
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    for step in (4, 5, 48):
        got = engine.run({"signal": signal, "frame_step": np.array(step, dtype=np.int64)})["y"]
        np.testing.assert_allclose(got, _numpy_stft(signal, step, None, 16, True), rtol=1e-5, atol=1e-5)


def test_torch_stft_exported_by_dynamo_matches_torch():
    torch = pytest.importorskip("torch")

    class Spectrogram(torch.nn.Module):
        def forward(self, x):
            s = torch.stft(x, n_fft=32, hop_length=8, window=torch.hann_window(32), center=False,
                           return_complex=True)
            return torch.view_as_real(s)

    x = torch.randn(3, 256)
    # The TorchScript exporter refuses complex STFT outputs; the dynamo exporter writes an STFT node.
    model = torch.onnx.export(Spectrogram(), (x,), dynamo=True, verbose=False).model_proto
    assert "STFT" in [n.op_type for n in model.graph.node]
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({model.graph.input[0].name: x.numpy()})
    want = Spectrogram()(x).numpy()
    (out,) = got.values()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


# ---- MelWeightMatrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("bins,dft_length,sample_rate,low,high,out_type", [
    (8, 16, 8192, 0.0, 4096.0, TensorProto.FLOAT),
    (40, 512, 16000, 20.0, 8000.0, TensorProto.FLOAT),
    (10, 64, 22050, 100.0, 5000.0, TensorProto.DOUBLE),
    (128, 2048, 44100, 0.0, 22050.0, TensorProto.FLOAT16),
    (6, 33, 8000, 300.0, 3000.0, TensorProto.INT32),
])
def test_mel_weight_matrix_matches_the_reference_and_onnxruntime(bins, dft_length, sample_rate, low, high, out_type):
    feeds = {"num_mel_bins": np.array(bins, dtype=np.int64), "dft_length": np.array(dft_length, dtype=np.int64),
             "sample_rate": np.array(sample_rate, dtype=np.int64),
             "lower_edge_hertz": np.array(low, dtype=np.float32), "upper_edge_hertz": np.array(high, dtype=np.float32)}
    model = _model("MelWeightMatrix", feeds, opset=17, output_datatype=out_type)
    got = _run_kiln(model, feeds)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    assert got.dtype == want.dtype and got.shape == (dft_length // 2 + 1, bins)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-3, atol=1e-6)
    if out_type in (TensorProto.FLOAT, TensorProto.DOUBLE):
        np.testing.assert_allclose(got, run_ort(model, feeds)["y"], rtol=1e-5, atol=1e-6)


def test_mel_weight_matrix_from_constants_has_a_static_shape():
    consts = {"num_mel_bins": np.array(5, dtype=np.int32), "dft_length": np.array(20, dtype=np.int32),
              "sample_rate": np.array(1000, dtype=np.int32), "lower_edge_hertz": np.array(0.0, dtype=np.float32),
              "upper_edge_hertz": np.array(500.0, dtype=np.float32)}
    model = _model("MelWeightMatrix", {}, consts, opset=17)
    got = _run_kiln(model, {})
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, {})[0], rtol=1e-6, atol=1e-7)


# ---- errors ------------------------------------------------------------------------------------


def _x(shape):
    return np.zeros(shape, dtype=np.float32)


@pytest.mark.parametrize("shape,attrs,consts,pattern", [
    ((2, 8, 3), {}, {}, r"spectral_node.*input 0 \(input\)'s last dim must be 1 \(real\) or 2"),
    ((2, 8, 2), {"onesided": 1}, {}, r"spectral_node.*onesided = 1 with inverse = 0.*needs real input 0"),
    ((2, 8, 1), {"onesided": 1, "inverse": 1}, {}, r"spectral_node.*onesided = 1 with inverse = 1.*needs complex"),
    ((2, 8, 1), {}, {"dft_length": 0}, r"spectral_node.*input 1 \(dft_length\) is 0; it must be >= 1"),
    ((2, 8, 1), {}, {"axis": -1}, r"spectral_node.*input 2 \(axis\) is -1; it must lie in \[-3, -2\] or \[0, 1\]"),
    ((2, 8, 1), {"inverse": 2}, {}, r"spectral_node.*attribute 'inverse' must be 0 or 1, got 2"),
])
def test_bad_dft_is_an_error_naming_the_node_and_input(shape, attrs, consts, pattern):
    consts = {k: np.array(v, dtype=np.int64) for k, v in consts.items()}
    inputs = ["x", "dft_length" if "dft_length" in consts else "", "axis" if "axis" in consts else ""]
    model = _model("DFT", {"x": _x(shape)}, consts, opset=20, inputs=inputs, **attrs)
    with pytest.raises(kiln.KilnError, match=pattern):
        kiln.build_onnx(model, target="cpu")


def test_bad_dft_length_at_run_time_is_an_error_naming_the_node():
    x = _x((2, 8, 1))
    model, feeds = _dft_model(x, axis=1, length=4, inverse=False, onesided=False, opset=20, length_as_input=True)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"spectral_node.*input 1 \(dft_length\) is -3; it must be >= 1"):
        engine.run({"x": x, "dft_length": np.array(-3, dtype=np.int64)})


@pytest.mark.parametrize("signal_shape,consts,onesided,pattern", [
    ((1, 32, 2), {"frame_step": 4, "frame_length": 8}, 1, r"spectral_node.*onesided = 1 needs a real input 0"),
    ((1, 32, 1), {"frame_step": 0, "frame_length": 8}, 1, r"spectral_node.*input 1 \(frame_step\) is 0"),
    ((1, 32, 1), {"frame_step": 4, "frame_length": 40}, 1, r"spectral_node.*frame length 40 is longer than input 0"),
    ((32, 1), {"frame_step": 4, "frame_length": 8}, 1, r"spectral_node.*input 0 \(signal\) must be \[batch, "),
    ((1, 32, 1), {"frame_step": 4, "frame_length": 8, "window": np.ones(10, np.float32)}, 1,
     r"spectral_node.*input 2 \(window\) has 10 samples but input 3 \(frame_length\) is 8"),
])
def test_bad_stft_is_an_error_naming_the_node_and_input(signal_shape, consts, onesided, pattern):
    consts = {k: v if isinstance(v, np.ndarray) else np.array(v, dtype=np.int64) for k, v in consts.items()}
    inputs = ["signal", "frame_step", "window" if "window" in consts else "", "frame_length"]
    model = _model("STFT", {"signal": _x(signal_shape)}, consts, opset=17, inputs=inputs, onesided=onesided)
    with pytest.raises(kiln.KilnError, match=pattern):
        kiln.build_onnx(model, target="cpu")


def test_mel_edges_past_the_nyquist_frequency_are_an_error_naming_the_node():
    feeds = {"num_mel_bins": np.array(8, dtype=np.int64), "dft_length": np.array(16, dtype=np.int64),
             "sample_rate": np.array(8000, dtype=np.int64),
             "lower_edge_hertz": np.array(0.0, dtype=np.float32), "upper_edge_hertz": np.array(16000.0, dtype=np.float32)}
    engine = kiln.Engine(kiln.build_onnx(_model("MelWeightMatrix", feeds, opset=17), target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"spectral_node.*outside \[0, 9\).*edges must lie in \[0, sample_rate / 2\]"):
        engine.run(feeds)
    feeds["num_mel_bins"] = np.array(0, dtype=np.int64)
    with pytest.raises(kiln.KilnError, match=r"spectral_node.*input 0 \(num_mel_bins\) is 0; it must be >= 1"):
        engine.run(feeds)


def test_cuda_build_refuses_the_layers_by_name():
    x = np.zeros((2, 8, 1), dtype=np.float32)
    model, _ = _dft_model(x, axis=1, length=None, inverse=False, onesided=False, opset=20)
    try:
        engine = kiln.build_onnx(model, target="cuda", cuda_arch=90, allow_host_layers=False)
    except kiln.KilnError as error:
        assert "host layers are not allowed (allow_host_layers):\n  layer 'spectral_node' (op 'DFT'): the cuda backend has no kernel" in str(error)
        return
    with pytest.raises(kiln.KilnError, match="built without CUDA"):  # a runtime without the CUDA backend
        kiln.Engine(engine)
    pytest.skip("this kiln has no CUDA backend, so no list of CUDA kernels to check against")
