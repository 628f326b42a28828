"""`archc import --weights`: a `.caffemodel` or darknet `.weights` file → safetensors.

The tensors get archc's state_dict names. Every layer with weights in the imported spec
came from one layer of the foreign file; the importers keep the foreign layer's span on
the IR layer, and compacting (blocks, repeats) keeps the order of layers, so walking the
uncompacted IR beside the checked network pairs each module with its foreign layer.

numpy and safetensors only: no torch. A caffemodel is read streaming by
`archc.importers.caffemodel` (the protobuf wire format, one layer record at a time, each
blob's size checked against the network before its values are read); a darknet file
likewise, its size checked against the cfg first. protobuf serves only the writers
(`write_caffemodel`, `write_darknet_weights`), which the tests use: the caffemodel messages
are the few fields of caffe.proto that hold weights, declared here and compiled at run time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.graph import LayerNode, Network, layers

WEIGHTED = ("conv", "fc", "bn", "prelu")


class WeightsError(Exception):
    """An expected failure of the conversion: one line and a hint."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def convert(source: str, network: Network, target: Path) -> tuple[Path, int]:
    """Convert the weights file beside `source` for `network`; (file read, tensors written)."""
    from safetensors.numpy import save

    from archc.importers.registry import for_file

    importer = for_file(source)
    convert_tensors = importer.tensors() if importer is not None else None
    if importer is None or importer.weights_suffix is None or convert_tensors is None:
        raise WeightsError(f"`{source}` has no weights file that archc can convert",
                           "--weights reads the .caffemodel or .weights file beside a "
                           ".prototxt or .cfg")
    found = Path(source).with_suffix(importer.weights_suffix)
    tensors = convert_tensors(source, found, network)
    # np.ascontiguousarray would make num_batches_tracked's 0-d scalar 1-d
    # written with open(), not save_file, which creates the file 0600 whatever the umask
    Path(target).write_bytes(save({k: np.array(v, order="C") for k, v in tensors.items()}))
    return found, len(tensors)


def _pairs(flat: ir.SpecFile, network: Network) -> list[tuple[ir.Span, LayerNode]]:
    """(span of the foreign layer, module) for every weighted layer, in module order."""
    spec = flat.statements[0]
    assert isinstance(spec, ir.NetworkDef)  # an imported spec is one network
    spans = [lay.span for lay in _ir_layers(spec.body) if lay.callee in WEIGHTED]
    nodes = [n for n in layers(network.root) if n.kind in WEIGHTED]
    if len(spans) != len(nodes):  # pragma: no cover - compacting must keep every layer
        raise AssertionError(f"bug: {len(spans)} imported weighted layers, {len(nodes)} modules")
    return list(zip(spans, nodes))


def _ir_layers(items: list):
    for item in items:
        if isinstance(item, ir.Layer):
            yield item
        elif isinstance(item, ir.Group):
            yield from _ir_layers(item.items)
        elif isinstance(item, ir.Merge):
            yield from _ir_layers(item.branches)
        elif isinstance(item, ir.Tap):
            yield from _ir_layers([item.head])


def _flat_ir(load, source: str) -> ir.SpecFile:
    diags = Diagnostics()
    flat = load(source, diags, compact=False)
    if flat is None:  # pragma: no cover - the same file imported a moment ago
        raise AssertionError("bug: the file no longer imports")
    return flat


def _missing(found: Path, kind: str) -> WeightsError:
    return WeightsError(f"no weights file `{found}`",
                        f"--weights reads the {kind} file with the same name beside the network")


# --------------------------------------------------------------------------- Caffe

