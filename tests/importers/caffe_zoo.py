"""Full-size deploy.prototxts in the layouts of Caffe's model zoo, written by code.

BVLC GoogLeNet (bvlc_googlenet/deploy.prototxt), VGG-16 (VGG_ILSVRC_16_layers_deploy)
and Kaiming He's ResNet-50 (ResNet-50-deploy.prototxt: BatchNorm + Scale, branch1 /
branch2a-c naming). Layer names, order and parameters follow those files; the text is
generated so the tests need no downloads.
"""

from __future__ import annotations


def _layer(name: str, kind: str, bottoms: list[str], top: str, params: str = "") -> str:
    lines = [f'  name: "{name}"', f'  type: "{kind}"']
    lines += [f'  bottom: "{b}"' for b in bottoms] + [f'  top: "{top}"']
    if params:
        lines.append(f"  {params}")
    return "layer {\n" + "\n".join(lines) + "\n}\n"


def conv(name: str, bottom: str, out: int, k: int, stride: int = 1, pad: int = 0,
         bias: bool = True, top: str | None = None) -> str:
    extra = (f" pad: {pad}" if pad else "") + (f" stride: {stride}" if stride > 1 else "")
    extra += "" if bias else " bias_term: false"
    return _layer(name, "Convolution", [bottom], top or name,
                  f"convolution_param {{ num_output: {out} kernel_size: {k}{extra} }}")


def relu(name: str, blob: str) -> str:
    return _layer(name, "ReLU", [blob], blob)


def pool(name: str, bottom: str, k: int, stride: int, pad: int = 0, kind: str = "MAX") -> str:
    extra = f" pad: {pad}" if pad else ""
    return _layer(name, "Pooling", [bottom], name,
                  f"pooling_param {{ pool: {kind} kernel_size: {k} stride: {stride}{extra} }}")


def fc(name: str, bottom: str, out: int) -> str:
    return _layer(name, "InnerProduct", [bottom], name,
                  f"inner_product_param {{ num_output: {out} }}")


def head(name: str, size: int) -> str:
    """The net's name and its input blob, batch 10 as the zoo's deploy files have it."""
    shape = f"input_shape {{ dim: 10 dim: 3 dim: {size} dim: {size} }}"
    return f'name: "{name}"\ninput: "data"\n{shape}\n'


def googlenet() -> str:
    """BVLC GoogLeNet's deploy.prototxt (no auxiliary heads at deploy time)."""
    t = head("GoogleNet", 224)
    t += conv("conv1/7x7_s2", "data", 64, 7, 2, 3) + relu("conv1/relu_7x7", "conv1/7x7_s2")
    t += pool("pool1/3x3_s2", "conv1/7x7_s2", 3, 2)
    t += _layer("pool1/norm1", "LRN", ["pool1/3x3_s2"], "pool1/norm1",
                "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")
    t += conv("conv2/3x3_reduce", "pool1/norm1", 64, 1) + relu("conv2/relu_3x3_reduce",
                                                                "conv2/3x3_reduce")
    t += conv("conv2/3x3", "conv2/3x3_reduce", 192, 3, 1, 1) + relu("conv2/relu_3x3", "conv2/3x3")
    t += _layer("conv2/norm2", "LRN", ["conv2/3x3"], "conv2/norm2",
                "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")
    t += pool("pool2/3x3_s2", "conv2/norm2", 3, 2)
    bottom = "pool2/3x3_s2"
    table = [("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64), "pool3",
             ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64),
             ("4c", 128, 128, 256, 24, 64, 64), ("4d", 112, 144, 288, 32, 64, 64),
             ("4e", 256, 160, 320, 32, 128, 128), "pool4",
             ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128)]
    for row in table:
        if isinstance(row, str):
            t += pool(f"{row}/3x3_s2", bottom, 3, 2)
            bottom = f"{row}/3x3_s2"
            continue
        t += inception(row[0], bottom, *row[1:])
        bottom = f"inception_{row[0]}/output"
    t += pool("pool5/7x7_s1", bottom, 7, 1, kind="AVE")
    t += _layer("pool5/drop_7x7_s1", "Dropout", ["pool5/7x7_s1"], "pool5/7x7_s1",
                "dropout_param { dropout_ratio: 0.4 }")
    t += fc("loss3/classifier", "pool5/7x7_s1", 1000)
    return t + _layer("prob", "Softmax", ["loss3/classifier"], "prob")


def inception(n: str, bottom: str, c1: int, r3: int, c3: int, r5: int, c5: int,
              proj: int) -> str:
    """One inception module as BVLC writes it: four branches and a Concat."""
    p = f"inception_{n}/"
    t = conv(p + "1x1", bottom, c1, 1) + relu(p + "relu_1x1", p + "1x1")
    t += conv(p + "3x3_reduce", bottom, r3, 1) + relu(p + "relu_3x3_reduce", p + "3x3_reduce")
    t += conv(p + "3x3", p + "3x3_reduce", c3, 3, 1, 1) + relu(p + "relu_3x3", p + "3x3")
    t += conv(p + "5x5_reduce", bottom, r5, 1) + relu(p + "relu_5x5_reduce", p + "5x5_reduce")
    t += conv(p + "5x5", p + "5x5_reduce", c5, 5, 1, 2) + relu(p + "relu_5x5", p + "5x5")
    t += pool(p + "pool", bottom, 3, 1, 1) + conv(p + "pool_proj", p + "pool", proj, 1)
    t += relu(p + "relu_pool_proj", p + "pool_proj")
    return t + _layer(p + "output", "Concat",
                      [p + "1x1", p + "3x3", p + "5x5", p + "pool_proj"], p + "output")


