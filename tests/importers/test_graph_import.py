"""Forwards that are graphs, not trees of branches: the importer writes them with named
tensors (`-> name`, `@name`, `concat(@a, @b)`). Small timm modules, each imported (the
importer checks itself) and checked again by the test's own oracle (norms randomised,
weights loaded strictly)."""

from __future__ import annotations

import torch
from torch import nn

from archc.importers.layout import spec_text
from tests.importers.test_torch_leaves import assert_exact, imported, messages

HERE = "tests.importers.test_graph_import"


def hgnet_net() -> nn.Module:
    """Two of HGNet's blocks: every layer's output is read by the next layer and by the
    final concat of them all (and, with the residual, the input by the add too)."""
    from timm.models.hgnet import HighPerfGpuBlock

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        HighPerfGpuBlock(8, 4, 8, layer_num=3, residual=True),
        HighPerfGpuBlock(8, 4, 12, layer_num=2, agg="se"),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10))


def test_a_value_read_by_the_next_layer_and_a_later_concat_imports_as_named_tensors():
    spec, diags = imported(f"{HERE}:hgnet_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "-> layers_0" in text  # named inside the `layers:` group, read after it
    assert "concat(@x, @layers_0, @layers_1, @layers_2)" in text
    assert "@x)" in text  # the residual adds the block's input
    assert_exact(text, hgnet_net())


def dla_net() -> nn.Module:
    """DLA's trees: a block called with its input and a shortcut (`tree1(x, shortcut)`),
    a tree of trees whose inner root concatenates tensors passed down as a list
    (`tree2(x1, None, children)`), and a level root that reads the pooled input."""
    from timm.models.dla import DlaBasic, DlaTree

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        DlaTree(1, DlaBasic, 8, 8, 2),
        DlaTree(2, DlaBasic, 8, 12, 2, level_root=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10))


