"""Caffe front end: a `deploy.prototxt` (new `layer {}` or V1 `layers {}` syntax) → IR.

Blobs are wired by name; an in-place layer (`top` equal to `bottom`) rebinds its blob,
`Split` only aliases it. Shapes are followed with Caffe's own rules as the layers are
read, so that pools get `ceil=true` exactly where Caffe's rounding up changes the size
and InnerProduct gets the `flatten` that Caffe leaves implicit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics, did_you_mean
from archc.importers import common, prototxt
from archc.importers.compact import compact as compact_spec
from archc.importers.graph import Graph, Node, nest
from archc.importers.prototxt import Field, FieldError, Ident, Message

# The V1 `layers {}` syntax names types by enum constant.
V1_TYPES = {
    "CONVOLUTION": "Convolution", "POOLING": "Pooling", "LRN": "LRN", "RELU": "ReLU",
    "SIGMOID": "Sigmoid", "TANH": "TanH", "INNER_PRODUCT": "InnerProduct",
    "DROPOUT": "Dropout", "SOFTMAX": "Softmax", "CONCAT": "Concat", "ELTWISE": "Eltwise",
    "SPLIT": "Split", "FLATTEN": "Flatten", "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "ACCURACY": "Accuracy", "DATA": "Data", "IMAGE_DATA": "ImageData", "HDF5_DATA": "HDF5Data",
}

# Training-time layers: losses and metrics are left out (a warning); data layers hold no
# shape, so a train_val file needs its input declared.
LEFT_OUT = {"SoftmaxWithLoss", "Accuracy", "EuclideanLoss", "SigmoidCrossEntropyLoss",
            "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss", "Silence"}
DATA_LAYERS = {"Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData",
               "AnnotatedData"}

Shape = tuple[int, ...]


@dataclass
class Layer:
    """One `layer {}` (or V1 `layers {}`) entry."""

    name: str
    type: str
    bottoms: list[Field]
    tops: list[str]
    message: Message
    span: ir.Span
    type_span: ir.Span

    def param(self, name: str) -> Message:
        """The layer's `NAME_param { ... }` message (empty when absent)."""
        return self.message.message(name)


def load(path: str, diags: Diagnostics, *, compact: bool = True) -> ir.SpecFile | None:
    """The IR of a Caffe prototxt; problems go to `diags` (located in the file)."""
    text = common.read_text(path, diags)
    if text is None:
        return None
    root = prototxt.parse(text, path, diags)
    if root is None:
        return None
    spec = _Importer(path, diags).spec(root)
    return compact_spec(spec) if spec is not None and compact else spec


def layers_of(root: Message) -> list[Layer]:
    """The layers of a NetParameter, in file order, V1 types translated."""
    out = []
    for f in root.fields:
        if f.name not in ("layer", "layers") or not isinstance(f.value, Message):
            continue
        m = f.value
        type_field = m.first("type")
        kind = str(m.get("type", ""))
        if f.name == "layers":
            kind = V1_TYPES.get(kind, kind)
        out.append(
            Layer(
                name=str(m.get("name", f"layer{len(out)}")),
                type=kind,
                bottoms=m.all("bottom"),
                tops=[str(t) for t in m.values("top")],
                message=m,
                span=f.name_span.to(f.name_span),
                type_span=type_field.value_span if type_field else f.name_span,
            )
        )
    return out


