"""Named one-line mutants of the compiler's front ends, resolver, limits and diagnostics:
plausible slips that the hostile suite and the language tests must notice. `python -m
tests.mutation.run -k compiler` applies them one at a time and runs the listed tests."""

_LIMITS = "tests/hostile/test_spec_limits.py"
_MESSAGES = "tests/hostile/test_spec_messages.py"
_LANGUAGE = "tests/test_language.py"
_CACHE = "tests/test_cache.py"

MUTANTS = [
    dict(name="compiler-resolver-forgets-to-count-items",  # nested repeats expand unbounded
         file="archc/compiler/resolve.py",
         old="        self.expanded += 1\n",
         new="        self.expanded += 0\n",
         tests=[f"{_LIMITS}::test_huge_repeats_are_refused_before_expanding"]),
    dict(name="compiler-resolver-input-limit-on-the-smallest-side",
         file="archc/compiler/resolve.py",
         old="        if max(shape) > most:",
         new="        if min(shape) > most:",
         tests=[f"{_LIMITS}::test_a_huge_declared_input_is_located"]),
    dict(name="compiler-resolver-block-depth-off-by-a-factor",
         file="archc/compiler/resolve.py",
         old='        if len(self.stack) >= limits.get("depth"):',
         new='        if len(self.stack) >= 10 * limits.get("depth"):',
         tests=[f"{_LIMITS}::test_a_chain_of_blocks_calling_blocks_hits_the_depth_limit"]),
    dict(name="compiler-resolver-numbers-from-one",  # nn.Sequential numbers from 0
         file="archc/compiler/resolve.py",
         old="        if label is None:\n            return str(len(scope.children))",
         new="        if label is None:\n            return str(len(scope.children) + 1)",
         tests=[f"{_LANGUAGE}::test_label_binds_one_item_and_the_rest_are_numbered"]),
    dict(name="compiler-yaml-alias-guard-never-released",  # `[*a, *a]` read as a cycle
         file="archc/compiler/yamlspec.py",
         old="            self.inside.discard(id(node))",
         new="            pass",
         tests=[f"{_LIMITS}::test_a_few_laughs_within_the_limit_still_check"]),
    dict(name="compiler-yaml-merge-keys-case-sensitive",
         file="archc/compiler/yamlspec.py",
         old="        merge = merge_kind(key)  #",
         new="        merge = MERGES.get(key)  #",
         tests=[f"{_MESSAGES}::test_yaml_merge_keys_ignore_case"]),
    dict(name="compiler-yaml-drops-repeat",
         file="archc/compiler/yamlspec.py",
         old='            updates["repeat"] = self.value(extras["repeat"])',
         new='            pass',
         tests=["tests/test_convert.py::test_arch_yaml_arch_round_trip"]),
    dict(name="compiler-parser-nesting-not-accumulated",  # `=` for `+=`: depth never grows
         file="archc/compiler/parse.py",
         old="        levels += node.data in _NESTING",
         new="        levels = node.data in _NESTING",
         tests=[f"{_LIMITS}::test_one_level_over_the_limit_is_refused",
                f"{_LIMITS}::test_a_long_expression_chain_hits_the_depth_limit"]),
    dict(name="compiler-parser-label-keeps-its-colon",
         file="archc/compiler/parse.py",
         old="            label = str(tok)[:-1]",
         new="            label = str(tok)",
         tests=[f"{_LANGUAGE}::test_label_binds_one_item_and_the_rest_are_numbered"]),
    dict(name="compiler-render-caret-counts-a-tab-as-one-column",
         file="archc/compiler/render.py",
         old="        offset = _display_width(raw[:start])",
         new="        offset = start",
         tests=[f"{_MESSAGES}::"
                "test_a_tab_indented_line_gets_a_tab_hint_and_the_caret_under_the_word"]),
    dict(name="compiler-cache-key-without-the-text",  # an edited spec served stale
         file="archc/compiler/cache.py",
         old='    h.update(text.encode("utf-8", "surrogatepass"))',
         new="    pass",
         tests=[f"{_CACHE}::test_an_edit_is_never_served_stale"]),
    dict(name="compiler-cache-key-without-the-limits",  # a lowered limit not enforced
         file="archc/compiler/cache.py",
         old='        h.update(f"{name}={limits.get(name)}\\0".encode())',
         new="        pass",
         tests=[f"{_CACHE}::test_the_limits_in_force_are_part_of_the_key"]),
    dict(name="compiler-cache-stores-a-parse-with-diagnostics",
         file="archc/compiler/sources.py",
         old="    if spec is not None and len(diags.items) == before:",
         new="    if spec is not None:",
         tests=[f"{_CACHE}::test_a_parse_with_diagnostics_is_not_stored"]),
    dict(name="compiler-cache-trusts-a-shared-directory",  # pickles others could plant
         file="archc/compiler/cache.py",
         old="        return info.st_uid == _uid() and not others_write",
         new="        return info.st_uid == _uid()",
         tests=[f"{_CACHE}::test_a_directory_others_can_write_is_not_trusted"]),
    dict(name="compiler-torch-backend-skips-the-initialisation",  # weights left as allocated
         file="archc/backends/module.py",
         old="        model = _net_module(net)\n    initialize(model)\n",
         new="        model = _net_module(net)\n",
         tests=["tests/test_init.py::test_every_weight_is_drawn_from_torchvisions_scheme"]),
    dict(name="compiler-outputs-written-in-place",  # not staged: a failed write truncates
         file="archc/compiler/outputs.py",
         old="        return self.folders[path.parent] / path.name",
         new="        return path",
         tests=["tests/hostile/test_outputs.py::test_an_interrupted_write_leaves_the_old_file"
                "[schema]"]),
    dict(name="importers-caffemodel-blob-size-unchecked",  # read first, sized after
         file="archc/importers/weights.py",
         old="        if wanted is not None and header.count not in wanted[number]:",
         new="        if False:",
         tests=["tests/hostile/test_caffemodel_stream.py::"
                "test_a_blob_of_the_wrong_size_is_refused_before_it_is_read"]),
    dict(name="importers-caffemodel-legacy-dims-ignored",
         file="archc/importers/caffemodel.py",
         old="    header.dims = header.dims or legacy",
         new="    header.dims = header.dims",
         tests=["tests/hostile/test_caffemodel_stream.py::"
                "test_generated_caffemodels_read_as_protobuf_reads_them"]),
]