def test_modules_called_with_several_tensors_import_as_blocks_with_tensor_parameters():
    spec, diags = imported(f"{HERE}:dla_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "block dla_basic(c, @shortcut" in text  # `tree1(x, shortcut)`
    assert "@children_0, @children_1)" in text  # the list passed to the inner tree
    assert "tree1: dla_basic(12, @project" in text
    assert_exact(text, dla_net())


def vovnet_net() -> nn.Module:
    """VoVNet's OSA block: `conv_mid(x, [x0])` appends each layer's output to the list it
    is given and concatenates them all; its layers are called `self[i]`, numbered."""
    from timm.models.vovnet import OsaBlock

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        OsaBlock(8, 4, 8, 2, residual=True, attn="ese"),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_a_list_of_tensors_passed_to_a_child_imports_as_tensor_arguments():
    spec, diags = imported(f"{HERE}:vovnet_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "block sequential_append_list(@concat_list_0):" in text
    assert "concat(@concat_list_0, @t0, @t1)" in text
    assert_exact(text, vovnet_net())


def dpn_net() -> nn.Module:
    """DPN's dual path: the projection's and the last conv's outputs are each sliced in
    two (`x[:, :c]`, `x[:, c:]`, a slice to the end whose width the probe run saw), the
    first slices added and all concatenated."""
    from timm.models.dpn import DualPathBlock

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        DualPathBlock(16, 8, 8, 8, 4, 2, "proj"),
        DualPathBlock(20, 8, 8, 8, 4, 2, "normal"),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10))


def test_slices_to_the_end_read_by_two_merges_import_as_named_tensors():
    spec, diags = imported(f"{HERE}:dpn_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "channel-slice(8, 20)" in text  # `x[:, 8:]` of the 20 channels the block takes
    assert "concat(@add, @getitem_1, @getitem_3)" in text
    assert_exact(text, dpn_net())


class SelecSlsNet(nn.Module):
    """SelecSLS's shape: blocks pass `[x, skip]` to each other through a Sequential, and
    the network picks the first tensor of the list at the end."""

    def __init__(self):
        from timm.models.selecsls import SelecSlsBlock, SelectSeq, SequentialList

        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.features = SequentialList(SelecSlsBlock(8, 0, 8, 8, True, 2),
                                       SelecSlsBlock(8, 8, 8, 12, False, 1))
        self.from_seq = SelectSeq("index", 0)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = self.from_seq(self.features([self.stem(x)]))
        return self.fc(torch.flatten(self.pool(x), 1))


def selecsls_net() -> nn.Module:
    torch.manual_seed(0)
    return SelecSlsNet()


def test_modules_that_take_and_return_lists_import_as_blocks_with_several_outputs():
    spec, diags = imported(f"{HERE}:selecsls_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "block selec_sls_block -> @conv6, @conv6_:" in text  # `return [out, out]`
    assert "block selec_sls_block_2(@x_1) -> @conv6, @x_1:" in text  # [x, skip] in, skip on
    assert "-> t0, getitem" in text  # a call's two outputs named
    assert_exact(text, selecsls_net())


class HierarchicalSplit(nn.Module):
    """Res2Net's split chain: `torch.split` into slices of 4 channels, each slice after the
    first added to the previous one's output before its conv, the last passed through
    (`spx[-1]`), all concatenated."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(8, 12, 1)
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        spx = torch.split(self.relu(self.conv1(x)), 4, 1)
        sp = self.relu(self.conv_a(spx[0]))
        out = [sp]
        sp = self.relu(self.conv_b(sp + spx[1]))
        out.append(sp)
        out.append(spx[-1])
        return torch.cat(out, 1)


def res2_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), HierarchicalSplit(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10))


def test_slices_of_a_split_read_out_of_order_import_as_channel_slices():
    spec, diags = imported(f"{HERE}:res2_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "channel-slice(8, 12)" in text  # `spx[-1]` of the 12 channels
    assert "add(@relu_1, @getitem_1)" in text
    assert_exact(text, res2_net())


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.a(x), self.b(x)


class ReadsTheSecond(nn.Module):
    """Reads a child's second output only: archc names a call's outputs in order, and a
    name never read is an error, so this has no form yet."""

    def __init__(self):
        super().__init__()
        self.two = TwoOutputs()

    def forward(self, x):
        return self.two(x)[1]


def test_a_later_output_read_without_the_first_is_refused_where_it_is_written():
    spec, diags = imported(f"{HERE}:ReadsTheSecond")
    assert spec is None
    (message,) = messages(diags)
    assert "reads output 1 of `two` but not output 0" in message
    assert diags.items[0].span.file == __file__  # at the forward's line



def cbr(cin: int, cout: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    """conv, bn (and relu): a plain Sequential, as HRNet's transitions and fuse layers."""
    layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU()] if act else []))


class Exchange(nn.Module):
    """HRNet's pattern in small: a ModuleList of Sequentials applied to different tensors
    (`trans[0](x)`, `trans[1](x)`), one with a None entry (`more[1]` alone), and
    two-level numbered containers (`fuse[i][j]`) whose rows each read both branches,
    so the forward is a graph, not branches."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.trans = nn.ModuleList([cbr(8, 8), cbr(8, 8, stride=2)])
        self.more = nn.ModuleList([None, cbr(8, 8, act=False)])
        up = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8),
                           nn.Upsample(scale_factor=2.0))
        self.fuse = nn.ModuleList([nn.ModuleList([nn.Identity(), up]),
                                   nn.ModuleList([cbr(8, 8, 2, act=False), nn.Identity()])])
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)  # (B, 8, H, W)
        a, b = self.trans[0](x), self.trans[1](x)  # (B, 8, H, W), (B, 8, H/2, W/2)
        b = self.more[1](b)
        y0 = self.fuse[0][0](a) + self.fuse[0][1](b)  # (B, 8, H, W)
        y1 = self.fuse[1][0](a) + self.fuse[1][1](b)  # (B, 8, H/2, W/2)
        return self.fc(y0.mean((2, 3)) + y1.mean((2, 3)))


def exchange_net() -> nn.Module:
    """`Exchange`, seeded."""
    torch.manual_seed(0)
    return Exchange()


def test_sequentials_of_a_list_applied_apart_keep_their_own_numbering():
    spec, diags = imported(f"{HERE}:exchange_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "trans.0: [" in text  # its conv stays `trans.0.0.weight`, not `trans.0.weight`
    assert "more.1: [" in text and "fuse.0.1: [" in text and "fuse.1.0: [" in text
    assert_exact(text, exchange_net())