# The weight-carrying part of caffe.proto (field numbers as Caffe defines them).
_CAFFE_MESSAGES = {
    "BlobShape": [("dim", 1, "int64", "repeated")],
    "BlobProto": [("num", 1, "int32", "optional"), ("channels", 2, "int32", "optional"),
                  ("height", 3, "int32", "optional"), ("width", 4, "int32", "optional"),
                  ("data", 5, "float", "repeated"), ("shape", 7, ".caffe.BlobShape", "optional"),
                  ("double_data", 8, "double", "repeated")],
    "LayerParameter": [("name", 1, "string", "optional"), ("type", 2, "string", "optional"),
                       ("blobs", 7, ".caffe.BlobProto", "repeated")],
    "V1LayerParameter": [("name", 4, "string", "optional"),
                         ("blobs", 6, ".caffe.BlobProto", "repeated")],
    "NetParameter": [("name", 1, "string", "optional"),
                     ("layers", 2, ".caffe.V1LayerParameter", "repeated"),
                     ("layer", 100, ".caffe.LayerParameter", "repeated")],
}


@lru_cache(maxsize=None)
def caffe_net_class(packed: bool = True):
    """The `caffe.NetParameter` message class, built from the fields above. `packed`: whether
    repeated numbers are written packed (Caffe's way); protobuf reads both forms, and the
    tests write the other one too, so the streaming reader must accept it."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name=f"archc_caffe_{packed}.proto",
                                             package="caffe", syntax="proto2")
    F = descriptor_pb2.FieldDescriptorProto
    scalar = {"int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "float": F.TYPE_FLOAT,
              "double": F.TYPE_DOUBLE, "string": F.TYPE_STRING}
    for name, fields in _CAFFE_MESSAGES.items():
        message = fdp.message_type.add(name=name)
        for fname, number, ftype, label in fields:
            repeated = label == "repeated"
            f = message.field.add(name=fname, number=number,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if ftype in scalar:
                f.type = scalar[ftype]
                if label == "repeated" and ftype != "string":
                    f.options.packed = packed
            else:
                f.type, f.type_name = F.TYPE_MESSAGE, ftype
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def read_caffemodel(path: Path, most_bytes: int | None = None,
                    expected: dict[str, dict[int, set[int]]] | None = None
                    ) -> dict[str, list[np.ndarray | None]]:
    """Layer name → its blobs (float32 arrays in their Caffe shapes), read streaming (see
    `caffemodel`). A file over `most_bytes` (what the network's parameters could take) is
    refused from its size. With `expected` (layer name → blob index → the value counts the
    network accepts) only those layers' wanted blobs are read, each one's declared count
    checked before its values are; the other blobs are None."""
    from archc.importers.caffemodel import CaffemodelError, WireReader, index

    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise _missing(path, ".caffemodel") from None
    except IsADirectoryError:
        raise WeightsError(f"`{path}` is a directory, not a caffemodel") from None
    except OSError as exc:
        raise WeightsError(f"cannot read `{path}`: {exc.strerror or exc}") from None
    with handle:
        try:
            reader = WireReader(handle)
            _check_size(path, reader.size, most_bytes)
            records = index(reader, None if expected is None else expected.__contains__)
            return {name: _read_blobs(reader, record, None if expected is None
                                      else expected[name])
                    for name, record in records.items()}
        except CaffemodelError as exc:
            raise WeightsError(f"`{path}` is not a readable caffemodel ({exc})") from None
        except OSError as exc:
            raise WeightsError(f"cannot read `{path}`: {exc.strerror or exc}") from None


def _check_size(path: Path, size: int, most: int | None) -> None:
    """Refuse a file larger than `most` from its size, before reading any of it."""
    if most is not None and size > most:
        raise WeightsError(
            f"`{path}` is {size:,} bytes, more than the network's parameters could fill "
            f"({most:,} bytes at most)", "the weights must come from the same network as "
            "the description")


def _read_blobs(reader, record, wanted: dict[int, set[int]] | None) -> list[np.ndarray | None]:
    """The blobs of one layer record: those `wanted` (all when None) read after their
    declared value count was checked against it, the others left unread (None)."""
    from archc.importers.caffemodel import blob_header, read_values, shaped

    arrays: list[np.ndarray | None] = []
    for number, (start, length) in enumerate(record.blobs):
        if wanted is not None and number not in wanted:
            arrays.append(None)
            continue
        header = blob_header(reader, start, length)
        if wanted is not None and header.count not in wanted[number]:
            needs = " or ".join(f"{n:,}" for n in sorted(wanted[number]))
            raise WeightsError(f"layer `{record.name}`: blob {number} of the caffemodel holds "
                               f"{header.count:,} values where the network needs {needs}",
                               "the weights must come from the same network as the description")
        arrays.append(shaped(read_values(reader, start, length, header), header.dims))
    return arrays


def caffemodel_most_bytes(network: Network) -> int:
    """The largest caffemodel that can hold `network`'s weights: every parameter as a
    double (`double_data`), plus room for names and shapes."""
    return 8 * network.n_params + 64 * 1024 * 1024


def write_caffemodel(path: Path, blobs: dict[str, list[np.ndarray]], name: str = "net",
                     v1: bool = False) -> None:
    """Write a caffemodel holding `blobs` (layer name → arrays), as Caffe serialises one
    (`v1`: in the old `layers` field, as models trained before 2015 are stored)."""
    net = caffe_net_class()(name=name)
    for layer_name, arrays in blobs.items():
        layer = (net.layers if v1 else net.layer).add(name=layer_name)
        for array in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(np.asarray(array, dtype=np.float32).ravel().tolist())
    path.write_bytes(net.SerializeToString())


@dataclass(frozen=True)
class _Need:
    """One tensor of archc's state_dict and the caffemodel blob it comes from."""

    layer: str  # the Caffe layer's name
    index: int  # the blob's index in it
    tensor: str  # the state_dict name
    shape: tuple[int, ...]


def caffe_tensors(source: str, found: Path, network: Network) -> dict[str, np.ndarray]:
    """archc's state_dict from a caffemodel, for the network imported from `source`: the
    blobs it needs are sized from the network first, and only those are read."""
    from archc.importers import caffe, prototxt

    flat = _flat_ir(caffe.load, source)
    root = prototxt.parse(Path(source).read_text(encoding="utf-8"), source, Diagnostics())
    assert root is not None  # it parsed above, as the network was imported from it
    by_span = {(lay.span.line, lay.span.column): lay for lay in caffe.layers_of(root)}
    scale_of = _scales(caffe.layers_of(root))
    named = [(by_span[(span.line, span.column)].name, node)
             for span, node in _pairs(flat, network)]
    needs = [need for name, node in named for need in _caffe_needs(name, node, scale_of)]
    expected: dict[str, dict[int, set[int]]] = {}
    for need in needs:
        expected.setdefault(need.layer, {}).setdefault(need.index, set()).add(
            math.prod(need.shape))
    for name, node in named:
        if node.kind == "bn":  # Caffe's scale factor of mean and variance: one value, or none
            expected[name].setdefault(2, set()).update({0, 1})
    blobs = read_caffemodel(found, caffemodel_most_bytes(network), expected)
    out = {need.tensor: _shaped(_nth(_layer_blobs(blobs, need.layer), need.index, need.layer),
                                need.shape, need.layer) for need in needs}
    for name, node in named:
        if node.kind == "bn":
            _scale_statistics(out, node, blobs[name])
    return out


def _caffe_needs(name: str, node: LayerNode, scale_of: dict[str, str]) -> list[_Need]:
    """The blobs the module `node`, imported from Caffe layer `name`, takes: conv and fc a
    weight (Caffe's layout is PyTorch's) and a bias; BatchNorm its mean and variance, and
    γ and β from the Scale layer after it; PReLU its slopes."""
    path = node.path
    if node.kind == "bn":
        channels = (_channels(node.in_shape),)
        needs = [_Need(name, 0, f"{path}.running_mean", channels),
                 _Need(name, 1, f"{path}.running_var", channels)]
        scale = scale_of.get(name)
        if node.params.get("affine", True) and scale is not None:
            needs += [_Need(scale, 0, f"{path}.weight", channels),
                      _Need(scale, 1, f"{path}.bias", channels)]
        return needs
    if node.kind == "prelu":
        slopes = _channels(node.in_shape) if node.params.get("per_channel") else 1
        return [_Need(name, 0, f"{path}.weight", (slopes,))]
    needs = [_Need(name, 0, f"{path}.weight", _weight_shape(node))]
    if node.params.get("bias", True):
        needs.append(_Need(name, 1, f"{path}.bias", (_channels(node.out_shape),)))
    return needs


def _scale_statistics(out: dict[str, np.ndarray], node: LayerNode,
                      arrays: list[np.ndarray | None]) -> None:
    """Caffe keeps a BatchNorm's mean and variance times a factor (blob 2): divide it out."""
    factor_blob = arrays[2] if len(arrays) > 2 else None
    factor = float(factor_blob.ravel()[0]) if factor_blob is not None and factor_blob.size \
        else 1.0
    factor = 0.0 if factor == 0 or not math.isfinite(factor) else 1.0 / factor
    out[f"{node.path}.running_mean"] = out[f"{node.path}.running_mean"] * factor
    out[f"{node.path}.running_var"] = out[f"{node.path}.running_var"] * factor
    out[f"{node.path}.num_batches_tracked"] = np.zeros((), dtype=np.int64)


def _nth(arrays: list[np.ndarray | None], index: int, name: str) -> np.ndarray:
    """Blob `index` of layer `name`, or a `WeightsError` when the caffemodel has fewer."""
    if index >= len(arrays):
        raise WeightsError(f"layer `{name}` has {len(arrays)} blobs in the caffemodel where "
                           f"the network needs at least {index + 1}",
                           "the caffemodel must come from the same network as the prototxt")
    array = arrays[index]
    assert array is not None  # every blob a need names is read
    return array


def _layer_blobs(blobs: dict[str, list[np.ndarray | None]], name: str
                 ) -> list[np.ndarray | None]:
    if name not in blobs:
        raise WeightsError(f"the caffemodel has no blobs for layer `{name}`",
                           "the caffemodel must come from the same network as the prototxt")
    return blobs[name]


def _scales(caffe_layers) -> dict[str, str]:
    """BatchNorm layer name → the name of the Scale layer that follows it."""
    top_of = {top: lay.name for lay in caffe_layers if lay.type == "BatchNorm" for top in lay.tops}
    return {top_of[str(lay.bottoms[0].value)]: lay.name for lay in caffe_layers
            if lay.type == "Scale" and lay.bottoms and str(lay.bottoms[0].value) in top_of}


def _channels(shape: tuple[int, ...] | None) -> int:
    """The channels (or features) of a shape of a checked network, which knows them all."""
    assert shape is not None
    return shape[0]


def _weight_shape(node: LayerNode) -> tuple[int, ...]:
    if node.kind == "fc":
        return (node.params["out"], _channels(node.in_shape))
    kh, kw = _pair(node.params["kernel"])
    return (node.params["out"], _channels(node.in_shape) // node.params["groups"], kh, kw)


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _shaped(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    if array.size != int(np.prod(shape)):
        raise WeightsError(f"layer `{name}`: the weights file holds {array.size} values where "
                           f"the network needs {int(np.prod(shape))} ({'×'.join(map(str, shape))})",
                           "the weights must come from the same network as the description")
    return np.asarray(array, dtype=np.float32).reshape(shape)


# --------------------------------------------------------------------------- Darknet


def write_darknet_weights(path: Path, arrays: list[np.ndarray], seen: int = 0) -> None:
    """A darknet weights file: header (major 0, minor 2, revision 0, seen as int64), floats."""
    with open(path, "wb") as f:
        np.array([0, 2, 0], dtype=np.int32).tofile(f)
        np.array([seen], dtype=np.int64).tofile(f)
        for array in arrays:
            np.asarray(array, dtype=np.float32).ravel().tofile(f)


def darknet_tensors(source: str, found: Path, network: Network) -> dict[str, np.ndarray]:
    """archc's state_dict from a darknet .weights file, read in the cfg's layer order.

    Per [convolutional]: biases, or with batch_normalize β, γ, running mean, running
    variance; then the weights. Per [connected]: biases, then the weights.
    """
    modules = _darknet_sections(source, network)
    plan = [entry for key in sorted(modules) for entry in _darknet_plan(modules[key])]
    try:
        handle = open(found, "rb")
    except FileNotFoundError:
        raise _missing(found, ".weights") from None
    except OSError as exc:
        raise WeightsError(f"cannot read `{found}`: {exc.strerror}") from None
    with handle:
        reader = _Reader(handle, found)
        major, minor, _ = reader.ints(3)
        reader.skip(8 if major * 10 + minor >= 2 else 4)  # `seen` grew to 64 bits in 0.2
        reader.expect(4 * sum(math.prod(shape) for _, shape in plan))  # before reading any
        out: dict[str, np.ndarray] = {name: reader.floats(shape) for name, shape in plan}
    for bn in (found_nodes["bn"] for found_nodes in modules.values() if "bn" in found_nodes):
        out[f"{bn.path}.num_batches_tracked"] = np.zeros((), dtype=np.int64)
    return out


def darknet_layout(source: str, network: Network) -> list[tuple[str, tuple[int, ...]]]:
    """(tensor name, shape) of every tensor in a darknet .weights file for `network`, in the
    order the file stores them (after its header)."""
    modules = _darknet_sections(source, network)
    return [entry for key in sorted(modules) for entry in _darknet_plan(modules[key])]


def _darknet_sections(source: str, network: Network) -> dict[tuple[int, int], dict]:
    """Section header position → its weighted modules by kind (conv or fc, and bn)."""
    from archc.importers import darknet

    modules: dict[tuple[int, int], dict[str, LayerNode]] = {}
    for span, node in _pairs(_flat_ir(darknet.load, source), network):
        modules.setdefault((span.line, span.column), {})[node.kind] = node
    return modules


def _darknet_plan(found_nodes: dict[str, LayerNode]) -> list[tuple[str, tuple[int, ...]]]:
    """(tensor name, shape) in the order darknet stores one section's weights."""
    main = found_nodes.get("conv") or found_nodes["fc"]
    bn = found_nodes.get("bn")
    channels = (_channels(main.out_shape),)
    if bn is not None:
        first = [(f"{bn.path}.{name}", channels)
                 for name in ("bias", "weight", "running_mean", "running_var")]
    else:
        first = [(f"{main.path}.bias", channels)]
    return [*first, (f"{main.path}.weight", _weight_shape(main))]


class _Reader:
    """Sequential reads from an open darknet weights file, one tensor at a time (never the
    whole file), with one clear error when its size does not fit the cfg."""

    def __init__(self, handle, path: Path):
        self.handle, self.path, self.pos = handle, path, 0
        self.size = os.fstat(handle.fileno()).st_size

    def _take(self, n: int) -> bytes:
        chunk = self.handle.read(n) if self.pos + n <= self.size else b""
        if len(chunk) != n:
            raise WeightsError(f"`{self.path}` ends early ({self.size:,} bytes)",
                               "the weights must come from the same cfg")
        self.pos += n
        return chunk

    def expect(self, n: int) -> None:
        """Check, before reading them, that exactly `n` more bytes follow."""
        left = self.size - self.pos
        if left < n:
            raise WeightsError(f"`{self.path}` ends early: {left:,} bytes of weights where the "
                               f"cfg's layers need {n:,}", "the weights must come from the "
                               "same cfg")
        if left > n:
            raise WeightsError(f"`{self.path}` holds {left - n:,} bytes more than the cfg's "
                               "layers use", "the weights must come from the same cfg")

    def ints(self, n: int) -> list[int]:
        """`n` int32 values."""
        return np.frombuffer(self._take(4 * n), dtype=np.int32).tolist()

    def skip(self, n: int) -> None:
        """Pass over `n` bytes."""
        self._take(n)

    def floats(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 tensor of `shape`."""
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count), dtype=np.float32).reshape(shape).copy()
