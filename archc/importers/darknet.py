"""Darknet front end: a `.cfg` file (`[net]`, then one `[section]` per layer) → IR.

Layers are numbered from 0 after `[net]`; `[route]` and `[shortcut]` refer to them by
index, negative indices counting back from the layer itself. Shapes follow darknet's
rules (parser.c, the make_*_layer functions) as the sections are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics, did_you_mean
from archc.importers import common
from archc.importers.compact import compact as compact_spec
from archc.importers.graph import Graph, nest

Shape = tuple[int, ...]

ACTIVATIONS = {"leaky": ("leakyrelu", {"slope": 0.1}), "relu": ("relu", {}),
               "logistic": ("sigmoid", {}), "mish": ("mish", {}), "tanh": ("tanh", {}),
               "swish": ("silu", {}), "relu6": ("relu6", {}), "elu": ("elu", {}),
               "linear": None}


@dataclass
class Option:
    """One `key=value` line of a section."""

    key: str
    value: str
    span: ir.Span  # the whole line
    value_span: ir.Span


@dataclass
class Section:
    """One `[type]` and its options; `index` is the layer number (-1 for [net])."""

    type: str
    span: ir.Span
    options: dict[str, Option] = field(default_factory=dict)
    index: int = -1

    def text(self, key: str, default: str | None = None) -> str | None:
        """The raw value of `key`, or `default`."""
        option = self.options.get(key)
        return default if option is None else option.value

    def span_of(self, key: str) -> ir.Span:
        """Where `key`'s value is written (the section header when it is absent)."""
        option = self.options.get(key)
        return self.span if option is None else option.value_span


class CfgError(Exception):
    """A value that does not read as the number its key needs; a located diagnostic."""

    def __init__(self, span: ir.Span, message: str, hint: str | None = None):
        super().__init__(message)
        self.span, self.message, self.hint = span, message, hint


def parse_cfg(text: str, path: str, diags: Diagnostics) -> list[Section] | None:
    """The sections of a cfg file, in order; a malformed line is a located E001."""
    sections: list[Section] = []
    ok = True
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#")[0].split(";")[0].rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        col = len(line) - len(line.lstrip()) + 1
        span = _span(path, number, col, col + len(stripped))
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3:
                diags.error("E001", span, f"syntax error: malformed section header `{stripped}`",
                            "a section header is a name in brackets, e.g. `[convolutional]`")
                ok = False
                continue
            sections.append(Section(stripped[1:-1].strip().lower(), span))
        elif "=" in stripped and sections:
            key, _, value = stripped.partition("=")
            value_col = col + stripped.index("=") + 1 + (len(value) - len(value.lstrip()))
            option = Option(key.strip(), value.strip(), span,
                            _span(path, number, value_col, value_col + max(len(value.strip()), 1)))
            _add_option(sections[-1], option, diags)
        else:
            hint = ("a cfg line is `key=value` inside a `[section]`" if sections
                    else "a cfg file starts with a `[net]` section")
            diags.error("E001", span, f"syntax error: unexpected `{stripped}`", hint)
            ok = False
    return sections if ok else None


def _add_option(section: Section, option: Option, diags: Diagnostics) -> None:
    """Keep the FIRST value of a key, as darknet does (option_find walks the section's list
    from the top); a later one is ignored, with a warning where it is written."""
    if option.key in section.options:
        first = section.options[option.key]
        diags.warning("W401", option.span, f"`{option.key}` is given twice in [{section.type}]; "
                      f"darknet uses the first, `{first.value}` (line {first.span.line}), and "
                      "ignores this one", "remove one of them")
        return
    section.options[option.key] = option


def _span(path: str, line: int, col: int, end: int) -> ir.Span:
    return ir.Span.model_construct(file=path, line=line, column=col, end_line=line,
                                   end_column=end)


def load(path: str, diags: Diagnostics, *, compact: bool = True) -> ir.SpecFile | None:
    """The IR of a Darknet cfg; problems go to `diags` (located in the file)."""
    text = common.read_text(path, diags)
    if text is None:
        return None
    sections = parse_cfg(text, path, diags)
    if sections is None:
        return None
    spec = _Importer(path, diags).spec(sections)
    return compact_spec(spec) if spec is not None and compact else spec


def layer_sections(sections: list[Section]) -> list[Section]:
    """The layer sections (everything but `[net]`), numbered as darknet numbers them."""
    layers = [s for s in sections if s.type not in ("net", "network")]
    for i, s in enumerate(layers):
        s.index = i
    return layers


