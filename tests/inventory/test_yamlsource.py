from xpdctl.inventory.yamlsource import load_yaml


def test_lines_of_nested_values_and_keys(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb:\n  c: [1, 2]\n  d: yes\ne:\n  - {x: 1}\n  - x: 2\n    y: 0x10\n")
    data, lines, problems = load_yaml(path)
    assert data == {"a": 1, "b": {"c": [1, 2], "d": True}, "e": [{"x": 1}, {"x": 2, "y": 16}]}
    assert problems == []
    assert lines.line_of(("b",)) == 2
    assert lines.line_of(("b", "d")) == 4
    assert lines.line_of(("e", 1, "y")) == 8
    # A missing field points at its nearest existing parent.
    assert lines.line_of(("e", 1, "missing")) == 7
    assert lines.line_of(("nothing", "here")) == 1


def test_duplicate_keys_are_problems_not_silent_overrides(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb: 2\na: 3\n")
    data, _, problems = load_yaml(path)
    assert data == {"a": 1, "b": 2}
    assert [(p.loc, p.line) for p in problems] == [(("a",), 3)]
    assert "line 1" in problems[0].message


def test_empty_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("# nothing\n")
    assert load_yaml(path)[0] is None


def test_merge_keys_bring_anchored_values_and_their_lines(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        "base: &h100\n"
        "  vendor: nvidia\n"
        "  gpu: {model: H100, count: 8}\n"
        "hosts:\n"
        "  - <<: *h100\n"
        "    name: a\n"
        "  - <<: *h100\n"
        "    name: b\n"
        "    vendor: amd\n"
    )
    data, lines, problems = load_yaml(path)
    assert problems == []
    assert data["hosts"] == [
        {"vendor": "nvidia", "gpu": {"model": "H100", "count": 8}, "name": "a"},
        {"vendor": "amd", "gpu": {"model": "H100", "count": 8}, "name": "b"},
    ]
    assert lines.line_of(("hosts", 0, "gpu", "count")) == 3  # fixed where the anchor defines it
    assert lines.line_of(("hosts", 1, "vendor")) == 9
    assert lines.line_of(("hosts", 1)) == 7


def test_merge_of_a_scalar_is_a_problem(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: &x 1\nb:\n  <<: *x\n  c: 2\n")
    _, _, problems = load_yaml(path)
    assert [(p.line, p.message) for p in problems] == [(3, "<< must name a mapping (<<: *anchor)")]
