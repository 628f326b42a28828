"""Reference forwards written from the formats' own rules, independent of archc's import.

`caffe_forward` runs a prototxt layer by layer on named blobs, with Caffe's pooling
(pooling_layer.cpp: rounded-up size, clipped windows, AVE divided by the padded window),
Caffe's LRN (lrn_layer.cpp) and BatchNorm's scale factor. `darknet_forward` runs a cfg with
darknet's rules (maxpool's total padding `size-1` put left/top as padding/2, the rest right and
bottom; upsample repeats each pixel stride×stride times).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from archc.compiler.diagnostics import Diagnostics
from archc.importers import caffe, darknet, prototxt


def caffe_pooled(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's rule: ceil((size + 2·pad − kernel) / stride) + 1, less one if the last
    window would start at or past size + pad (applied only when pad > 0)."""
    out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def caffe_pool(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
               method: str) -> torch.Tensor:
    """Caffe's pooling loop, one output cell at a time; windows are (height, width)."""
    _, _, h, w = x.shape
    oh, ow = caffe_pooled(h, k[0], s[0], p[0]), caffe_pooled(w, k[1], s[1], p[1])
    out = torch.empty(x.shape[0], x.shape[1], oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
            area = (h1 - h0) * (w1 - w0)
            window = x[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)]
            if method == "MAX":
                out[:, :, i, j] = window.amax(dim=(2, 3))
            else:
                out[:, :, i, j] = window.sum(dim=(2, 3)) / area
    return out


def hw(q, name: str, default: int) -> tuple[int, int]:
    """A window field as (h, w): `NAME_h`/`NAME_w`, or one value (`kernel_size` for kernel)."""
    h, w = q.get(f"{name}_h"), q.get(f"{name}_w")
    if h is not None:
        return int(h), int(w)
    value = q.get("kernel_size" if name == "kernel" else name, default)
    return int(value), int(value)


def caffe_lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """scale_c = k + alpha / size · Σ x² over channels c − (size−1)/2 … c + (size−1)/2."""
    half = (size - 1) // 2
    squares = F.pad(x * x, (0, 0, 0, 0, half, half))
    window = sum(squares[:, i:i + x.shape[1]] for i in range(size))
    return x * (k + alpha / size * window) ** -beta