def vgg16() -> str:
    """VGG_ILSVRC_16_layers_deploy.prototxt."""
    t, bottom = head("VGG_ILSVRC_16_layers", 224), "data"
    for stage, (n, c) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
        for i in range(1, n + 1):
            name = f"conv{stage}_{i}"
            t += conv(name, bottom, c, 3, 1, 1) + relu(f"relu{stage}_{i}", name)
            bottom = name
        t += pool(f"pool{stage}", bottom, 2, 2)
        bottom = f"pool{stage}"
    for name, out in (("fc6", 4096), ("fc7", 4096)):
        t += fc(name, bottom, out) + relu(f"relu{name[2:]}", name)
        t += _layer(f"drop{name[2:]}", "Dropout", [name], name,
                    "dropout_param { dropout_ratio: 0.5 }")
        bottom = name
    return t + fc("fc8", bottom, 1000) + _layer("prob", "Softmax", ["fc8"], "prob")


def _conv_bn(suffix: str, bottom: str, out: int, k: int, stride: int = 1, pad: int = 0,
             act: bool = True) -> str:
    """res{suffix} conv, bn{suffix} BatchNorm, scale{suffix} Scale (+ ReLU), in place."""
    top = f"res{suffix}"
    t = conv(top, bottom, out, k, stride, pad, bias=False)
    t += _layer(f"bn{suffix}", "BatchNorm", [top], top,
                "batch_norm_param { use_global_stats: true }")
    t += _layer(f"scale{suffix}", "Scale", [top], top, "scale_param { bias_term: true }")
    if act:
        t += relu(f"res{suffix}_relu", top)
    return t


def resnet50(base: int = 64, size: int = 224) -> str:
    """Kaiming He's ResNet-50-deploy.prototxt (`base` 64, `size` 224; smaller for tests)."""
    t = head("ResNet-50", size) + conv("conv1", "data", base, 7, 2, 3)
    t += _layer("bn_conv1", "BatchNorm", ["conv1"], "conv1",
                "batch_norm_param { use_global_stats: true }")
    t += _layer("scale_conv1", "Scale", ["conv1"], "conv1", "scale_param { bias_term: true }")
    t += relu("conv1_relu", "conv1") + pool("pool1", "conv1", 3, 2)
    bottom = "pool1"
    for stage, blocks, width in ((2, 3, base), (3, 4, base * 2), (4, 6, base * 4),
                                 (5, 3, base * 8)):
        for b in range(blocks):
            unit = f"{stage}{chr(ord('a') + b)}"
            stride = 2 if b == 0 and stage > 2 else 1
            if b == 0:
                t += _conv_bn(f"{unit}_branch1", bottom, width * 4, 1, stride, act=False)
                shortcut = f"res{unit}_branch1"
            else:
                shortcut = bottom
            t += _conv_bn(f"{unit}_branch2a", bottom, width, 1, stride)
            t += _conv_bn(f"{unit}_branch2b", f"res{unit}_branch2a", width, 3, 1, 1)
            t += _conv_bn(f"{unit}_branch2c", f"res{unit}_branch2b", width * 4, 1,
                          act=False)
            t += _layer(f"res{unit}", "Eltwise", [shortcut, f"res{unit}_branch2c"], f"res{unit}")
            t += relu(f"res{unit}_relu", f"res{unit}")
            bottom = f"res{unit}"
    t += pool("pool5", bottom, size // 32, 1, kind="AVE")
    return t + fc("fc1000", "pool5", 1000) + _layer("prob", "Softmax", ["fc1000"], "prob")



def squeezenet() -> str:
    """SqueezeNet v1.1's deploy.prototxt (DeepScale): fire modules, a 1×1 conv classifier."""
    t = head("SqueezeNet_v1.1", 227) + conv("conv1", "data", 64, 3, 2)
    t += relu("relu_conv1", "conv1") + pool("pool1", "conv1", 3, 2)
    bottom = "pool1"
    plan = [(2, 16, 64), (3, 16, 64), "pool3", (4, 32, 128), (5, 32, 128), "pool5",
            (6, 48, 192), (7, 48, 192), (8, 64, 256), (9, 64, 256)]
    for step in plan:
        if isinstance(step, str):
            t += pool(step, bottom, 3, 2)
            bottom = step
            continue
        n, squeeze, expand = step
        p = f"fire{n}/"
        t += conv(p + "squeeze1x1", bottom, squeeze, 1) + relu(p + "relu_squeeze1x1",
                                                               p + "squeeze1x1")
        t += conv(p + "expand1x1", p + "squeeze1x1", expand, 1)
        t += relu(p + "relu_expand1x1", p + "expand1x1")
        t += conv(p + "expand3x3", p + "squeeze1x1", expand, 3, 1, 1)
        t += relu(p + "relu_expand3x3", p + "expand3x3")
        t += _layer(p + "concat", "Concat", [p + "expand1x1", p + "expand3x3"], p + "concat")
        bottom = p + "concat"
    t += _layer("drop9", "Dropout", [bottom], bottom, "dropout_param { dropout_ratio: 0.5 }")
    t += conv("conv10", bottom, 1000, 1) + relu("relu_conv10", "conv10")
    t += _layer("pool10", "Pooling", ["conv10"], "pool10",
                "pooling_param { pool: AVE global_pooling: true }")
    return t + _layer("prob", "Softmax", ["pool10"], "prob")