class _Importer:
    """Reads the layers in order, building the graph and following Caffe's shapes."""

    def __init__(self, path: str, diags: Diagnostics):
        self.path, self.diags = path, diags
        self.graph = Graph()
        self.blobs: dict[str, int] = {}  # blob name → node producing its current value
        self.shapes: dict[int, Shape] = {}  # node id → Caffe's output shape (C, H, W) or (F,)
        self.labels: set[str] = set()
        self.failed = False

    # ------------------------------------------------------------------ driver

    def spec(self, root: Message) -> ir.SpecFile | None:
        try:
            layers = layers_of(root)
            dims = self._input(root, layers)
        except FieldError as exc:
            self.error(exc.span, exc.message, exc.hint or "dims are whole numbers: `dim: 224`")
            return None
        if dims is None:
            return None
        for layer in layers:
            if layer.type in LEFT_OUT:
                self.diags.warning("W401", layer.type_span, f"`{layer.type}` `{layer.name}` is "
                                   "for training; it is left out of the network")
            elif layer.type not in ("Input", *DATA_LAYERS):
                self._layer(layer)
        if self.failed:
            return None
        body = nest(self.graph, self.diags)
        if body is None:
            return None
        name = common.network_name(root.get("name"), self.path)
        return common.spec_file(self.path, name, dims, body, self.graph.nodes[0].span)

    def error(self, span: ir.Span, message: str, hint: str | None = None,
              code: str = "E204") -> None:
        """Record an error located in the prototxt."""
        self.failed = True
        self.diags.error(code, span, message, hint)

    # ------------------------------------------------------------------ input

    def _input(self, root: Message, layers: list[Layer]) -> tuple[int, int, int] | None:
        """The input blob and its C×H×W: `input` + `input_shape`/`input_dim`, or an Input layer."""
        found = [(lay.tops[0] if lay.tops else "data", self._input_layer_dims(lay), lay.span)
                 for lay in layers if lay.type == "Input"]
        if root.first("input") is not None:
            field = root.first("input")
            dims = root.message("input_shape").ints("dim")
            dims = dims or root.ints("input_dim")
            found.insert(0, (str(field.value), dims, field.span))
        data = next((lay for lay in layers if lay.type in DATA_LAYERS), None)
        if not found and data is not None:
            self.error(data.type_span, f"`{data.type}` reads training data and says nothing "
                       "of the input's shape", "import the deploy.prototxt, or declare the input: "
                       '`input: "data"` and `input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }`')
            return None
        if not found:
            self.error(ir.Span(file=self.path), "the prototxt declares no input",
                       "add `input: \"data\"` and `input_shape { dim: 1 dim: 3 dim: 224 "
                       "dim: 224 }`, or a layer of type \"Input\"")
            return None
        blob, dims, span = found[0]
        if any(d < 1 for d in dims):
            raise FieldError(span, f"the input's dims must be positive, got {dims}",
                             "give `input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }`")
        if len(found) > 1:
            self.error(found[1][2], "archc networks have one input; this is a second one")
        if len(dims) != 4:
            self.error(span, f"the input needs 4 dims (N, C, H, W), got {len(dims)}",
                       "give `input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }`")
            return None
        node = self.graph.add(blob, [], span)
        self.blobs[blob] = node.id
        self.shapes[node.id] = tuple(dims[1:])
        return tuple(dims[1:])

    def _input_layer_dims(self, layer: Layer) -> list[int]:
        return layer.param("input_param").message("shape").ints("dim")

    # ------------------------------------------------------------------ layers

    def _layer(self, layer: Layer) -> None:
        handler = getattr(self, "_" + layer.type.lower(), None)
        if layer.type not in HANDLED or handler is None:  # Caffe's type names are exact
            self.error(
                layer.type_span,
                f"unknown Caffe layer type `{layer.type}`",
                did_you_mean(layer.type, list(HANDLED))
                or "archc imports: " + ", ".join(sorted(HANDLED)),
                code="E101",
            )
        else:
            inputs = [self._bottom(b) for b in layer.bottoms]
            if all(i is not None for i in inputs):
                try:
                    handler(layer, inputs)
                except FieldError as exc:
                    self.error(exc.span, exc.message,
                               exc.hint or "see the layer's parameters in caffe.proto")
        source = self.blobs.get(str(layer.bottoms[0].value)) if layer.bottoms else None
        for top in layer.tops if source is not None else ():
            self.blobs.setdefault(top, source)  # a failed layer passes through: no cascade

    def _bottom(self, field: Field) -> int | None:
        name = str(field.value)
        if name in self.blobs:
            return self.blobs[name]
        self.error(
            field.value_span,
            f"bottom `{name}` is not the top of any earlier layer",
            did_you_mean(name, list(self.blobs))
            or "a bottom names the top of a layer above it (or the input)",
            code="E101",
        )
        return None

    def _one(self, layer: Layer, inputs: list[int]) -> int | None:
        if len(inputs) != 1:
            self.error(layer.span, f"{layer.type} `{layer.name}` takes one bottom, got "
                       f"{len(inputs)}")
            return None
        return inputs[0]

    def _emit(self, layer: Layer, inputs: list[int], items: list[ir.Item], shape: Shape,
              merge: str | None = None) -> Node:
        node = self.graph.add(layer.name, inputs, layer.span, items=items, merge=merge)
        self.shapes[node.id] = shape
        for top in layer.tops:
            self.blobs[top] = node.id
        return node

    def _label(self, layer: Layer) -> str:
        return common.identifier(layer.name, self.labels)

    def _image_input(self, layer: Layer, inputs: list[int]) -> Shape | None:
        """The C×H×W of the layer's one bottom; None (with an error) for anything else."""
        source = self._one(layer, inputs)
        if source is None:
            return None
        shape = self.shapes[source]
        if len(shape) != 3:
            self.error(layer.span, f"{layer.type} `{layer.name}` needs an image (C×H×W), its "
                       f"bottom is {shape[0]} flat features")
            return None
        return shape

    def _square_or_supported(self, layer: Layer, kind: str, *pairs) -> bool:
        """False (with an error) for an h×w window the registry cannot take yet."""
        from archc.layers import REGISTRY

        square = all(a == b for a, b in pairs)
        if square or REGISTRY[kind].param("kernel").type != "int":
            return True
        self.error(layer.span, f"{layer.type} `{layer.name}` has a non-square window "
                   f"({'×'.join(map(str, pairs[0]))}), which archc's `{kind}` cannot take yet",
                   "archc's windows are square in this version")
        return False

    # ------------------------------------------------------------------ the layer types

    def _convolution(self, layer: Layer, inputs: list[int]) -> None:
        shape = self._image_input(layer, inputs)
        if shape is None:
            return
        p = layer.param("convolution_param")
        kernel, stride = _window(p, "kernel", None, 1), _window(p, "stride", 1, 1)
        pad = _window(p, "pad", 0, 0)
        dilation = _at_least(p, "dilation", (p.ints("dilation") or [1])[0], 1)
        if kernel is None:
            self.error(layer.span, f"Convolution `{layer.name}` has no kernel_size")
            return
        if not self._square_or_supported(layer, "conv", kernel, stride, pad):
            return
        out = _at_least(p, "num_output", p.int("num_output", 0), 1)
        group = _at_least(p, "group", p.int("group", 1), 1)
        if shape[0] % group or out % group:
            raise FieldError(p.single("group").value_span, f"group {group} does not divide "
                             f"the {shape[0]} input and {out} output channels",
                             "Caffe needs both channel counts to be multiples of `group`")
        same = all(k % 2 and q == dilation * (k - 1) // 2 for k, q in zip(kernel, pad))
        conv = common.layer(
            "conv", layer.span, self._label(layer),
            kernel=_pair_arg(kernel), out=out, stride=_pair_arg(stride, 1),
            padding=None if same else _pair_arg(pad),
            dilation=dilation if dilation != 1 else None,
            groups=group if group != 1 else None,
            bias=None if _flag(p.get("bias_term", True)) else False,
        )
        size = [
            (n + 2 * q - dilation * (k - 1) - 1) // s + 1
            for n, k, s, q in zip(shape[1:], kernel, stride, pad)
        ]
        self._emit(layer, inputs, [conv], (out, *size))

    def _pooling(self, layer: Layer, inputs: list[int]) -> None:
        shape = self._image_input(layer, inputs)
        if shape is None:
            return
        p = layer.param("pooling_param")
        method = str(p.get("pool", "MAX"))
        if method not in ("MAX", "AVE"):
            self.error(p.first("pool").value_span, f"Caffe's {method} pooling has no archc form",
                       "archc pools are MAX or AVE")
            return
        if _flag(p.get("global_pooling", False)):
            kind = "globalavgpool" if method == "AVE" else "adaptivemaxpool"
            item = common.layer(kind, layer.span, size=None)
            self._emit(layer, inputs, [item], (shape[0], 1, 1))
            return
        kernel, stride = _window(p, "kernel", None, 1), _window(p, "stride", 1, 1)
        pad = _window(p, "pad", 0, 0)
        if kernel is None:
            self.error(layer.span, f"Pooling `{layer.name}` has no kernel_size",
                       "give `kernel_size`, or `global_pooling: true`")
            return
        if not self._square_or_supported(layer, "maxpool", kernel, stride, pad):
            return
        if any(q >= k for q, k in zip(pad, kernel)):
            raise FieldError(_where(p, "pad"), f"Pooling `{layer.name}` pads by as much as its "
                             "window: a window could hold padding only",
                             "Caffe needs pad < kernel_size")
        size, ceil = [], False
        for n, k, s, q in zip(shape[1:], kernel, stride, pad):
            rounded = caffe_pool_out(n, k, s, q)
            if rounded != (n + 2 * q - k) // s + 1:
                ceil = True
            if q == 0 and (rounded - 1) * s >= n:
                self.error(layer.span, f"Pooling `{layer.name}`: Caffe keeps a last window "
                           "that starts past the input here, PyTorch and archc do not",
                           "pad the pool or change the input size")
                return
            size.append(rounded)
        kind = "maxpool" if method == "MAX" else "avgpool"
        pool = common.layer(kind, layer.span, kernel=_pair_arg(kernel),
                            stride=None if stride == kernel else _pair_arg(stride, -1),
                            padding=_pair_arg(pad, 0), ceil=True if ceil else None)
        self._emit(layer, inputs, [pool], (shape[0], *size))

    def _lrn(self, layer: Layer, inputs: list[int]) -> None:
        shape = self._image_input(layer, inputs)
        if shape is None:
            return
        p = layer.param("lrn_param")
        if str(p.get("norm_region", "ACROSS_CHANNELS")) != "ACROSS_CHANNELS":
            self.error(p.first("norm_region").value_span,
                       "LRN within channels has no archc form", "archc's LRN runs across channels")
            return
        size = _at_least(p, "local_size", p.int("local_size", 5), 1)
        if size % 2 == 0:
            self.error(layer.span, f"LRN `{layer.name}`: an even local_size centres the window "
                       "differently in Caffe and PyTorch", "use an odd local_size")
            return
        # Caffe and PyTorch both scale by alpha / local_size: alpha carries over unchanged.
        lrn = common.layer("lrn", layer.span, size=size, alpha=p.float("alpha", 1.0),
                           beta=p.float("beta", 0.75), k=p.float("k", 1.0))
        self._emit(layer, inputs, [lrn], shape)

    def _relu(self, layer: Layer, inputs: list[int]) -> None:
        slope = layer.param("relu_param").float("negative_slope", 0.0)
        item = (common.layer("leakyrelu", layer.span, slope=slope) if slope
                else common.layer("relu", layer.span))
        self._same(layer, inputs, item)

    def _elu(self, layer: Layer, inputs: list[int]) -> None:
        alpha = layer.param("elu_param").float("alpha", 1.0)
        self._same(layer, inputs, common.layer("elu", layer.span, alpha=alpha))

    def _prelu(self, layer: Layer, inputs: list[int]) -> None:
        """A learnt slope per channel (or one, `channel_shared`); its blob is the weight."""
        shared = _flag(layer.param("prelu_param").get("channel_shared", False))
        self._same(layer, inputs, common.layer("prelu", layer.span, self._label(layer),
                                               per_channel=not shared))

    def _flatten(self, layer: Layer, inputs: list[int]) -> None:
        source = self._one(layer, inputs)
        if source is not None:
            shape = self.shapes[source]
            self._emit(layer, inputs, [common.layer("flatten", layer.span)],
                       (math.prod(shape),))

    def _sigmoid(self, layer: Layer, inputs: list[int]) -> None:
        self._same(layer, inputs, common.layer("sigmoid", layer.span))

    def _tanh(self, layer: Layer, inputs: list[int]) -> None:
        self._same(layer, inputs, common.layer("tanh", layer.span))

    def _dropout(self, layer: Layer, inputs: list[int]) -> None:
        p = layer.param("dropout_param")
        ratio = p.float("dropout_ratio", 0.5)
        if not 0 <= ratio < 1:
            raise FieldError(_where(p, "dropout_ratio"), f"dropout_ratio must be from 0 to "
                             f"below 1, got {ratio}", "the share of values dropped: 0.5")
        self._same(layer, inputs, common.layer("dropout", layer.span, p=ratio))

    def _softmax(self, layer: Layer, inputs: list[int]) -> None:
        axis = layer.param("softmax_param").int("axis", 1)
        if axis != 1:
            self.error(layer.span, f"Softmax over axis {axis} has no archc form",
                       "archc's softmax runs over the channels (axis 1)")
            return
        self._same(layer, inputs, common.layer("softmax", layer.span))

    def _same(self, layer: Layer, inputs: list[int], item: ir.Item) -> None:
        source = self._one(layer, inputs)
        if source is not None:
            self._emit(layer, inputs, [item], self.shapes[source])

    def _innerproduct(self, layer: Layer, inputs: list[int]) -> None:
        source = self._one(layer, inputs)
        if source is None:
            return
        p = layer.param("inner_product_param")
        out = _at_least(p, "num_output", p.int("num_output", 0), 1)
        items: list[ir.Item] = []
        if len(self.shapes[source]) == 3:  # Caffe flattens C×H×W implicitly (axis 1)
            items.append(common.layer("flatten", layer.span))
        items.append(common.layer("fc", layer.span, self._label(layer), out=out,
                                  bias=None if _flag(p.get("bias_term", True)) else False))
        self._emit(layer, inputs, items, (out,))

    def _batchnorm(self, layer: Layer, inputs: list[int]) -> None:
        source = self._one(layer, inputs)
        if source is None:
            return
        eps = layer.param("batch_norm_param").float("eps", 1e-5)
        bn = common.layer("bn", layer.span, self._label(layer),
                          eps=eps if eps != 1e-5 else None, affine=False)
        self._emit(layer, inputs, [bn], self.shapes[source])

    def _scale(self, layer: Layer, inputs: list[int]) -> None:
        """Caffe's BatchNorm has no scale and shift; the Scale after it supplies them."""
        source = self._one(layer, inputs)
        if source is None:
            return
        node = self.graph.nodes[source]
        bn = node.items[-1] if node.items else None
        p = layer.param("scale_param")
        if not (isinstance(bn, ir.Layer) and bn.callee == "bn") or not _flag(
            p.get("bias_term", False)
        ):
            self.error(layer.span, f"Scale `{layer.name}` must follow a BatchNorm and have "
                       "`bias_term: true`", "archc folds BatchNorm + Scale into one `bn`")
            return
        args = [a for a in bn.args if a.name != "affine"]
        node.items[-1] = bn.model_copy(update={"args": args})
        for top in layer.tops:
            self.blobs[top] = node.id

    def _concat(self, layer: Layer, inputs: list[int]) -> None:
        axis = layer.param("concat_param").int("axis", 1)
        if axis != 1:
            self.error(layer.span, f"Concat along axis {axis} has no archc form",
                       "archc concatenates channels (axis 1)")
            return
        shapes = [self.shapes[i] for i in inputs]
        channels = sum(s[0] for s in shapes)
        self._merge(layer, inputs, "concat", (channels, *shapes[0][1:]))

    def _eltwise(self, layer: Layer, inputs: list[int]) -> None:
        p = layer.param("eltwise_param")
        operation = str(p.get("operation", "SUM"))
        coeffs = [float(c) for c in p.values("coeff") if isinstance(c, (int, float))]
        if any(c != 1 for c in coeffs):
            self.error(p.first("coeff").value_span, "Eltwise coefficients other than 1 have "
                       "no archc form", "archc's `add` sums its branches unweighted")
            return
        mode = {"SUM": "add", "PROD": "mul", "MAX": "max"}.get(operation)
        if mode is None or mode not in _merge_modes():
            self.error(p.first("operation").value_span if p.first("operation") else layer.span,
                       f"Eltwise {operation} has no archc merge yet",
                       "archc merges branches by " + " or ".join(sorted(_merge_modes())))
            return
        self._merge(layer, inputs, mode, self.shapes[inputs[0]])

    def _merge(self, layer: Layer, inputs: list[int], mode: str, shape: Shape) -> None:
        if len(inputs) == 1:  # a one-bottom merge passes its input through
            self._emit(layer, inputs, [], shape)
        else:
            self._emit(layer, inputs, [], shape, merge=mode)

    def _split(self, layer: Layer, inputs: list[int]) -> None:
        source = self._one(layer, inputs)
        if source is not None:
            for top in layer.tops:
                self.blobs[top] = source


HANDLED = {"Input", "Convolution", "Pooling", "LRN", "ReLU", "Sigmoid", "TanH", "Dropout",
           "Softmax", "InnerProduct", "BatchNorm", "Scale", "Concat", "Eltwise", "Split",
           "ELU", "PReLU", "Flatten"}


def _merge_modes() -> set[str]:
    """The merge modes the IR accepts (`mul` arrives with the zoo's squeeze-excitation)."""
    return set(ir.Merge.model_fields["mode"].annotation.__args__)


def caffe_pool_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's pooled size: rounded up, then the last window must start inside the padding.

    pooled = ceil((size + 2·pad − kernel) / stride) + 1, minus one when pad > 0 and the
    last window would start at or past size + pad (pooling_layer.cpp, Reshape).
    """
    pooled = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def _window(p: Message, name: str, default: int | None,
            least: int) -> tuple[int, int] | None:
    """`kernel_size` / `stride` / `pad` as (h, w): one value, two values, or `_h` and `_w`;
    `FieldError` at a value below `least` (a stride of 0, a negative pad)."""
    h, w = p.int(f"{name}_h"), p.int(f"{name}_w")
    if h is not None or w is not None:
        pair = (h if h is not None else w), (w if w is not None else h)
        for key, value in ((f"{name}_h", h), (f"{name}_w", w)):
            if value is not None:
                _at_least(p, key, value, least)
        return pair
    key = "kernel_size" if name == "kernel" else name
    values = p.ints(key)
    for value in values:
        _at_least(p, key, value, least)
    if not values:
        return None if default is None else (default, default)
    return values[0], values[-1]


def _at_least(p: Message, name: str, value: int, least: int) -> int:
    """`value` of field `name`, or `FieldError` at the field when it is below `least`."""
    if value < least:
        what = "positive" if least == 1 else f"at least {least}"
        raise FieldError(_where(p, name), f"`{name}` must be {what}, got {value}",
                         "Caffe refuses this value too (see caffe.proto)")
    return value


def _where(p: Message, name: str) -> ir.Span:
    """Where field `name`'s value is written (the message when it is absent)."""
    found = p.first(name)
    return found.value_span if found is not None else p.span


def _pair_arg(pair: tuple[int, int], default: int | None = None):
    """One number when height and width agree (None when it is the default), else (h, w)."""
    if pair[0] == pair[1]:
        return None if pair[0] == default else pair[0]
    return pair


def _flag(value) -> bool:
    if isinstance(value, Ident):
        return value.lower() == "true"
    return bool(value)