def caffe_blobs(layer, x: torch.Tensor, rng: np.random.Generator) -> list[np.ndarray]:
    """Random blobs in the shapes Caffe gives a layer with input `x` (BN factor ≠ 1)."""
    c = x.shape[1]

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.3

    if layer.type == "Convolution":
        q = layer.message.get("convolution_param")
        n, g = int(q.get("num_output")), int(q.get("group", 1))
        bias = str(q.get("bias_term", "true")) == "true"
        return [rand(n, c // g, *hw(q, "kernel", 1))] + ([rand(n)] if bias else [])
    if layer.type == "InnerProduct":
        n = int(layer.message.get("inner_product_param").get("num_output"))
        return [rand(n, int(np.prod(x.shape[1:]))), rand(n)]
    if layer.type == "BatchNorm":
        factor = np.array([2.5], dtype=np.float32)
        return [rand(c) * factor, (rng.uniform(0.5, 2, c) * factor).astype(np.float32), factor]
    if layer.type == "Scale":
        return [rand(c) + 1, rand(c)]
    if layer.type == "PReLU":
        shared = str(layer.message.get("prelu_param", prototxt.Message()).get(
            "channel_shared", "false")) == "true"
        return [rand(1 if shared else c) + 0.25]
    return []


def caffe_forward(path: str, x: torch.Tensor, rng: np.random.Generator,
                  shapes: dict[str, tuple[int, ...]] | None = None):
    """The output of the last layer of a prototxt run on `x`, and the random blobs it used.

    `shapes`, when given, receives each layer's output shape (without the batch dim).
    """
    blobs: dict[str, list[np.ndarray]] = {}
    root = prototxt.parse(open(path).read(), path, Diagnostics())
    values: dict[str, torch.Tensor] = {}
    layers = caffe.layers_of(root)
    first_input = str(root.get("input")) if root.get("input") else layers[0].tops[0]
    values[first_input] = x
    last = None
    for layer in layers:
        if layer.type == "Input":
            continue
        ins = [values[str(b.value)] for b in layer.bottoms]
        made = caffe_blobs(layer, ins[0], rng)
        if made:
            blobs[layer.name] = made
        params = [torch.from_numpy(np.asarray(b)) for b in blobs.get(layer.name, [])]
        outs = _caffe_layer(layer, ins, params)
        outs = outs if isinstance(outs, list) else [outs] * len(layer.tops)
        for top, value in zip(layer.tops, outs):
            values[top] = value
        if shapes is not None:
            shapes[layer.name] = tuple(outs[0].shape[1:])
        last = layer.tops[0]
    return values[last], blobs


def _caffe_layer(layer, ins, params):
    p = layer.message
    t = layer.type
    x = ins[0]
    if t == "Convolution":
        q = p.get("convolution_param")
        dil = (q.values("dilation") or [1])[0]
        bias = params[1] if len(params) > 1 else None
        return F.conv2d(x, params[0], bias, hw(q, "stride", 1), hw(q, "pad", 0), dil,
                        int(q.get("group", 1)))
    if t == "Pooling":
        q = p.get("pooling_param")
        method = str(q.get("pool", "MAX"))
        if str(q.get("global_pooling", "false")) == "true":
            return x.amax(dim=(2, 3), keepdim=True) if method == "MAX" else x.mean(
                dim=(2, 3), keepdim=True)
        return caffe_pool(x, hw(q, "kernel", 1), hw(q, "stride", 1), hw(q, "pad", 0), method)
    if t == "LRN":
        q = p.get("lrn_param")
        return caffe_lrn(x, int(q.get("local_size", 5)), float(q.get("alpha", 1)),
                         float(q.get("beta", 0.75)), float(q.get("k", 1)))
    if t == "ReLU":
        slope = float(p.get("relu_param", prototxt.Message()).get("negative_slope", 0))
        return torch.where(x > 0, x, x * slope)
    if t == "Sigmoid":
        return torch.sigmoid(x)
    if t == "ELU":
        alpha = float(p.get("elu_param", prototxt.Message()).get("alpha", 1))
        return torch.where(x > 0, x, alpha * (torch.exp(x) - 1))
    if t == "PReLU":  # max(0, x) + a_c · min(0, x), one a or one per channel
        slope = params[0].reshape(1, -1, *[1] * (x.dim() - 2))
        return torch.clamp(x, min=0) + slope * torch.clamp(x, max=0)
    if t == "Flatten":
        return x.flatten(1)
    if t == "TanH":
        return torch.tanh(x)
    if t in ("Dropout", "Split"):
        return [x] * len(layer.tops) if t == "Split" else x
    if t == "Softmax":
        return torch.softmax(x, dim=1)
    if t == "InnerProduct":
        return F.linear(x.flatten(1), params[0], params[1] if len(params) > 1 else None)
    if t == "Concat":
        return torch.cat(ins, dim=1)
    if t == "Eltwise":
        op = str(p.get("eltwise_param", prototxt.Message()).get("operation", "SUM"))
        out = ins[0]
        for other in ins[1:]:
            out = out * other if op == "PROD" else (torch.maximum(out, other) if op == "MAX"
                                                   else out + other)
        return out
    if t == "BatchNorm":
        factor = 0.0 if float(params[2]) == 0 else 1.0 / float(params[2])
        mean, var = params[0] * factor, params[1] * factor
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5)
    if t == "Scale":
        return x * params[0][None, :, None, None] + params[1][None, :, None, None]
    raise NotImplementedError(t)


def darknet_forward(path: str, weights: list[np.ndarray], x: torch.Tensor,
                    shapes: dict[int, tuple[int, ...]] | None = None) -> torch.Tensor:
    """A cfg's output on `x`, reading `weights` (the arrays in file order) as darknet does.

    `shapes`, when given, receives each layer's output shape (by layer index, no batch).
    """
    sections = darknet.parse_cfg(open(path).read(), path, Diagnostics())
    stream = iter(weights)
    outputs: list[torch.Tensor] = []
    current = x
    for s in darknet.layer_sections(sections):
        opt = {k: o.value for k, o in s.options.items()}
        if s.type == "convolutional":
            size, stride = int(opt.get("size", 1)), int(opt.get("stride", 1))
            pad = size // 2 if int(opt.get("pad", 0)) else 0
            n = int(opt["filters"])
            first = torch.from_numpy(next(stream))
            if int(opt.get("batch_normalize", 0)):
                gamma, mean, var = (torch.from_numpy(next(stream)) for _ in range(3))
                w = torch.from_numpy(next(stream))
                y = F.conv2d(current, w, None, stride, pad, 1, int(opt.get("groups", 1)))
                y = (y - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5)
                y = y * gamma[None, :, None, None] + first[None, :, None, None]
            else:
                w = torch.from_numpy(next(stream))
                y = F.conv2d(current, w, first, stride, pad, 1, int(opt.get("groups", 1)))
            current = _darknet_act(y, opt.get("activation", "logistic"))
            assert current.shape[1] == n
        elif s.type == "maxpool":
            size, stride = int(opt.get("size", 1)), int(opt.get("stride", 1))
            padding = int(opt.get("padding", size - 1))
            left = padding // 2
            h = (current.shape[2] + padding - size) // stride + 1
            w = (current.shape[3] + padding - size) // stride + 1
            padded = F.pad(current, (left, padding - left + size, left, padding - left + size),
                           value=-math.inf)
            current = torch.stack([torch.stack([
                padded[:, :, i * stride:i * stride + size,
                       j * stride:j * stride + size].amax((2, 3))
                for j in range(w)], -1) for i in range(h)], -2)
        elif s.type == "upsample":  # upsample_cpu: out[y][x] = scale · in[y / stride][x / stride]
            stride = int(opt.get("stride", 2))
            scale = float(opt.get("scale", 1))
            current = scale * current.repeat_interleave(stride, 2).repeat_interleave(stride, 3)
        elif s.type == "avgpool":
            current = current.mean(dim=(2, 3), keepdim=True)
        elif s.type == "connected":
            b = torch.from_numpy(next(stream))
            w = torch.from_numpy(next(stream))
            current = _darknet_act(F.linear(current.flatten(1), w, b),
                                   opt.get("activation", "logistic"))
        elif s.type == "softmax":
            current = torch.softmax(current, dim=1)
        elif s.type == "shortcut":
            frm = int(opt["from"])
            current = _darknet_act(_shortcut(current, outputs[s.index + frm if frm < 0 else frm]),
                                   opt.get("activation", "linear"))
        elif s.type == "crop":  # forward_crop_layer at inference: the centre, scaled 2x - 1
            height, width = int(opt["crop_height"]), int(opt["crop_width"])
            top, left = (current.shape[2] - height) // 2, (current.shape[3] - width) // 2
            current = current[:, :, top:top + height, left:left + width]
            if not int(opt.get("noadjust", 0)):
                current = current * 2 - 1
        elif s.type == "route":
            picks = [int(v) for v in opt["layers"].split(",")]
            current = torch.cat([outputs[s.index + i if i < 0 else i] for i in picks], dim=1)
        outputs.append(current)
        if shapes is not None:
            shapes[s.index] = tuple(current.shape[1:])
    return current


def _shortcut(out: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """shortcut_cpu (src/blas.c): out[k, j·sample, i·sample] += add[k, j·stride, i·stride] for
    k, j, i below the smaller channels, height and width; stride = w_add / w_out and
    sample = w_out / w_add, each at least 1."""
    (_, c2, h2, w2), (_, c1, h1, w1) = out.shape, add.shape
    stride, sample = max(1, w1 // w2), max(1, w2 // w1)
    rows, cols = torch.arange(min(h1, h2))[:, None], torch.arange(min(w1, w2))[None, :]
    out = out.clone()
    k = min(c1, c2)
    out[:, :k, rows * sample, cols * sample] += add[:, :k, rows * stride, cols * stride]
    return out


def _darknet_act(x: torch.Tensor, name: str) -> torch.Tensor:
    return {"leaky": lambda t: F.leaky_relu(t, 0.1), "linear": lambda t: t,
            "relu": F.relu, "logistic": torch.sigmoid, "mish": F.mish}[name](x)