class _Importer:
    """Reads the sections in order, building the graph and following darknet's shapes."""

    def __init__(self, path: str, diags: Diagnostics):
        self.path, self.diags = path, diags
        self.graph = Graph()
        self.outputs: list[int] = []  # layer index → node id of its output
        self.shapes: dict[int, Shape] = {}
        self.labels: set[str] = set()
        self.failed = False

    def spec(self, sections: list[Section]) -> ir.SpecFile | None:
        if not sections or sections[0].type not in ("net", "network"):
            span = sections[0].span if sections else ir.Span(file=self.path)
            self.diags.error("E001", span, "a Darknet cfg starts with a `[net]` section",
                             "add `[net]` with width=, height= and channels=")
            return None
        net = sections[0]
        try:
            dims = (self.positive(net, "channels", 3), self.positive(net, "height", 416),
                    self.positive(net, "width", 416))
            node = self.graph.add("input", [], net.span)
            self.shapes[node.id] = dims
            for section in layer_sections(sections):
                self.section(section)
        except CfgError as exc:
            self.diags.error("E204", exc.span, exc.message, exc.hint)
            return None
        if self.failed:
            return None
        body = nest(self.graph, self.diags)
        if body is None:
            return None
        return common.spec_file(self.path, common.network_name(None, self.path), dims, body,
                                net.span)

    # ------------------------------------------------------------------ values

    def int(self, s: Section, key: str, default: int) -> int:
        """Option `key` as a whole number, `default` when absent."""
        return self._number(s, key, default, int, "a whole number")

    def positive(self, s: Section, key: str, default: int, least: int = 1) -> int:
        """Option `key` as a whole number of at least `least` (a stride of 0, a negative
        padding or filters=0 is a located error, as darknet's own checks would be)."""
        value = self.int(s, key, default)
        if value < least:
            what = "positive" if least == 1 else f"at least {least}"
            raise CfgError(s.span_of(key), f"[{s.type}] `{key}` must be {what}, got {value}")
        return value

    def float(self, s: Section, key: str, default: float) -> float:
        """Option `key` as a number, `default` when absent."""
        return self._number(s, key, default, float, "a number")

    def _number(self, s: Section, key: str, default, cast, what: str):
        text = s.text(key)
        if text is None:
            return default
        try:
            value = cast(text)
        except ValueError:
            raise CfgError(s.span_of(key), f"`{key}` must be {what}, got `{text}`") from None
        if cast is int and not -2**31 <= value < 2**31:  # darknet reads a C int
            raise CfgError(s.span_of(key), f"`{key}` is out of range: {text}",
                           "darknet's whole numbers are 32-bit")
        if cast is float and value != value:
            raise CfgError(s.span_of(key), f"`{key}` must be {what}, got `{text}`")
        return value

    def error(self, span: ir.Span, message: str, hint: str | None = None,
              code: str = "E204") -> None:
        self.failed = True
        self.diags.error(code, span, message, hint)

    # ------------------------------------------------------------------ sections

    def section(self, s: Section) -> None:
        handler = getattr(self, "_" + s.type, None)
        if handler is None or s.type not in HANDLED:
            self.error(s.span, f"unknown Darknet layer type `[{s.type}]`",
                       did_you_mean(s.type, list(HANDLED))
                       or "archc imports: " + ", ".join(f"[{t}]" for t in sorted(HANDLED)),
                       code="E101")
        else:
            handler(s)
        while len(self.outputs) <= s.index:  # a layer that failed still takes its number
            self.outputs.append(self.previous(s))

    def previous(self, s: Section) -> int:
        """The node that feeds layer `s` when it names no input: the layer before it."""
        return self.outputs[-1] if self.outputs else 0

    def emit(self, s: Section, items: list[ir.Item], shape: Shape,
             inputs: list[int] | None = None, merge: str | None = None) -> None:
        node = self.graph.add(f"{s.type} {s.index}", inputs or [self.previous(s)], s.span,
                              items=items, merge=merge)
        self.shapes[node.id] = shape
        self.outputs.append(node.id)

    def activation(self, s: Section, default: str = "linear") -> list[ir.Item]:
        name = s.text("activation", default)
        if name not in ACTIVATIONS:
            self.error(s.span_of("activation"), f"activation `{name}` has no archc form",
                       "archc imports: " + ", ".join(sorted(ACTIVATIONS)))
            return []
        found = ACTIVATIONS[name]
        return [] if found is None else [common.layer(found[0], s.span, **found[1])]

    def shape_in(self, s: Section) -> Shape:
        return self.shapes[self.previous(s)]

    def image_in(self, s: Section) -> Shape:
        shape = self.shape_in(s)
        if len(shape) != 3:
            raise CfgError(s.span, f"[{s.type}] needs an image (C×H×W), its input is "
                           f"{shape[0]} flat features")
        return shape

    def reference(self, s: Section, key: str, text: str) -> int:
        """The node of layer `text` (absolute, or negative: relative to `s`)."""
        try:
            index = int(text)
        except ValueError:
            raise CfgError(s.span_of(key), f"`{key}` must list layer numbers, got `{text}`")
        target = s.index + index if index < 0 else index
        if not 0 <= target < s.index:
            raise CfgError(
                s.span_of(key),
                f"[{s.type}] {key}={text} names layer {target}, which does not come before "
                f"this layer ({s.index})",
                f"layers are numbered from 0 after [net]; this is layer {s.index}, so use a "
                f"number from -{s.index} to -1 or from 0 to {s.index - 1}",
            )
        return self.outputs[target]

    # ------------------------------------------------------------------ the layer types

    def _convolutional(self, s: Section) -> None:
        c, h, w = self.image_in(s)
        filters, size = self.positive(s, "filters", 1), self.positive(s, "size", 1)
        stride, groups = self.positive(s, "stride", 1), self.positive(s, "groups", 1)
        pad = self.positive(s, "padding", size // 2 if self.int(s, "pad", 0) else 0, least=0)
        if c % groups or filters % groups:
            raise CfgError(s.span_of("groups"), f"[convolutional] groups={groups} does not "
                           f"divide the {c} input and {filters} output channels")
        bn = bool(self.int(s, "batch_normalize", 0))
        same = size % 2 == 1 and pad == size // 2
        items: list[ir.Item] = [common.layer(
            "conv", s.span, kernel=size, out=filters, stride=stride,
            padding=None if same else pad, groups=groups, bias=not bn)]
        if bn:
            items.append(common.layer("bn", s.span))
        items += self.activation(s, "logistic")
        out = [(n + 2 * pad - size) // stride + 1 for n in (h, w)]
        self.emit(s, items, (filters, *out))

    def _maxpool(self, s: Section) -> None:
        c, h, w = self.image_in(s)
        size = self.positive(s, "size", 1)
        stride = self.positive(s, "stride", 1)
        padding = self.positive(s, "padding", size - 1, least=0)  # total; left = padding/2
        out = [(n + padding - size) // stride + 1 for n in (h, w)]
        left = padding // 2
        right = padding - left  # darknet's windows see -inf past the input, as archc's do
        if max(left, right) >= size:
            self.error(s.span_of("padding"), f"[maxpool] padding={padding} puts {right} on the "
                       f"right of a {size}×{size} window: a window could hold padding only",
                       f"use a padding from 0 to {2 * (size - 1)}")
            self.emit(s, [], (c, *out))  # darknet's shape, so later layers check on
            return
        stride_arg = None if stride == size else stride
        floor_out = [(n + 2 * left - size) // stride + 1 for n in (h, w)]
        ceil_out = [_ceil_pool(n, size, stride, left) for n in (h, w)]
        if out in (floor_out, ceil_out):  # even padding (rounded up where darknet's is)
            pool = common.layer("maxpool", s.span, kernel=size, stride=stride_arg,
                                padding=left, ceil=True if floor_out != out else None)
        else:  # yolov3-tiny's 2×2 stride-1 pool: one more row and column after than before
            pool = common.layer("maxpool", s.span, kernel=size, stride=stride_arg,
                                padding=(left, right, left, right))
        self.emit(s, [pool], (c, *out))

    def _avgpool(self, s: Section) -> None:
        c, _, _ = self.image_in(s)
        self.emit(s, [common.layer("globalavgpool", s.span)], (c, 1, 1))

    def _connected(self, s: Section) -> None:
        shape = self.shape_in(s)
        out = self.positive(s, "output", 1)
        items: list[ir.Item] = [common.layer("flatten", s.span)] if len(shape) == 3 else []
        items.append(common.layer("fc", s.span, out=out))
        if self.int(s, "batch_normalize", 0):
            self.error(s.span_of("batch_normalize"),
                       "[connected] with batch_normalize is not imported yet")
        items += self.activation(s, "logistic")
        self.emit(s, items, (out,))

    def _dropout(self, s: Section) -> None:
        p = self.float(s, "probability", 0.5)
        if not 0 <= p < 1:
            raise CfgError(s.span_of("probability"), f"[dropout] probability must be from 0 "
                           f"to below 1, got {p}")
        self.emit(s, [common.layer("dropout", s.span, p=p)], self.shape_in(s))

    def _softmax(self, s: Section) -> None:
        if self.int(s, "groups", 1) != 1:
            self.error(s.span_of("groups"), "[softmax] over groups has no archc form")
        self.emit(s, [common.layer("softmax", s.span)], self.shape_in(s))

    def _cost(self, s: Section) -> None:
        """The training loss: nothing at inference; its output is its input."""
        self.outputs.append(self.previous(s))

    def _shortcut(self, s: Section) -> None:
        """The previous layer plus layer `from`; between different shapes darknet adds the
        shared part (shortcut_cpu): archc's `add-into:`, with the previous layer first, as
        it gives the shape."""
        source = self.reference(s, "from", s.text("from", "") or "")
        a, b = self.shape_in(s), self.shapes[source]
        for key in ("alpha", "beta"):  # out = alpha · out + beta · from
            if self.float(s, key, 1.0) != 1.0:
                self.error(s.span_of(key), f"[shortcut] with {key}= (a weight on a term) has "
                           "no archc form", f"leave {key}= out")
        if a == b:
            self.emit(s, self.activation(s), a, inputs=[self.previous(s), source], merge="add")
            return
        if len(a) != 3 or len(b) != 3 or a[1] // b[1] != a[2] // b[2] \
                or b[1] // a[1] != b[2] // a[2]:
            self.error(s.span_of("from"), f"[shortcut] adds {_fmt(b)} to {_fmt(a)}",
                       "darknet adds the shared part of two images whose heights and widths "
                       "relate alike")
            return
        self.emit(s, self.activation(s), a, inputs=[self.previous(s), source], merge="add-into")

    def _crop(self, s: Section) -> None:
        """darknet's [crop] at inference: the centre window, and x · 2 − 1 (forward_crop_layer
        maps [0, 1] pixels to [−1, 1] unless noadjust=1); flips and colour jitter are
        training-time augmentation."""
        c, h, w = self.image_in(s)
        height, width = self.int(s, "crop_height", 1), self.int(s, "crop_width", 1)
        if not (0 < height <= h and 0 < width <= w):
            raise CfgError(s.span, f"[crop] to {height}×{width} does not fit its input "
                           f"{_fmt((c, h, w))}", "crop to at most the input's height and width")
        items = [common.layer("crop", s.span, height=height, width=width)]
        if not self.int(s, "noadjust", 0):
            items.append(common.layer("constant-scale", s.span, factor=2.0, shift=-1.0))
        self.emit(s, items, (c, height, width))

    def _route(self, s: Section) -> None:
        if s.text("groups") not in (None, "1"):
            self.error(s.span_of("groups"), "[route] with groups (a channel slice) is not "
                       "imported yet")
            return
        texts = [t.strip() for t in (s.text("layers", "") or "").split(",") if t.strip()]
        if not texts:
            raise CfgError(s.span, "[route] needs `layers=`", "e.g. `layers=-1, 8`")
        sources = [self.reference(s, "layers", t) for t in texts]
        shapes = [self.shapes[i] for i in sources]
        if len(sources) == 1:  # a route to one layer only rewires
            self.outputs.append(sources[0])
            return
        if any(sh[1:] != shapes[0][1:] for sh in shapes):
            self.error(s.span_of("layers"), "[route] concatenates "
                       + ", ".join(_fmt(sh) for sh in shapes)
                       + ": the heights and widths differ")
            return
        node = self.graph.add(f"route {s.index}", sources, s.span, merge="concat")
        self.shapes[node.id] = (sum(sh[0] for sh in shapes), *shapes[0][1:])
        self.outputs.append(node.id)

    def _upsample(self, s: Section) -> None:
        """Nearest-neighbour upsampling by `stride` (darknet's upsample_cpu)."""
        c, h, w = self.image_in(s)
        stride = self.int(s, "stride", 2)
        if stride < 1:
            self.error(s.span_of("stride"), f"[upsample] stride={stride} downsamples: archc "
                       "imports upsampling by a whole factor only", "use stride=2 or more")
        elif self.float(s, "scale", 1.0) != 1.0:
            self.error(s.span_of("scale"), "[upsample] with scale= (a factor on the values) "
                       "has no archc form", "leave scale= out, or fold it into the next conv")
        items = [common.layer("upsample", s.span, scale=stride)] if stride >= 1 else []
        self.emit(s, items, (c, h * abs(stride), w * abs(stride)))

    def _yolo(self, s: Section) -> None:
        """Detection decoding and loss: not part of the network; its input is an output."""
        self.diags.warning(
            "W401", s.span, f"[{s.type}] (detection decoding and loss) is left out; the layer "
            "before it is a network output",
            "archc writes the network up to the detection heads; decode the outputs yourself"
            + ("; all but the last head become taps, outputs in training mode only"
               if s.type == "yolo" else ""))
        self.outputs.append(self.previous(s))

    _region = _detection = _yolo


HANDLED = {"convolutional", "maxpool", "avgpool", "connected", "dropout", "softmax", "cost",
           "shortcut", "route", "upsample", "yolo", "region", "detection", "crop"}


def _ceil_pool(size: int, kernel: int, stride: int, pad: int) -> int:
    """PyTorch's pooled size with ceil_mode (the last window starts inside input + pad)."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _fmt(shape: Shape) -> str:
    return "×".join(map(str, shape))
