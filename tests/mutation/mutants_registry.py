"""Named one-line mutants of the layer registry and the merge table: plausible slips that
shapes and parameter counts alone would not notice. `python -m tests.mutation.run` applies
them one at a time and runs the listed tests, which must fail (catch it)."""

_REGISTRY = "tests/test_registry.py"

MUTANTS = [
    dict(name="lrn-alpha-times-size",  # the paper's alpha mistaken for PyTorch's
         file="archc/layers/norm.py",
         old='nn.LocalResponseNorm(p["size"], alpha=p["alpha"], beta=p["beta"], k=p["k"])',
         new='nn.LocalResponseNorm(p["size"], alpha=p["alpha"] * p["size"], beta=p["beta"], '
             'k=p["k"])',
         tests=[f"{_REGISTRY}::test_lrn_is_the_papers_formula",
                f"{_REGISTRY}::test_modules_carry_the_spec_hyper_parameters"]),
    dict(name="groupnorm-drops-eps",
         file="archc/layers/norm.py",
         old='return nn.GroupNorm(p["groups"], inp[0], eps=p["eps"], affine=p["affine"])',
         new='return nn.GroupNorm(p["groups"], inp[0], affine=p["affine"])',
         tests=[f"{_REGISTRY}::test_modules_carry_the_spec_hyper_parameters"]),
    dict(name="mul-broadcasts-to-the-smaller-shape",
         file="archc/layers/merges.py",
         old="out = tuple(max(axis) for axis in zip(*shapes))",
         new="out = tuple(min(axis) for axis in zip(*shapes))",
         tests=[f"{_REGISTRY}::test_mul_broadcasts_as_torch_does"]),
    dict(name="non-square-window-axes-swapped",
         file="archc/layers/window.py",
         old="return (value, value) if isinstance(value, int) else (value[0], value[1])",
         new="return (value, value) if isinstance(value, int) else (value[1], value[0])",
         tests=[f"{_REGISTRY}::test_non_square_conv_matches_torch"]),
    dict(name="std-conv-unbiased-variance",  # torch.var's default, not batch norm's
         file="archc/layers/tensor_modules.py",
         old="var = w.var(1, unbiased=False, keepdim=True)",
         new="var = w.var(1, keepdim=True)",
         tests=["tests/test_tensor_ops.py::test_std_conv_is_timms_scaled_std_conv"]),
    dict(name="blur-pool-pads-by-half-the-filter",
         file="archc/layers/tensor_modules.py",
         old="self.padding = (stride - 1 + filt_size - 1) // 2",
         new="self.padding = (filt_size - 1) // 2",
         tests=["tests/test_tensor_ops.py::test_blur_pool_is_timms"]),
    dict(name="add-into-samples-every-pixel",
         file="archc/layers/tensor_modules.py",
         old="step_h, step_w = max(1, h2 // h), max(1, w2 // w)",
         new="step_h, step_w = 1, 1",
         tests=["tests/test_tensor_ops.py::test_add_into_is_darknets_shortcut"]),
    dict(name="split-attention-softmax-over-channels",
         file="archc/layers/tensor_modules.py",
         old="weights = scores.softmax(1).reshape(b, self.radix, self.channels, 1, 1)",
         new="weights = scores.softmax(-1).reshape(b, self.radix, self.channels, 1, 1)",
         tests=["tests/test_tensor_ops.py::test_split_attention_is_resnests",
                "tests/test_tensor_ops.py::test_split_attention_is_selective_kernels"]),
    dict(name="splat-conv-attends-before-its-norm",
         file="archc/layers/tensor_modules.py",
         old="stacked = self.act0(self.bn0(self.conv(x)))",
         new="stacked = self.act0(self.conv(x))",
         tests=["tests/test_tensor_ops.py::test_splat_conv_is_timms_split_attn_whole"]),
]
